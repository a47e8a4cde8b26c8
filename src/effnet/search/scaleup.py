"""Step 2 of compound scaling: grow φ with fixed (α, β, γ) and pick the largest model that fits the hardware.

For φ = 0…N the family member is the baseline scaled by ``d = α^φ``, ``w = β^φ``, ``r = γ^φ`` (``rule="paper"``,
:func:`effnet.architectures.compound_spec`) or, with ``rule="fast"``, by Dollár et al. (2021) fast compound scaling
(:func:`effnet.scaling.fast_scaling`: width takes 80 % of the FLOPs growth, depth and resolution 10 % each)
at the *same* FLOPs target ``(α·β²·γ²)^φ``, so the two rules can be compared member by member on activations
and measured latency, not just FLOPs. Params, MACs and activations are exact (:mod:`effnet.cost`, no torch).

Measurements (``device`` set): latency, throughput and peak memory of each member on the device
(:func:`effnet.search.measure.measure`).

Robustness (:mod:`effnet.search.rounds`): the members are measured in interleaved rounds until every member's
spread over its rounds is at most ``max_spread`` (``min_rounds``..``max_rounds``); a member's latency is the median
of its per-round latencies, its memory the largest peak of its rounds; a larger φ still measuring faster than a
smaller one after an extra round is flagged (``anomaly``). The selection takes the largest φ such that it and
every smaller φ satisfy every given budget.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from effnet.architectures import get_spec, scale
from effnet.config.scale import RULES, Budget, ScaleConfig
from effnet.cost import cost
from effnet.errors import InvalidValue
from effnet.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, compound, fast_scaling, flops_factor
from effnet.search.measure import Measurement, Measurer
from effnet.search.processes import free_cpus
from effnet.search.rounds import Progress, fitting_prefix, measure_in_rounds
from effnet.specs import NetworkSpec

__all__ = ["Member", "ScaleResult", "family", "select", "scale_family", "measure_family"]


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
    """An unmeasured member's latency, predicted (``predicted_by`` says how); None when measured."""
    predicted_by: str | None = None

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


def _cost_violations(member: Member, budget: Budget) -> list[str]:
    """The exact budgets (MACs, params) ``member`` is over: known before anything is built."""
    out = []
    if budget.max_macs is not None and member.macs > budget.max_macs:
        out.append(f"MACs {member.macs:.4g} > --max-macs {budget.max_macs:.4g}")
    if budget.max_params is not None and member.params > budget.max_params:
        out.append(f"params {member.params:.4g} > --max-params {budget.max_params:.4g}")
    return out


def _violations(member: Member, budget: Budget, measurement: Measurement | None = None) -> tuple[str, ...]:
    out = _cost_violations(member, budget)
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


def _skipped_note(members: Sequence[Member], chosen: Member | None) -> str | None:
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


@dataclass(frozen=True)
class ScaleResult:
    """The measured family and the chosen member (None when nothing fits; ``reason`` says why)."""

    config: ScaleConfig
    members: tuple[Member, ...]
    chosen: Member | None
    reason: str | None
    note: str | None = None
    """Set when members above the chosen one fit but a φ between does not."""
    warning: str | None = None
    """Set when a measured member's spread stayed above ``max_spread``: what was wrong and what to do."""
    threads: tuple[int, int, float] | None = None
    """``(threads, cores, load)`` of a CPU measurement: the threads each timed run used, of how many cores, at what
    load average (:func:`effnet.search.processes.free_cpus`)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: coefficients, rule, budget, every φ and the chosen φ (with its spec)."""
        c = self.config
        return {
            "alpha": c.alpha,
            "beta": c.beta,
            "gamma": c.gamma,
            "rule": c.rule,
            "flops_factor_per_phi": round(flops_factor(c.alpha, c.beta, c.gamma), 6),
            "baseline": c.baseline.name if c.baseline is not None else "efficientnet_b0",
            "device": c.device,
            "batch": c.batch if c.device else None,
            "warmup": c.warmup if c.device else None,
            "repeats": c.repeats if c.device else None,
            "runtime": c.runtime if c.device else None,
            "precision": c.precision if c.device else None,
            "memory_method": self.members[0].measurement.memory_method if self.members[0].measurement else None,
            "min_rounds": c.min_rounds if c.device else None,
            "max_rounds": c.max_rounds if c.device else None,
            "max_spread": c.max_spread if c.device else None,
            "threads": self.threads[0] if self.threads else None,
            "cores": self.threads[1] if self.threads else None,
            "load": self.threads[2] if self.threads else None,
            "measure_all": c.measure_all if c.device else None,
            "measured_members": sum(m.measurement is not None for m in self.members) if c.device else None,
            "warning": self.warning,
            "budget": c.budget.to_dict(),
            "family": [m.to_dict() for m in self.members],
            "chosen_phi": self.chosen.phi if self.chosen else None,
            "note": self.note,
            "chosen_spec": self.chosen.spec.to_dict() if self.chosen else None,
            "error": self.reason,
        }


def _combine(runs: Sequence[Measurement]) -> Measurement:
    """One member's measurement over its rounds: median of the per-round latencies, the largest memory peak."""
    first = runs[0]
    median = statistics.median(m.latency_ms for m in runs)
    return dataclasses.replace(
        first,
        latency_ms=median,
        throughput=first.batch * 1e3 / median,
        peak_memory_mb=max(m.peak_memory_mb for m in runs),
        latencies_ms=tuple(t for m in runs for t in m.latencies_ms),
    )


def measure_family(
    members: Sequence[Member],
    config: ScaleConfig,
    *,
    measure_one: Callable[[NetworkSpec], Measurement] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> list[Member]:
    """``members`` with measurements taken in interleaved rounds (:func:`effnet.search.rounds.measure_in_rounds`):
    those below the first over an exact budget, from φ = 0 up to the first measured miss and one above it
    (``config.measure_all``: all of them). Unmeasured members keep ``measurement=None``.

    ``measure_one(spec)`` defaults to a :class:`~effnet.search.measure.Measurer` with ``config``'s device, batch,
    threads, runtime and precision (one subprocess per network on the CPU, kept for its rounds).
    """
    limit = next((i for i, m in enumerate(members) if _cost_violations(m, config.budget)), len(members))
    if limit == 0:  # phi = 0 is over an exact budget: nothing to build
        return list(members)
    with contextlib.ExitStack() as stack:
        if measure_one is None:
            measure_one = stack.enter_context(
                Measurer(
                    config.device or "cpu",
                    config.batch,
                    warmup=config.warmup,
                    repeats=config.repeats,
                    threads=config.threads,
                    runtime=config.runtime,
                    precision=config.precision,
                )
            )
        one = measure_one
        rounds = measure_in_rounds(
            len(members),
            lambda i: one(members[i].spec),
            lambda m: m.latency_ms,
            min_rounds=config.min_rounds,
            max_rounds=config.max_rounds,
            max_spread=config.max_spread,
            misses=None
            if config.measure_all
            else lambda i, runs: bool(_violations(members[i], config.budget, _combine(runs))),
            limit=limit,
            on_progress=on_progress,
        )
    out = []
    for i, m in enumerate(members):
        if not rounds.runs[i]:
            out.append(m)
            continue
        anomaly = None
        if i in rounds.anomalies:
            smaller = ", ".join(f"phi={members[k].phi}" for k in rounds.anomalies[i])
            anomaly = f"faster than {smaller} after an extra round"
        out.append(
            dataclasses.replace(
                m,
                measurement=_combine(rounds.runs[i]),
                round_latencies_ms=rounds.latencies[i],
                spread=rounds.spread(i),
                anomaly=anomaly,
            )
        )
    return out


def _unmeasured(members: Sequence[Member], budget: Budget) -> list[Member]:
    """Members with their violations; an unmeasured one (no exact budget over) gets a latency predicted from the
    largest member measured (its latency per MAC) and says why it was not built."""
    measured = [m for m in members if m.measurement is not None]
    miss = next((m.phi for m in measured if _violations(m, budget)), None)
    out = []
    for m in members:
        violations = _violations(m, budget)
        if m.measurement is None and measured and not violations:
            ref = measured[-1]
            assert ref.measurement is not None
            m = dataclasses.replace(
                m,
                predicted_latency_ms=ref.measurement.latency_ms * m.macs / ref.macs,
                predicted_by=f"phi={ref.phi}'s latency per MAC",
            )
            where = f"above phi={miss}, the first to miss the budget" if miss is not None else "not needed"
            violations = (f"not measured: {where}",)
        out.append(dataclasses.replace(m, violations=violations))
    return out


def _spread_warning(
    members: Sequence[Member], config: ScaleConfig, threads: tuple[int, int, float] | None
) -> str | None:
    """What to do when measured members' spreads stayed above ``max_spread``; None when every one is within."""
    wide = [m for m in members if m.spread is not None and m.spread > config.max_spread]
    if not wide:
        return None
    which = ", ".join(f"phi={m.phi} ({m.spread:.2f})" for m in wide)
    busy = f" (load {threads[2]:g} on {threads[1]} cores, {threads[0]} thread(s) per run)" if threads else ""
    fewer = ", or with --threads 1" if threads is None or threads[0] > 1 else ""
    return (
        f"spread above --max-spread {config.max_spread:g} after {config.max_rounds} rounds for {which}: the machine "
        f"was busy{busy} and these latencies are not reliable, nor is the choice; rerun on a quiet machine{fewer}, "
        "or with a larger --max-rounds"
    )


def scale_family(
    config: ScaleConfig,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    measure_one: Callable[[NetworkSpec], Measurement] | None = None,
) -> ScaleResult:
    """Build the family, measure where it matters when ``config.device`` is set (:func:`measure_family`), apply the
    budget and choose.

    Latency/memory budgets need a device (:class:`~effnet.errors.InvalidValue` otherwise). Nothing fitting is not
    an exception here: the result has ``chosen=None`` and a ``reason``; :func:`select` raises instead.
    ``on_progress`` is called after every single measurement (:class:`~effnet.search.rounds.Progress`: done and
    planned measurements, the round); ``measure_one`` replaces the real measurement (tests). On the CPU the timed
    runs use ``config.threads`` or, by default, the free cores (:func:`effnet.search.processes.free_cpus`).
    """
    if config.budget.needs_measurement and not config.device:
        raise InvalidValue("--max-latency-ms and --max-memory-mb need --device cpu|cuda to measure the models")
    members = family(config.alpha, config.beta, config.gamma, config.baseline, config.phi_max, config.rule)
    threads = None
    if config.device:
        if config.device.split(":")[0] == "cpu":
            free = free_cpus()
            threads = (config.threads or free.threads, free.cores, free.load)
            config = dataclasses.replace(config, threads=threads[0])
        members = measure_family(members, config, measure_one=measure_one, on_progress=on_progress)
    out = _unmeasured(members, config.budget)
    try:
        chosen, reason = select(out, config.budget), None
    except ValueError as exc:
        chosen, reason = None, str(exc)
    warning = _spread_warning(out, config, threads)
    return ScaleResult(config, tuple(out), chosen, reason, _skipped_note(out, chosen), warning, threads)
