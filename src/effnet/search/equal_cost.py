"""Points at equal cost: the cost of the network built at (α, β, γ), the grid of points at a target cost, and one
dimension's multiplier solved for a target cost (torch-free).

The paper keeps the points with ``α·β²·γ² ≈ target`` (:func:`effnet.scaling.grid`), a formula that ignores
rounding: channels are multiples of 8, depth is ``ceil``'d and resolution a whole number of pixels, so at small
scale the formula's "2×" points cost from 1.4× to 3.4× in exact MACs. A :class:`CostModel` prices the network really
built at a point (its exact MACs, :mod:`effnet.cost`, or any other price, such as a predicted latency), and
:func:`equal_cost_grid` keeps the grid points whose price is within ``tol`` of ``target`` × the baseline's.
:func:`solve_multiplier` gives the depth-, width- or resolution-only multiplier whose price is closest to a factor
(``effnet curves`` and the search's single-dimension points). Every price here must not decrease when a multiplier
grows, as exact MACs and a latency model with non-negative coefficients do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from effnet.cost import cost
from effnet.errors import InvalidValue
from effnet.scaling import grid_values
from effnet.specs import NetworkSpec, resolve

__all__ = [
    "DIMENSIONS",
    "Network",
    "Price",
    "Point",
    "exact_macs",
    "network_key",
    "CostModel",
    "solve_multiplier",
    "solve_point",
    "single_dimension",
    "equal_cost_grid",
]

DIMENSIONS = ("depth", "width", "resolution")
"""The three dimensions, in (α, β, γ) order."""

Point = tuple[float, float, float]
Network = Callable[[float, float, float], NetworkSpec]
"""``network(α, β, γ)``: the network a point builds (:func:`effnet.search.grid.trial_spec` bound to a baseline)."""
Price = Callable[[NetworkSpec], float]
"""``price(spec)``: the cost of one network (exact MACs, a predicted latency, ...), positive."""

_DIGITS = 6


def exact_macs(spec: NetworkSpec) -> float:
    """The network's exact multiply-accumulates at batch 1 (:func:`effnet.cost.cost`)."""
    return float(cost(spec).macs)


def network_key(spec: NetworkSpec) -> Hashable:
    """What makes two specs the same network: the resolved stem, blocks and head, the input size and every other
    field except the name and the width/depth multipliers (which act only through the rounding)."""
    net = resolve(spec)
    return (spec.replace(name="network", width=1.0, depth=1.0), net.stem_channels, net.stages, net.head_channels)


def _triple(dimension: str, value: float) -> Point:
    out = [1.0, 1.0, 1.0]
    out[DIMENSIONS.index(dimension)] = value
    return out[0], out[1], out[2]


class CostModel:
    """The price of the network at each point, and its factor over the baseline's (``network(1, 1, 1)``).

    ``unit`` names the price in messages (``exact MACs``, ``predicted latency``). Prices are remembered per point.
    """

    def __init__(self, network: Network, price: Price = exact_macs, unit: str = "exact MACs") -> None:
        self.network, self.price, self.unit = network, price, unit
        self._values: dict[Point, float | None] = {}
        base = network(1.0, 1.0, 1.0)
        self.resolution = base.resolution
        self.baseline = float(price(base))
        if not (math.isfinite(self.baseline) and self.baseline > 0):
            raise InvalidValue(f"the baseline's {unit} must be a positive number, got {self.baseline!r}")

    @property
    def priced(self) -> int:
        """How many points have been priced so far."""
        return len(self._values)

    def value(self, point: Point) -> float | None:
        """The price of the network at ``point``; None where the point leaves the spec's bounds."""
        if point not in self._values:
            try:
                self._values[point] = float(self.price(self.network(*point)))
            except ValueError:  # e.g. depth beyond the spec's bounds: no such network
                self._values[point] = None
        return self._values[point]

    def factor(self, point: Point) -> float | None:
        """``value(point)`` ÷ the baseline's; None where the point has no network."""
        value = self.value(point)
        return None if value is None else value / self.baseline


def solve_multiplier(model: CostModel, dimension: str, factor: float) -> float:
    """The ``dimension`` multiplier (depth, width or resolution) whose price is closest to ``factor`` × the
    baseline's (closest in ratio; bisection, multipliers rounded to 6 decimals; resolution: a whole pixel size).

    :class:`~effnet.errors.InvalidValue` for an unknown dimension, or naming the dimension when the target is beyond
    the spec bounds (e.g. depth above 32).
    """
    if dimension not in DIMENSIONS:
        raise InvalidValue(f"dimension must be one of {', '.join(DIMENSIONS)}; got {dimension!r}")
    target = factor * model.baseline

    def price(v: float) -> float | None:
        return model.value(_triple(dimension, v))

    lo, hi = 1.0, 2.0
    for _ in range(24):  # grow hi until it reaches the target or leaves the spec bounds
        m = price(hi)
        if m is None or m >= target:
            break
        lo, hi = hi, hi * 2
    if (price(hi) or 0) < target:  # past a bound: the largest valid value must reach the target
        good, bad = lo, hi
        for _ in range(60):
            mid = (good + bad) / 2
            good, bad = (mid, bad) if price(mid) is not None else (good, mid)
        if (price(good) or 0) < target:
            raise InvalidValue(
                f"{dimension}-only scaling cannot reach {factor:g}x the baseline's {model.unit} within the spec "
                f"bounds (multiplier {good:.3g} at most); aim lower (--target, --phi-max)"
            )
        hi = good
    for _ in range(60):  # invariant: price(lo) < target <= price(hi)
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (price(mid) or 0) < target else (lo, mid)
    scale = 10**_DIGITS
    options = [math.floor(lo * scale) / scale, math.ceil(hi * scale) / scale]
    if dimension == "resolution":
        options = [round(model.resolution * v) / model.resolution for v in options]
    valid = [(v, m) for v in options if (m := price(v)) is not None]
    best = min(valid, key=lambda vm: abs(math.log(vm[1] / target)))[0]
    return round(best, _DIGITS)


def solve_point(model: CostModel, dimension: str, factor: float) -> Point:
    """The ``dimension``-only point (α, β, γ) of :func:`solve_multiplier` (the other two multipliers 1)."""
    return _triple(dimension, solve_multiplier(model, dimension, factor))


def single_dimension(model: CostModel, target: float) -> list[Point]:
    """The depth-only, width-only and resolution-only points whose price is closest to ``target`` × the baseline's."""
    return [solve_point(model, d, target) for d in DIMENSIONS]


@dataclass(frozen=True)
class _Classes:
    """The grid values of one coefficient grouped by the network they build (ascending; first value represents)."""

    groups: tuple[tuple[float, ...], ...]

    @classmethod
    def of(cls, model: CostModel, values: Sequence[float], dimension: str) -> _Classes:
        groups: dict[Hashable, list[float]] = {}
        for v in values:
            try:
                key = network_key(model.network(*_triple(dimension, v)))
            except ValueError:  # beyond the spec's bounds: not a point of the grid
                continue
            groups.setdefault(key, []).append(v)
        return cls(tuple(tuple(g) for g in groups.values()))


def _first(count: int, reached: Callable[[int], bool]) -> int:
    """The first index in ``[0, count)`` where the monotone ``reached`` is true (``count`` if none; bisection)."""
    lo, hi = 0, count
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reached(mid) else (mid + 1, hi)
    return lo


def equal_cost_grid(
    model: CostModel,
    target: float = 2.0,
    tol: float = 0.05,
    step: float = 0.1,
    low: float = 1.0,
    high: float = 2.0,
    *,
    limit: int = 10000,
) -> list[Point]:
    """Every (α, β, γ) on the grid ``low, low + step, …, high`` whose price factor is within ``tol`` of ``target``,
    one point per distinct network (the smallest coefficients that build it), sorted.

    Grid values that build the same network are grouped (depth is ``ceil``'d, channels rounded, pixels whole), and
    for each depth and width group the resolution groups in the band are found by bisection, so a fine grid costs
    a few thousand prices. :class:`~effnet.errors.InvalidValue`, naming the nearest point and what to change, when
    no point is in the band; and when more than ``limit`` points are.
    """
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
        raise InvalidValue(f"--tol must be a number >= 0, got {tol!r}")
    values = grid_values(low, high, step)
    depth, width, res = (_Classes.of(model, values, d) for d in DIMENSIONS)
    points: list[Point] = []
    nearest: tuple[float, Point] | None = None
    for a in (g[0] for g in depth.groups):
        for b in (g[0] for g in width.groups):

            def factor(k: int, a: float = a, b: float = b) -> float:
                return model.factor((a, b, res.groups[k][0])) or math.inf

            n = len(res.groups)
            i = _first(n, lambda k: factor(k) >= target - tol - 1e-12)
            j = _first(n, lambda k: factor(k) > target + tol + 1e-12)
            points += [(a, b, res.groups[k][0]) for k in range(i, j)]
            for k in (i - 1, j):  # the nearest points outside the band, for the message
                if 0 <= k < len(res.groups) and math.isfinite(f := factor(k)):
                    if nearest is None or abs(f - target) < nearest[0]:
                        nearest = (abs(f - target), (a, b, res.groups[k][0]))
            if len(points) > limit:
                raise InvalidValue(
                    f"more than {limit} distinct networks on the grid step={step:g} have {model.unit} within "
                    f"{tol:g} of {target:g}x the baseline's; use a coarser --step or a smaller --tol"
                )
    if not points:
        near = ""
        if nearest is not None:
            f = model.factor(nearest[1])
            near = f" (nearest: {f:.3g}x at alpha={nearest[1][0]:g} beta={nearest[1][1]:g} gamma={nearest[1][2]:g})"
        raise InvalidValue(
            f"no (alpha, beta, gamma) on the grid step={step:g} in [{low:g}, {high:g}] has {model.unit} within "
            f"--tol {tol:g} of {target:g}x the baseline's{near}; use a finer --step, a larger --tol, or a larger "
            "proxy (--width, --depth, --resolution), where rounding moves the cost in smaller steps"
        )
    return sorted(points)
