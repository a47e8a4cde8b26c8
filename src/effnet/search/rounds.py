"""Robust measurement and selection of a scaled family (torch-free, pure apart from the injected measurement).

A single timing per model is not an answer: on a shared machine one member can measure several times slower than
the next larger one (issue #14), and "the largest φ that fits" then jumps over a φ that does not fit. So:

* members are measured in **interleaved rounds** (one round = every member once, in φ order), so a slow spell of
  the machine hits all members alike instead of one of them;
* rounds are added, at least ``min_rounds`` and at most ``max_rounds``, until every member's **spread** (max − min
  of its per-round latencies, relative to their median) is at most ``max_spread``;
* a larger member measuring faster than a smaller one by more than ``max_spread`` (the accepted noise) gets **one
  more round** (it and the smaller members it undercuts, beyond ``max_rounds``) and is flagged as an **anomaly** if
  it still does;
* the choice (:func:`fitting_prefix`) is the largest member such that it **and every smaller member** fit.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from effnet.errors import InvalidValue

__all__ = ["Rounds", "spread", "undercut", "measure_in_rounds", "fitting_prefix"]

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
    """Every measurement of every member (``runs[i]``: member i's measurements, one per round it took part in)."""

    runs: tuple[tuple[T, ...], ...]
    latencies: tuple[tuple[float, ...], ...]
    """``latencies[i][k]``: member i's latency in its k-th round (the round's median of its timed runs)."""
    anomalies: dict[int, tuple[int, ...]]
    """Member index -> the smaller members it still measures faster than after its extra round."""
    rounds: int = 0
    """Interleaved rounds of every member (``min_rounds``..``max_rounds``), before any extra round."""

    def latency(self, i: int) -> float:
        """Member i's latency: the median of its per-round latencies."""
        return statistics.median(self.latencies[i])

    def spread(self, i: int) -> float:
        """Member i's spread over its rounds (see :func:`spread`)."""
        return spread(self.latencies[i])


def measure_in_rounds(
    count: int,
    measure_one: Callable[[int], T],
    latency: Callable[[T], float],
    *,
    min_rounds: int,
    max_rounds: int,
    max_spread: float,
    on_measure: Callable[[int], None] | None = None,
) -> Rounds[T]:
    """Measure members ``0..count-1`` in interleaved rounds until stable (module docstring); ``measure_one(i)``
    measures member i once, ``latency`` reads its latency; ``on_measure(i)`` is called after each measurement."""
    if count < 1:
        raise InvalidValue(f"need at least one member to measure, got {count}")
    if not 1 <= min_rounds <= max_rounds:
        raise InvalidValue(f"need 1 <= --min-rounds <= --max-rounds, got {min_rounds}, {max_rounds}")
    runs: list[list[T]] = [[] for _ in range(count)]

    def once(i: int) -> None:
        runs[i].append(measure_one(i))
        if on_measure is not None:
            on_measure(i)

    def lats() -> list[list[float]]:
        return [[latency(m) for m in r] for r in runs]

    done = 0
    while done < max_rounds:
        for i in range(count):
            once(i)
        done += 1
        if done >= min_rounds and all(spread(x) <= max_spread for x in lats()):
            break
    suspects = undercut([statistics.median(x) for x in lats()], max_spread)
    for i in sorted({k for j, smaller in suspects.items() for k in (j, *smaller)}):
        once(i)
    final = [statistics.median(x) for x in lats()]
    still = {j: smaller for j, smaller in undercut(final, max_spread).items() if j in suspects}
    return Rounds(tuple(map(tuple, runs)), tuple(map(tuple, lats())), still, done)


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
