"""The candidates of a search study: every trial's (α, β, γ, seed), its network and the study's definition.

The candidates are the grid points at the target cost plus the depth-only, width-only and resolution-only points
at the same cost (always included, so every study answers "does compound beat single-dimension scaling?") and the
unscaled baseline as a reference. What "cost" means is ``--cost`` (:func:`cost_model`): ``macs``, the exact MACs
of the network built at a point over the baseline's (:func:`effnet.search.equal_cost.equal_cost_grid`, one point
per distinct network, single-dimension multipliers solved on the exact cost); ``latency``, the same on the latency
a profile predicts (:func:`latency_cost_model`, EfficientNet-X's latency-aware scaling); ``formula``, the paper's
``|α·β²·γ² − target| ≤ tol`` (:func:`effnet.scaling.grid`, single-dimension points at exactly the target). Each
candidate is trained ``seeds`` times: trial = (α, β, γ, seed). A trial scales the baseline by ``d = α``,
``w = β``, ``r = γ`` (:func:`trial_spec`). Neither torch nor Optuna is imported here.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from effnet.architectures import scale
from effnet.config.search import DEFAULT_STEP, DEFAULT_TOL, MAX_TRIALS, SearchConfig, study_options
from effnet.errors import InvalidValue
from effnet.latency.predict import predict_latency
from effnet.latency.profile import Profile, load_profile
from effnet.scaling import grid, single_dimension_points
from effnet.search.baselines import load_baseline
from effnet.search.equal_cost import CostModel, equal_cost_grid, network_key, single_dimension
from effnet.specs import NetworkSpec

__all__ = [
    "study_candidates",
    "FORMAT",
    "SAME_NETWORK_NOTE",
    "BAND_NOTE",
    "Candidate",
    "candidates",
    "exact_cost_model",
    "latency_cost_model",
    "cost_model",
    "search_profile",
    "latency_definition",
    "band_notes",
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
BAND_NOTE = "not compared: "
"""How the lines of :func:`band_notes` begin (``--jobs`` helper workers leave them to the parent too)."""


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
    model: CostModel | None = None,
) -> list[Candidate]:
    """Every trial of a study: grid points, the single-dimension points, optionally (1, 1, 1), × seeds.

    ``model`` None: the formula's grid and single-dimension points; a :class:`~effnet.search.equal_cost.CostModel`:
    the points at equal cost on it (:func:`cost_model`). Order: baseline first, then the points sorted, each repeated
    for every seed in ``seeds`` (seed-major within a point). :class:`~effnet.errors.InvalidValue` when the grid has
    no point inside the tolerance (saying what to change) or more than ``MAX_TRIALS`` trials.
    """
    if model is None:
        points = set(grid(target=target, tol=tol, step=step, low=low, high=high))
        singles = single_dimension_points(target)
    else:
        points = set(equal_cost_grid(model, target, tol, step, low, high, limit=MAX_TRIALS))
        singles = single_dimension(model, target)
    points.update((round(a, 10), round(b, 10), round(g, 10)) for a, b, g in singles)
    ordered = sorted(points)
    if include_baseline:
        ordered = [(1.0, 1.0, 1.0)] + [p for p in ordered if p != (1.0, 1.0, 1.0)]
    if len(ordered) * len(seeds) > MAX_TRIALS:
        raise InvalidValue(
            f"the grid has {len(ordered)} points x {len(seeds)} seeds = {len(ordered) * len(seeds)} "
            f"trials, more than {MAX_TRIALS}; use a coarser --step or a smaller --tol"
        )
    return [Candidate(a, b, g, _kind(a, b, g), int(s)) for a, b, g in ordered for s in seeds]


def study_candidates(config: SearchConfig, model: CostModel | None) -> list[Candidate]:
    """The trials of the study ``config`` describes: :func:`candidates` with the config's grid and seeds, at equal
    cost on ``model`` (:func:`cost_model` of the baseline as trained; None: the formula)."""
    return candidates(
        config.target,
        config.tol,
        config.step,
        config.low,
        config.high,
        seeds=[config.seed + i for i in range(config.seeds)],
        include_baseline=config.include_baseline,
        model=model,
    )


def exact_cost_model(base: NetworkSpec) -> CostModel:
    """The exact MACs of the network at each point, over ``base``'s (the baseline as trained)."""
    return CostModel(functools.partial(trial_spec, base))


def latency_cost_model(base: NetworkSpec, profile: Profile) -> CostModel:
    """The latency ``profile`` predicts for the network at each point, over ``base``'s (the baseline as trained)."""

    def price(spec: NetworkSpec) -> float:
        return predict_latency(spec, profile).ms

    return CostModel(functools.partial(trial_spec, base), price, "predicted latency")


def cost_model(base: NetworkSpec, cost: str = "macs", profile: Profile | None = None) -> CostModel | None:
    """The cost model ``--cost`` grids the points on, for the baseline ``base`` as trained: exact MACs (``macs``),
    the latency ``profile`` predicts (``latency``), or None for the formula ``α·β²·γ²`` (``formula``)."""
    if cost == "formula":
        return None
    if cost == "macs":
        return exact_cost_model(base)
    if cost == "latency" and profile is not None:
        return latency_cost_model(base, profile)
    raise InvalidValue(f"--cost must be macs, formula or latency (with --profile), got {cost!r}")


def search_profile(config: SearchConfig) -> Profile | None:
    """The latency profile of ``--profile`` (refused in one line if made elsewhere, unless accepted), or None."""
    if not config.profile:
        return None
    return load_profile(config.profile, accept_foreign=config.accept_foreign_profile)


def latency_definition(profile: Profile, model: CostModel, items: Sequence[Candidate]) -> dict[str, Any]:
    """What a study records of its profile: the engine, precision, batch, threads and CPU it predicts, a digest of
    the profile, and each point's predicted latency factor (``model``: :func:`latency_cost_model`)."""
    fp = profile.fingerprint
    text = json.dumps(profile.to_dict(), sort_keys=True, default=str)
    return {
        "profile": {
            "engine": fp.engine,
            "precision": fp.precision,
            "batch": fp.batch,
            "threads": fp.threads,
            "cpu_model": fp.cpu_model,
            "digest": hashlib.sha256(text.encode()).hexdigest()[:16],
        },
        "factors": [[*p, round(f, 6)] for p in dict.fromkeys(c.point for c in items) if (f := model.factor(p))],
    }


def band_notes(
    items: Sequence[Candidate], model: CostModel, target: float, tol: float, cost: str = "macs"
) -> list[str]:
    """One line per distinct point whose cost on ``model`` (the cost the verdict compares) is outside
    ``target ± tol``: trained for reference, never compared. ``cost``: the study's ``--cost``, for the advice."""
    advice = (
        "--cost macs grids at equal exact cost"
        if cost == "formula"
        else "a larger proxy, --width, --depth or --resolution, rounds in smaller steps"
    )
    notes, seen = [], set()
    for item in items:
        if item.kind == "baseline" or item.point in seen:
            continue
        seen.add(item.point)
        factor = model.factor(item.point)
        if factor is not None and abs(factor - target) > tol + 1e-12:
            notes.append(
                f"{BAND_NOTE}{item.kind} a={item.alpha:g} b={item.beta:g} g={item.gamma:g}: {model.unit} "
                f"{factor:.3g}x the baseline's, outside {target:g} +- {tol:g} (trained for reference; {advice})"
            )
    return notes


def distinct_networks(
    items: Sequence[Candidate], base: NetworkSpec
) -> tuple[list[Candidate], list[tuple[Candidate, Candidate]]]:
    """``items`` without the trials that would train a network (and seed) an earlier item already trains.

    Two points can round to the same network (:func:`effnet.search.equal_cost.network_key`): at 32 px, γ = 1.4 and
    γ = √2 both give 45 px inputs; at depth 0.5, α = 1.8 and α = 1.9 give the same repeats. Returns
    the kept items (order preserved) and ``(dropped, same_as)`` pairs.
    """
    first: dict[tuple[NetworkSpec, int], Candidate] = {}
    kept: list[Candidate] = []
    dropped: list[tuple[Candidate, Candidate]] = []
    for item in items:
        key = (network_key(trial_spec(base, item.alpha, item.beta, item.gamma)), item.seed)
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
            "cost": config.cost,
            "target": config.target,
            "tol": config.tol,
            "step": config.step,
            "low": config.low,
            "high": config.high,
            "include_baseline": config.include_baseline,
            "reward_weight": config.reward_weight,
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
