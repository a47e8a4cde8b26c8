"""Step 2 of compound scaling: grow φ with fixed (α, β, γ) and pick the largest model that fits the hardware.

The family and the choice are :mod:`effnet.search.family`'s (exact costs, no torch). With ``device`` set the
members are measured (:class:`effnet.search.measure.Measurer`: latency, throughput and peak memory), only where it
matters: every member is costed first (and, with a latency profile, its latency and memory predicted,
:func:`effnet.latency.predict.predict_latency`); members over an exact budget, or predicted far over a latency or
memory budget, are never built; the others are measured from φ = 0 upwards up to the first measured miss and one
member above it, which catches an anomaly. Members above are reported with their predicted latency (the profile's,
else the largest measured member's latency per MAC), not built.

Robustness (:mod:`effnet.search.rounds`): the measured members are measured in interleaved rounds until every
member's spread over its rounds is at most ``max_spread`` (``min_rounds``..``max_rounds``); a member's latency is the
median of its per-round latencies, its memory the largest peak of its rounds; a larger φ still measuring faster
than a smaller one after an extra round is flagged (``anomaly``). The timed runs use the free cores only
(:func:`effnet.machine.free_cpus`), and a spread left above ``max_spread`` is reported with what to do
(``warning``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from effnet.config.scale import PREDICTED_MARGIN, Budget, ScaleConfig
from effnet.errors import InvalidValue, check_type
from effnet.latency.predict import check_latency_budget, predict_latency
from effnet.latency.profile import load_profile
from effnet.machine import free_cpus
from effnet.memory import estimate_memory
from effnet.scaling import flops_factor
from effnet.search.family import Member, cost_violations, family, select, skipped_note, violations
from effnet.search.measure import Measurement, Measurer
from effnet.search.rounds import Progress, measure_in_rounds
from effnet.serving.hardware import check_device_memory
from effnet.specs import NetworkSpec

__all__ = ["ScaleResult", "scale_family", "measure_family"]


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
    number of cores other work kept busy (:func:`effnet.machine.free_cpus`)."""
    close_call: str | None = None
    """Set when a member that decides the choice measured within ``max_spread`` of the latency budget: another run
    may choose differently, and which member fits with room."""

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
            "close_call": self.close_call,
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


def _limit(members: Sequence[Member], budget: Budget, margin: float) -> int:
    """Members from this index on are never built: the first over an exact budget, or (from φ = 1 on) the first
    whose predicted latency or memory is more than ``margin`` × its budget."""
    for i, m in enumerate(members):
        if cost_violations(m, budget) or (i > 0 and _far(m, budget, margin)):
            return i
    return len(members)


def _far(member: Member, budget: Budget, margin: float) -> list[str]:
    """The predicted latency or memory of ``member`` more than ``margin`` × its budget (1: simply over it)."""
    out = []
    lat, mem = member.predicted_latency_ms, member.predicted_memory_mb
    if budget.max_latency_ms is not None and lat is not None and lat > margin * budget.max_latency_ms:
        out.append(f"predicted latency {lat:.3f} ms > {_times(margin)}--max-latency-ms {budget.max_latency_ms:g}")
    if budget.max_memory_mb is not None and mem is not None and mem > margin * budget.max_memory_mb:
        out.append(f"predicted memory {mem:.1f} MiB > {_times(margin)}--max-memory-mb {budget.max_memory_mb:g}")
    return out


def _times(margin: float) -> str:
    return "" if margin == 1 else f"{margin:g} x "


def measure_family(
    members: Sequence[Member],
    config: ScaleConfig,
    *,
    measure_one: Callable[[NetworkSpec], Measurement] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> list[Member]:
    """``members`` with measurements taken in interleaved rounds (:func:`effnet.search.rounds.measure_in_rounds`):
    those below the first over an exact budget or predicted far over one (:func:`_limit`), from φ = 0 up to the
    first measured miss and one above it (``config.measure_all``: all of those). Unmeasured members keep
    ``measurement=None``. A member whose estimated memory at the batch (:mod:`effnet.memory`) exceeds the device's
    or ``--max-memory`` is over an exact budget (``over_memory``); when even φ = 0 is, one-line
    :class:`~effnet.errors.InvalidValue` before anything runs.

    ``measure_one(spec)`` defaults to a :class:`~effnet.search.measure.Measurer` with ``config``'s device, batch,
    threads, runtime and precision (one subprocess per network on the CPU, kept for its rounds).
    """
    members = _with_memory(members, config)
    if members[0].over_memory:
        raise InvalidValue(members[0].over_memory)
    limit = _limit(members, config.budget, PREDICTED_MARGIN)
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

        def misses(i: int, runs: Sequence[Measurement]) -> bool:
            return bool(violations(members[i], config.budget, _combine(runs)))

        def close(i: int, runs: Sequence[Measurement]) -> bool:
            return _near(_combine(runs).latency_ms, config.budget, config.max_spread)

        rounds = measure_in_rounds(
            len(members),
            lambda i: one(members[i].spec),
            lambda m: m.latency_ms,
            min_rounds=config.min_rounds,
            max_rounds=config.max_rounds,
            max_spread=config.max_spread,
            misses=None if config.measure_all else misses,
            close=close,
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


def _with_memory(members: Sequence[Member], config: ScaleConfig) -> list[Member]:
    """``members`` with ``over_memory`` set where the estimated inference memory at ``config.batch`` exceeds the
    device's (or ``--max-memory``)."""
    out = []
    for m in members:
        try:
            check_device_memory(estimate_memory(m.spec, config.batch), config.device or "cpu", config.max_memory)
        except InvalidValue as exc:
            m = dataclasses.replace(m, over_memory=str(exc))
        out.append(m)
    return out


def _judged(members: Sequence[Member], budget: Budget, measuring: bool) -> list[Member]:
    """Members with their violations. Not measuring (a profile, no device): by their predicted latency and memory.
    Measuring: an unmeasured member (within the exact budgets) says why it was not built, with a latency predicted
    by the profile or, without one, from the largest member measured (its latency per MAC)."""
    measured = [m for m in members if m.measurement is not None]
    miss = next((m.phi for m in measured if violations(m, budget)), None)
    out = []
    for m in members:
        found = violations(m, budget)
        if not measuring:
            found = (*found, *_far(m, budget, 1.0))
        elif m.measurement is None and measured and not found:
            far = _far(m, budget, PREDICTED_MARGIN)  # by the profile's prediction, which kept it from being built
            if m.predicted_by is None:
                ref = measured[-1]
                assert ref.measurement is not None
                latency = ref.measurement.latency_ms * m.macs / ref.macs
                m = dataclasses.replace(m, predicted_latency_ms=latency, predicted_by=f"phi={ref.phi}'s ms per MAC")
            where = f"above phi={miss}, the first to miss the budget" if miss is not None else "not needed"
            found = (f"not built: {'; '.join(far)}",) if far else (f"not measured: {where}",)
        out.append(dataclasses.replace(m, violations=found))
    return out


def _spread_warning(
    members: Sequence[Member], config: ScaleConfig, threads: tuple[int, int, float] | None
) -> str | None:
    """What to do when measured members' spreads stayed above ``max_spread``; None when every one is within."""
    wide = [m for m in members if m.spread is not None and m.spread > config.max_spread]
    if not wide:
        return None
    which = ", ".join(f"phi={m.phi} ({m.spread:.2f})" for m in wide)
    fewer = ", or with --threads 1" if threads is None or threads[0] > 1 else ""
    if threads is None:
        cause = "the machine was busy or noisy"
    else:
        threads_line = f"{threads[2]:g} of {threads[1]} cores busy with other work, {threads[0]} thread(s) per run"
        seen = "the machine was busy" if threads[2] >= 0.5 else "the timings varied although no other work was seen"
        cause = f"{seen} ({threads_line})"
    return (
        f"spread above --max-spread {config.max_spread:g} after {config.max_rounds} rounds for {which}: {cause}, "
        f"so these latencies are not reliable, nor is the choice; rerun on a quiet machine{fewer}, "
        "or with a larger --max-rounds"
    )


def _near(latency_ms: float, budget: Budget, tolerance: float) -> bool:
    """Whether ``latency_ms`` is within ``tolerance`` (a fraction) of the latency budget, either side."""
    limit = budget.max_latency_ms
    return limit is not None and abs(latency_ms - limit) <= tolerance * limit


def _close_call(members: Sequence[Member], config: ScaleConfig) -> str | None:
    """What to know when a member that decides the choice (one up to the first miss) measured within
    ``max_spread`` of the latency budget; None when every such member is clear of it."""
    budget, tolerance = config.budget, config.max_spread
    deciding: list[tuple[Member, float]] = []  # the measured members up to the first miss, with their latency
    for m in sorted(members, key=lambda m: m.phi):
        if m.measurement is None:
            break
        deciding.append((m, m.measurement.latency_ms))
        if not m.fits:
            break
    near = [(m, ms) for m, ms in deciding if _near(ms, budget, tolerance)]
    if not near:
        return None
    which = ", ".join(f"phi={m.phi} ({ms:.1f} ms)" for m, ms in near)
    room = [m for m, _ in deciding if m.phi < near[0][0].phi and m.fits]
    safe = f"phi={room[-1].phi} fits with room" if room else "no member fits with room"
    return (
        f"{which} measured within --max-spread {tolerance:g} of --max-latency-ms {budget.max_latency_ms:g}: "
        f"whether {'it fits' if len(near) == 1 else 'they fit'} is within the timing noise, so another run may "
        f"choose differently; {safe}"
    )


def _predicted(members: Sequence[Member], config: ScaleConfig) -> list[Member]:
    """Every member with its latency and memory predicted by ``config.profile`` (unchanged without one)."""
    if config.profile is None:
        return list(members)
    profile = load_profile(config.profile, accept_foreign=config.accept_foreign_profile)
    fp = profile.fingerprint
    if config.device and (config.runtime not in (fp.runtime, fp.engine) or config.precision != fp.precision):
        raise InvalidValue(
            f"--profile {config.profile} models {fp.engine} {fp.precision}; measure the same way (--runtime "
            f"{fp.engine} --precision {fp.precision}) or profile what you measure (effnet profile --runtime ...)"
        )
    if config.budget.max_latency_ms is not None:
        check_latency_budget(config.budget.max_latency_ms, profile)
    how = f"profile ({fp.engine} {fp.precision}, batch {fp.batch}, {fp.threads} threads)"
    out = []
    for m in members:
        estimate = predict_latency(m.spec, profile, batch=config.batch if config.device else None)
        out.append(
            dataclasses.replace(m, predicted_latency_ms=estimate.ms, predicted_memory_mb=estimate.peak_memory_mb)
        )
        out[-1] = dataclasses.replace(out[-1], predicted_by=how)
    return out


def scale_family(
    config: ScaleConfig,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    measure_one: Callable[[NetworkSpec], Measurement] | None = None,
) -> ScaleResult:
    """Cost (and with a profile predict) the family, measure where it matters when ``config.device`` is set
    (:func:`measure_family`), apply the budget and choose.

    Latency/memory budgets need a device or a profile (:class:`~effnet.errors.InvalidValue` otherwise; with a profile
    and no device the choice is by the predictions). Nothing fitting is not an exception here: the result has
    ``chosen=None`` and a ``reason``; :func:`~effnet.search.family.select` raises instead. ``on_progress`` is called
    after every single measurement (:class:`~effnet.search.rounds.Progress`: done and planned measurements, the
    round); ``measure_one`` replaces the real measurement (tests). On the CPU the timed runs use ``config.threads``
    or, by default, the free cores (:func:`effnet.machine.free_cpus`).
    """
    check_type("config", config, ScaleConfig, "a ScaleConfig")
    if config.budget.needs_measurement and not config.device and not config.profile:
        raise InvalidValue(
            "--max-latency-ms and --max-memory-mb need --device cpu|cuda to measure the models, or --profile to "
            "predict them (make one with: effnet profile --device cpu --runtime default --batch 1)"
        )
    members = family(config.alpha, config.beta, config.gamma, config.baseline, config.phi_max, config.rule)
    members = _predicted(members, config)
    threads = None
    if config.device:
        if config.device.split(":")[0] == "cpu":
            free = free_cpus()
            threads = (config.threads or free.threads, free.cores, free.load)
            config = dataclasses.replace(config, threads=threads[0])
        members = measure_family(members, config, measure_one=measure_one, on_progress=on_progress)
    out = _judged(members, config.budget, bool(config.device))
    try:
        chosen, reason = select(out, config.budget), None
    except ValueError as exc:
        chosen, reason = None, str(exc)
    warning = _spread_warning(out, config, threads)
    close = _close_call(out, config) if config.device else None
    return ScaleResult(config, tuple(out), chosen, reason, skipped_note(out, chosen), warning, threads, close)
