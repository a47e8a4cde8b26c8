"""Robust measurement and selection of a scaled family (torch-free, pure apart from the injected measurement).

A single timing per model is not an answer: on a shared machine one member can measure several times slower than
the next larger one (issue #14), and "the largest φ that fits" then jumps over a φ that does not fit. So:

* members are measured in **interleaved rounds** (one round = every member once, in φ order), so a slow spell of
  the machine hits all members alike instead of one of them;
* rounds are added, at least ``min_rounds`` and at most ``max_rounds``, until every member's **spread** (max − min
  of its per-round latencies, relative to their median) is at most ``max_spread``;
* a member measuring within ``max_spread`` of the budget (a **close call**: whether it fits is within the accepted
  noise) gets rounds up to ``max_rounds`` too, as many as an unstable one;
* a larger member measuring faster than a smaller one by more than ``max_spread`` (the accepted noise) gets **one
  more round** (it and the smaller members it undercuts, beyond ``max_rounds``) and is flagged as an **anomaly** if
  it still does;
* the choice (:func:`fitting_prefix`) is the largest member such that it **and every smaller member** fit;
* only the members that can matter are measured (issue 21): from the smallest upwards, up to the first member that
  misses the budget and one above it (which catches an anomaly like the one above); members whose exact or
  predicted cost is far over the budget are never built.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from effnet.errors import InvalidValue

__all__ = ["Rounds", "Progress", "spread", "undercut", "measure_in_rounds", "fitting_prefix"]

T = TypeVar("T")


def spread(values: Sequence[float]) -> float:
    """``(max − min) / median`` of ``values`` (0 for fewer than two values or a zero median)."""
    if len(values) < 2:
        return 0.0
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid > 0 else 0.0


def undercut(latencies: Sequence[float], tolerance: float) -> dict[int, tuple[int, ...]]:
    """Members (by index, in size order) faster than a smaller one by more than ``tolerance`` (a fraction).

    Maps each such index ``j`` to the smaller indices ``i < j`` with ``latencies[j] < latencies[i]·(1 − tolerance)``.
    """
    out = {}
    for j, lat in enumerate(latencies):
        slower = tuple(i for i in range(j) if lat < latencies[i] * (1.0 - tolerance))
        if slower:
            out[j] = slower
    return out


@dataclass(frozen=True)
class Rounds(Generic[T]):
    """Every measurement of every member (``runs[i]``: member i's measurements, one per round it took part in; empty
    for a member that was never measured)."""

    runs: tuple[tuple[T, ...], ...]
    latencies: tuple[tuple[float, ...], ...]
    """``latencies[i][k]``: member i's latency in its k-th round (the round's median of its timed runs)."""
    anomalies: dict[int, tuple[int, ...]]
    """Member index -> the smaller members it still measures faster than after its extra round."""
    rounds: int = 0
    """Interleaved rounds of the measured members (``min_rounds``..``max_rounds``), before any extra round."""

    @property
    def measured(self) -> int:
        """How many members (the first ones, in size order) were measured."""
        return sum(1 for r in self.runs if r)

    def latency(self, i: int) -> float:
        """Member i's latency: the median of its per-round latencies."""
        return statistics.median(self.latencies[i])

    def spread(self, i: int) -> float:
        """Member i's spread over its rounds (see :func:`spread`)."""
        return spread(self.latencies[i])


@dataclass(frozen=True)
class Progress:
    """Where a measurement stands, after each single measurement (for a progress bar)."""

    member: int
    """The member just measured."""
    done: int
    """Measurements so far."""
    planned: int
    """Measurements the plan holds now: it grows when a round or a member is added."""
    round: int
    """The round in progress (1-based; above ``max_rounds`` for the extra round of suspects)."""
    members: int
    """Members in the measured set."""


def measure_in_rounds(
    count: int,
    measure_one: Callable[[int], T],
    latency: Callable[[T], float],
    *,
    min_rounds: int,
    max_rounds: int,
    max_spread: float,
    misses: Callable[[int, Sequence[T]], bool] | None = None,
    close: Callable[[int, Sequence[T]], bool] | None = None,
    limit: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> Rounds[T]:
    """Measure members ``0..count-1`` in interleaved rounds until stable (module docstring); ``measure_one(i)``
    measures member i once, ``latency`` reads its latency; ``on_progress`` is called after each measurement.

    Without ``misses`` every member below ``limit`` (default ``count``) is measured. With ``misses(i, runs)`` (does
    member i, on its measurements so far, miss the budget?) the set grows from member 0 upwards only while needed:
    up to the first member that misses plus one above it (to catch an anomaly), re-planned after every
    measurement, so a member that stops missing after more rounds lets the set grow again. Members from ``limit``
    on are never measured (exact cost over the budget, or predicted far over it). ``close(i, runs)`` (member i is
    too close to the budget to call) keeps the rounds going, as a wide spread does.
    """
    if count < 1:
        raise InvalidValue(f"need at least one member to measure, got {count}")
    if not 1 <= min_rounds <= max_rounds:
        raise InvalidValue(f"need 1 <= --min-rounds <= --max-rounds, got {min_rounds}, {max_rounds}")
    top = count if limit is None else max(0, min(limit, count))
    runs: list[list[T]] = [[] for _ in range(count)]
    state = {"done": 0, "planned": 0, "round": 1, "active": 0}

    def once(i: int) -> None:
        runs[i].append(measure_one(i))
        state["done"] += 1
        state["planned"] = max(state["planned"], state["done"])
        if on_progress is not None:
            on_progress(Progress(i, state["done"], state["planned"], state["round"], state["active"]))

    def lats(i: int) -> list[float]:
        return [latency(m) for m in runs[i]]

    def wanted() -> int:  # how many members the measurements so far ask for
        if misses is None:
            return top
        miss = next((i for i in range(state["active"]) if misses(i, runs[i])), None)
        return min(top, state["active"] + 1 if miss is None else miss + 2)

    def plan(batch: int) -> None:  # this batch, and the rounds still owed to min_rounds
        owed = max(0, min_rounds - state["round"]) * state["active"]
        state["planned"] = max(state["planned"], state["done"] + batch + owed)

    while True:
        while state["active"] < wanted():  # grow upwards: the new member joins the measured set now
            state["active"] += 1
            plan(1)
            once(state["active"] - 1)
        active = state["active"]
        short = [i for i in range(active) if len(runs[i]) < min_rounds]
        unstable = any(spread(lats(i)) > max_spread or bool(close and close(i, runs[i])) for i in range(active))
        if short or (unstable and state["round"] < max_rounds):  # another interleaved round
            batch = list(range(active)) if state["round"] < max_rounds else short
            state["round"] += 1 if state["round"] < max_rounds else 0
            plan(len(batch))
            for i in batch:
                once(i)
            continue
        rounds = state["round"]
        suspects = undercut([statistics.median(lats(i)) for i in range(active)], max_spread)
        extra = sorted({k for j, smaller in suspects.items() for k in (j, *smaller)})
        state["round"] = max_rounds + 1
        plan(len(extra))
        for i in extra:
            once(i)
        final = undercut([statistics.median(lats(i)) for i in range(active)], max_spread)
        anomalies: dict[int, tuple[int, ...]] = {j: smaller for j, smaller in final.items() if j in suspects}
        if state["active"] >= wanted():
            break
        state["round"] = rounds  # the extra round moved the first miss: grow and go on
    latencies = tuple(tuple(lats(i)) for i in range(count))
    return Rounds(tuple(map(tuple, runs)), latencies, anomalies, rounds)


def fitting_prefix(fits: Sequence[bool]) -> int | None:
    """The largest index ``k`` such that ``fits[0..k]`` are all true (None when ``fits[0]`` is false or empty).

    A member that fits above one that does not is never chosen: its "fit" is more likely noise than a real
    speed-up of a larger network.
    """
    chosen = None
    for k, ok in enumerate(fits):
        if not ok:
            break
        chosen = k
    return chosen
