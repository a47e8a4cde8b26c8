"""The candidates of a search study: every trial's (α, β, γ, seed), its network and the study's definition.

The candidates are every (α, β, γ) of :func:`effnet.scaling.grid` (``|α·β²·γ² − target| ≤ tol``) plus the
depth-only, width-only and resolution-only points at the same FLOPs target (always included, so every study
answers "does compound beat single-dimension scaling?") and the unscaled baseline as a reference. Each candidate
is trained ``seeds`` times: trial = (α, β, γ, seed). A trial scales the baseline by ``d = α``, ``w = β``,
``r = γ`` (:func:`trial_spec`). Neither torch nor Optuna is imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from effnet.architectures import scale
from effnet.config.search import DEFAULT_STEP, DEFAULT_TOL, MAX_TRIALS, SearchConfig, study_options
from effnet.errors import InvalidValue
from effnet.scaling import grid, single_dimension_points
from effnet.search.baselines import load_baseline
from effnet.specs import NetworkSpec

__all__ = [
    "FORMAT",
    "SAME_NETWORK_NOTE",
    "Candidate",
    "candidates",
    "distinct_networks",
    "same_network_note",
    "baseline_spec",
    "trial_spec",
    "definition",
]

FORMAT = "effnet-search/1"
"""The ``format`` of a study's definition (:func:`definition`)."""

SAME_NETWORK_NOTE = "not training "
"""How the line of :func:`same_network_note` begins (``--jobs`` helper workers leave that line to the parent)."""


@dataclass(frozen=True)
class Candidate:
    """One trial of the study: coefficients, which kind of scaling they are, and the training seed."""

    alpha: float
    beta: float
    gamma: float
    kind: str
    seed: int

    @property
    def params(self) -> dict[str, float | int]:
        """The Optuna parameters of this trial (names ``alpha``, ``beta``, ``gamma``, ``seed``)."""
        return {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma, "seed": self.seed}

    @property
    def point(self) -> tuple[float, float, float]:
        """``(α, β, γ)``."""
        return (self.alpha, self.beta, self.gamma)


def _kind(alpha: float, beta: float, gamma: float) -> str:
    scaled = [name for name, v in (("depth", alpha), ("width", beta), ("resolution", gamma)) if v != 1.0]
    if not scaled:
        return "baseline"
    return scaled[0] if len(scaled) == 1 else "compound"


def candidates(
    target: float = 2.0,
    tol: float = DEFAULT_TOL,
    step: float = DEFAULT_STEP,
    low: float = 1.0,
    high: float = 2.0,
    *,
    seeds: Sequence[int] = (0,),
    include_baseline: bool = True,
) -> list[Candidate]:
    """Every trial of a study: grid points, the exact single-dimension points, optionally (1, 1, 1), × seeds.

    Order: baseline first, then the points sorted, each repeated for every seed in ``seeds`` (seed-major
    within a point). Raises ``ValueError`` when the grid has no point inside the tolerance
    (:func:`effnet.scaling.grid`) or has more than ``MAX_TRIALS`` trials (:class:`~effnet.errors.InvalidValue`).
    """
    points = set(grid(target=target, tol=tol, step=step, low=low, high=high))
    points.update((round(a, 10), round(b, 10), round(g, 10)) for a, b, g in single_dimension_points(target))
    ordered = sorted(points)
    if include_baseline:
        ordered = [(1.0, 1.0, 1.0)] + [p for p in ordered if p != (1.0, 1.0, 1.0)]
    if len(ordered) * len(seeds) > MAX_TRIALS:
        raise InvalidValue(
            f"the grid has {len(ordered)} points x {len(seeds)} seeds = {len(ordered) * len(seeds)} "
            f"trials, more than {MAX_TRIALS}; use a coarser --step or a smaller --tol"
        )
    return [Candidate(a, b, g, _kind(a, b, g), int(s)) for a, b, g in ordered for s in seeds]


def distinct_networks(
    items: Sequence[Candidate], base: NetworkSpec
) -> tuple[list[Candidate], list[tuple[Candidate, Candidate]]]:
    """``items`` without the trials that would train a network (and seed) an earlier item already trains.

    Two points can round to the same network: at 32 px, γ = 1.4 and γ = √2 both give 45 px inputs. Returns
    the kept items (order preserved) and ``(dropped, same_as)`` pairs.
    """
    first: dict[tuple[NetworkSpec, int], Candidate] = {}
    kept: list[Candidate] = []
    dropped: list[tuple[Candidate, Candidate]] = []
    for item in items:
        key = (trial_spec(base, item.alpha, item.beta, item.gamma).replace(name=base.name), item.seed)
        if key in first:
            dropped.append((item, first[key]))
        else:
            first[key] = item
            kept.append(item)
    return kept, dropped


def same_network_note(dropped: Candidate, kept: Candidate) -> str:
    """The line saying that ``dropped`` is not trained: the same network as ``kept`` (:func:`distinct_networks`)."""
    return (
        f"{SAME_NETWORK_NOTE}a={dropped.alpha:g} b={dropped.beta:g} g={dropped.gamma:g}: it is the same "
        f"network as a={kept.alpha:g} b={kept.beta:g} g={kept.gamma:g}"
    )


def baseline_spec(config: SearchConfig) -> NetworkSpec:
    """The baseline the search scales: ``--baseline`` with the budget's width/depth multipliers and resolution."""
    base = load_baseline(config.baseline)
    return scale(base, depth=config.depth, width=config.width, resolution=config.resolution)


def trial_spec(base: NetworkSpec, alpha: float, beta: float, gamma: float) -> NetworkSpec:
    """``base`` scaled by ``d = α``, ``w = β`` and ``r = γ`` (input size ``round(resolution·γ)``, at least 8)."""
    resolution = max(8, int(round(base.resolution * gamma)))
    name = f"{base.name}_a{alpha:g}_b{beta:g}_g{gamma:g}"
    return scale(base, depth=alpha, width=beta, resolution=resolution, name=name)


def definition(config: SearchConfig, base: NetworkSpec, items: Sequence[Candidate]) -> dict[str, Any]:
    """What makes two runs the same study: grid, seeds, baseline spec, data and training budget (JSON-ready)."""
    return {
        "format": FORMAT,
        "grid": {
            "target": config.target,
            "tol": config.tol,
            "step": config.step,
            "low": config.low,
            "high": config.high,
            "include_baseline": config.include_baseline,
        },
        "seeds": [config.seed + i for i in range(config.seeds)],
        "strategy": {"name": config.strategy, "eta": config.eta, "min_epochs": config.min_epochs, "keep": config.keep},
        "baseline": base.to_dict(),
        "budget": {
            "data": config.data,
            "epochs": config.epochs,
            "train_limit": config.train_limit,
            "val_limit": config.val_limit,
            "batch_size": config.batch_size,
            "train_options": study_options(config.train_options),  # not e.g. artifacts: what a trial computes
        },
        "candidates": [[c.alpha, c.beta, c.gamma, c.kind, c.seed] for c in items],
    }
