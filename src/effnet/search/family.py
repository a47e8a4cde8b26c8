"""The scaled family of step 2 and the budget's choice among its members (torch-free).

For φ = 0…N the family member is the baseline scaled by ``d = α^φ``, ``w = β^φ``, ``r = γ^φ`` (``rule="paper"``,
:func:`effnet.architectures.compound_spec`) or, with ``rule="fast"``, by Dollár et al. (2021) fast compound scaling
(:func:`effnet.scaling.fast_scaling`: width takes 80 % of the FLOPs growth, depth and resolution 10 % each)
at the *same* FLOPs target ``(α·β²·γ²)^φ``, so the two rules can be compared member by member on activations
and measured latency, not just FLOPs. Params, MACs and activations are exact (:mod:`effnet.cost`, no torch).
:func:`select` takes the largest φ such that it and every smaller φ satisfy every given budget
(:func:`effnet.search.rounds.fitting_prefix`). Measuring the members is :mod:`effnet.search.scaleup`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from effnet.architectures import get_spec, scale
from effnet.config.scale import RULES, Budget
from effnet.cost import cost
from effnet.errors import InvalidValue
from effnet.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, compound, fast_scaling, flops_factor
from effnet.search.measure import Measurement
from effnet.search.rounds import fitting_prefix
from effnet.specs import NetworkSpec

__all__ = ["Member", "family", "cost_violations", "violations", "select", "skipped_note"]


@dataclass(frozen=True)
class Member:
    """One φ of the family: multipliers, spec, exact cost and (optionally) measurements."""

    phi: int
    depth: float
    width: float
    resolution: int
    flops_target: float
    spec: NetworkSpec
    params: int
    macs: int
    activations: int
    measurement: Measurement | None = None
    violations: tuple[str, ...] = field(default=())
    round_latencies_ms: tuple[float, ...] = ()
    """Latency of each measurement round (each the median of ``repeats`` timed runs); empty when not measured."""
    spread: float | None = None
    """(max − min) / median of ``round_latencies_ms``."""
    anomaly: str | None = None
    """Set when this member still measures faster than a smaller one after an extra round."""
    predicted_latency_ms: float | None = None
    """The member's predicted latency (``predicted_by`` says how: a latency profile, or an unmeasured member's from
    the largest measured one); None when not predicted."""
    predicted_memory_mb: float | None = None
    """Its predicted peak memory (a latency profile only)."""
    predicted_by: str | None = None
    over_memory: str | None = None
    """Set (why) when the member's estimated memory at the batch exceeds the device's: never built."""

    @property
    def fits(self) -> bool:
        """True when no budget is violated."""
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready row (without the full spec)."""
        m = self.measurement
        return {
            "phi": self.phi,
            "depth": round(self.depth, 6),
            "width": round(self.width, 6),
            "resolution": self.resolution,
            "flops_target": round(self.flops_target, 6),
            "params": self.params,
            "macs": self.macs,
            "activations": self.activations,
            "latency_ms": round(m.latency_ms, 4) if m else None,
            "throughput": round(m.throughput, 2) if m else None,
            "peak_memory_mb": round(m.peak_memory_mb, 2) if m else None,
            "latencies_ms": [round(x, 4) for x in m.latencies_ms] if m else None,
            "rounds": len(self.round_latencies_ms) if m else None,
            "round_latencies_ms": [round(x, 4) for x in self.round_latencies_ms] if m else None,
            "spread": round(self.spread, 4) if self.spread is not None else None,
            "anomaly": self.anomaly,
            "measured": m is not None,
            "predicted_latency_ms": round(self.predicted_latency_ms, 4) if self.predicted_latency_ms else None,
            "predicted_memory_mb": round(self.predicted_memory_mb, 2) if self.predicted_memory_mb else None,
            "predicted_by": self.predicted_by,
            "fits": self.fits,
            "violations": list(self.violations),
        }


def _member(phi: int, base: NetworkSpec, alpha: float, beta: float, gamma: float, rule: str) -> Member:
    target = flops_factor(alpha, beta, gamma) ** phi
    if rule == "paper":
        c = compound(phi, alpha, beta, gamma)
        d, w, r = c.depth, c.width, c.resolution_scale
    elif rule == "fast":
        d, w, r = fast_scaling(target)
    else:
        raise InvalidValue(f"--rule must be one of {', '.join(RULES)}; got {rule!r}")
    resolution = max(8, int(round(base.resolution * r)))
    spec = scale(base, depth=d, width=w, resolution=resolution, name=f"{base.name}_{rule}_phi{phi}")
    c_ = cost(spec)
    return Member(phi, d, w, resolution, target, spec, c_.params, c_.macs, c_.activations)


def family(
    alpha: float = PAPER_ALPHA,
    beta: float = PAPER_BETA,
    gamma: float = PAPER_GAMMA,
    baseline: NetworkSpec | None = None,
    phi_max: int = 7,
    rule: str = "paper",
) -> list[Member]:
    """Members φ = 0…``phi_max`` of the family of ``baseline`` (default EfficientNet-B0), exact costs only."""
    if isinstance(phi_max, bool) or not isinstance(phi_max, int) or phi_max < 0:
        raise InvalidValue(f"--phi-max must be an integer >= 0, got {phi_max!r}")
    compound(0, alpha, beta, gamma)  # validates the coefficients
    base = baseline if baseline is not None else get_spec("efficientnet_b0")
    return [_member(phi, base, alpha, beta, gamma, rule) for phi in range(phi_max + 1)]


def cost_violations(member: Member, budget: Budget) -> list[str]:
    """The exact budgets (MACs, params, the device's memory) ``member`` is over: known before anything is built."""
    out = [member.over_memory] if member.over_memory else []
    if budget.max_macs is not None and member.macs > budget.max_macs:
        out.append(f"MACs {member.macs:.4g} > --max-macs {budget.max_macs:.4g}")
    if budget.max_params is not None and member.params > budget.max_params:
        out.append(f"params {member.params:.4g} > --max-params {budget.max_params:.4g}")
    return out


def violations(member: Member, budget: Budget, measurement: Measurement | None = None) -> tuple[str, ...]:
    """Every budget ``member`` is over: exact cost, and latency/memory of ``measurement`` (default: its own)."""
    out = cost_violations(member, budget)
    m = measurement or member.measurement
    if budget.max_latency_ms is not None and m is not None and m.latency_ms > budget.max_latency_ms:
        out.append(f"latency {m.latency_ms:.3f} ms > --max-latency-ms {budget.max_latency_ms:g}")
    if budget.max_memory_mb is not None and m is not None and m.peak_memory_mb > budget.max_memory_mb:
        out.append(f"memory {m.peak_memory_mb:.1f} MiB > --max-memory-mb {budget.max_memory_mb:g}")
    return tuple(out)


def select(members: Sequence[Member], budget: Budget) -> Member:
    """The largest-φ member that fits **and every smaller φ fits too** (:func:`effnet.search.rounds.fitting_prefix`).

    :class:`~effnet.errors.InvalidValue` saying why φ = 0 fails when it does not fit.
    """
    ordered = sorted(members, key=lambda m: m.phi)
    k = fitting_prefix([m.fits for m in ordered])
    if k is not None:
        return ordered[k]
    smallest = ordered[0]
    raise InvalidValue(
        f"no model of the family phi=0..{ordered[-1].phi} fits the budget; even phi=0 "
        f"has {'; '.join(smallest.violations)}. Raise the budget or use a smaller baseline "
        "(--baseline, --width, --resolution)"
    )


def skipped_note(members: Sequence[Member], chosen: Member | None) -> str | None:
    """Why members that fit were not chosen: a smaller φ below them does not fit."""
    if chosen is None:
        return None
    above = [m.phi for m in members if m.phi > chosen.phi and m.fits]
    if not above:
        return None
    failing = min(m.phi for m in members if m.phi > chosen.phi and not m.fits)
    return (
        f"phi={', '.join(map(str, above))} fit(s) but phi={failing} below does not: not chosen (a larger "
        "model fitting where a smaller one does not is more likely measurement noise than a real speed-up)"
    )
