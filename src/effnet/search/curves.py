"""The paper's Figures 3 and 8 as a tool: top-1 against MACs for single-dimension and compound scaling.

The baseline is scaled four ways for φ = 1…N: **depth only**, **width only** and **resolution only** (each
multiplier solved on the exact cost model, :func:`effnet.search.equal_cost.solve_multiplier`, so that the network's
MACs are the closest reachable to ``2^φ`` × the baseline's — depth and width move in steps, because repeats are
``ceil``'d and channels rounded to multiples of 8), and **compound** (``d = α^φ``, ``w = β^φ``, ``r = γ^φ``,
whose FLOPs grow by ``(α·β²·γ²)^φ`` ≈ ``2^φ``). Every point and the unscaled baseline are trained on the same budget
as one Optuna study, through the machinery of ``effnet search`` (:func:`effnet.search.run.run_trials`: enqueued points,
resumable, several processes or machines on one storage). The report (table, CSV, JSON, PNG) has one line per
method through the baseline.

``--cost latency`` (EfficientNet-X's view): the single-dimension multipliers are solved on the latency a profile
predicts (:func:`effnet.search.grid.latency_cost_model`), so each point is at ``2^φ`` × the baseline's predicted
latency; after training, every point's network is measured on this machine with the profile's engine, precision,
batch and threads (:class:`effnet.search.measure.Measurer`, interleaved rounds), and the plot draws top-1 against
that measured latency.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from effnet.config.curves import CurvesConfig
from effnet.cost import cost
from effnet.errors import check_type
from effnet.io import atomic_write_json
from effnet.latency.profile import Profile, load_profile
from effnet.report import Panel, Series, plot_panels, write_table
from effnet.search.equal_cost import CostModel, Point, network_key, solve_point
from effnet.search.grid import (
    Candidate,
    baseline_spec,
    distinct_networks,
    exact_cost_model,
    latency_cost_model,
    trial_spec,
)
from effnet.search.measure import Measurer
from effnet.search.report import summarize
from effnet.search.rounds import measure_in_rounds
from effnet.search.run import run_trials, trained_baseline
from effnet.search.worker import Trainer
from effnet.specs import NetworkSpec

__all__ = ["CurvePoint", "curve_points", "measure_points", "run_curves", "columns", "TABLE_COLUMNS"]

TABLE_COLUMNS = (
    "method",
    "phi",
    "depth",
    "width",
    "gamma",
    "resolution",
    "target_factor",
    "macs",
    "macs_factor",
    "predicted_latency_factor",
    "latency_ms",
    "latency_factor",
    "params",
    "top1_mean",
    "top1_std",
    "seeds",
    "epochs",
    "wall_time_s",
)
"""Columns of the curves table (``target_factor``: the growth aimed at; ``macs_factor``: exact ÷ baseline; with
``--cost latency``: ``predicted_latency_factor``, and ``latency_ms`` measured here with ``latency_factor`` ÷
baseline's; without, those are empty)."""

_DIGITS = 6


@dataclass(frozen=True)
class CurvePoint:
    """One point of a curve: method, φ, multipliers (``gamma`` multiplies the baseline's resolution) and exact cost."""

    method: str
    phi: int
    depth: float
    width: float
    gamma: float
    resolution: int
    target_factor: float
    macs: int
    params: int


def columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """:data:`TABLE_COLUMNS` less the latency columns where no row has them (``--cost macs``)."""
    latency = ("predicted_latency_factor", "latency_ms", "latency_factor")
    return [c for c in TABLE_COLUMNS if c not in latency or any(r.get(c) is not None for r in rows)]


def _point(base: NetworkSpec, method: str, phi: int, triple: Point, target: float) -> CurvePoint:
    spec = trial_spec(base, *triple)
    c = cost(spec)
    return CurvePoint(method, phi, *triple, spec.resolution, round(target, 6), c.macs, c.params)


def curve_points(base: NetworkSpec, config: CurvesConfig, model: CostModel | None = None) -> list[CurvePoint]:
    """The baseline (φ = 0, method ``baseline``) and, for φ = 1..phi_max, one point per method of ``config``; the
    single-dimension multipliers solved on ``model`` (default: exact MACs)."""
    points = [_point(base, "baseline", 0, (1.0, 1.0, 1.0), 1.0)]
    rule = config.alpha * config.beta**2 * config.gamma**2
    model = model or exact_cost_model(base)
    for phi in range(1, config.phi_max + 1):
        for method in config.methods:
            if method == "compound":
                triple = tuple(round(c**phi, _DIGITS) for c in (config.alpha, config.beta, config.gamma))
                points.append(_point(base, method, phi, triple, rule**phi))
            else:
                points.append(_point(base, method, phi, solve_point(model, method, 2.0**phi), 2.0**phi))
    return points


def measure_points(base: NetworkSpec, points: Sequence[CurvePoint], profile: Profile) -> list[float]:
    """Each point's latency (ms per batch) measured here with ``profile``'s engine, precision, batch and threads, in
    interleaved rounds (:func:`effnet.search.rounds.measure_in_rounds`; points that are one network measured once)."""
    fp = profile.fingerprint
    specs = [trial_spec(base, p.depth, p.width, p.gamma) for p in points]
    keys = list(dict.fromkeys(network_key(s) for s in specs))
    first = {k: next(s for s in specs if network_key(s) == k) for k in keys}
    with Measurer("cpu", fp.batch, threads=fp.threads, runtime=fp.engine, precision=fp.precision) as measurer:
        rounds = measure_in_rounds(
            len(keys),
            lambda i: measurer(first[keys[i]]),
            lambda m: m.latency_ms,
            min_rounds=2,
            max_rounds=3,
            max_spread=0.1,
        )
    return [rounds.latency(keys.index(network_key(s))) for s in specs]


def _candidates(points: Sequence[CurvePoint], seeds: Sequence[int]) -> list[Candidate]:
    """The study's trials: every point × seed (seed-major within a point, as a search's candidates)."""
    return [Candidate(p.depth, p.width, p.gamma, p.method, s) for p in points for s in seeds]


def _rows(
    points: Sequence[CurvePoint],
    items: Sequence[Candidate],
    base: NetworkSpec,
    records: Sequence[Mapping[str, Any]],
    latency: tuple[CostModel, Sequence[float]] | None = None,
) -> list[dict[str, Any]]:
    """One table row per point with its trained accuracy (a point that is the same network as another: its row);
    ``latency``: the predicting model and each point's measured latency (``--cost latency``)."""
    by_point = {(r["alpha"], r["beta"], r["gamma"]): r for r in summarize(records, cost(base).macs)}
    _, same = distinct_networks(items, base)
    alias = {d.point: k.point for d, k in same}
    rows = []
    for i, p in enumerate(points):
        point = (p.depth, p.width, p.gamma)
        r = by_point.get(alias.get(point, point), {})
        rows.append(
            {
                "method": p.method,
                "phi": p.phi,
                "depth": p.depth,
                "width": p.width,
                "gamma": p.gamma,
                "resolution": p.resolution,
                "target_factor": p.target_factor,
                "macs": p.macs,
                "macs_factor": round(p.macs / points[0].macs, 4),
                "predicted_latency_factor": round(latency[0].factor(point) or 0, 4) if latency else None,
                "latency_ms": round(latency[1][i], 4) if latency else None,
                "latency_factor": round(latency[1][i] / latency[1][0], 4) if latency else None,
                "params": p.params,
                "top1_mean": r.get("top1_mean"),
                "top1_std": r.get("top1_std"),
                "seeds": r.get("seeds", 0),
                "epochs": r.get("epochs"),
                "wall_time_s": r.get("wall_time_s"),
            }
        )
    return rows


def _plot(rows: Sequence[Mapping[str, Any]], methods: Sequence[str], path: Path, title: str) -> Path:
    base = next(r for r in rows if r["method"] == "baseline")
    key, xlabel, scale = ("macs", "MACs (millions, exact, as trained)", 1e6)
    if base["latency_ms"] is not None:
        key, xlabel, scale = ("latency_ms", "latency (ms per batch, measured here)", 1.0)
    series = []
    for method in methods:
        line = [base] + [r for r in rows if r["method"] == method]
        series.append(Series(method, [r[key] / scale for r in line], [r["top1_mean"] for r in line]))
    panel = Panel("each line: the baseline, then φ = 1, 2, ...", series, xlabel, "top-1 accuracy (%)")
    return plot_panels([panel], path, title=title, width=7.5)


def _settings(config: CurvesConfig) -> dict[str, Any]:
    """What a curves study is, beyond its training: family size, methods, coefficients and cost."""
    return {
        "phi_max": config.phi_max,
        "methods": list(config.methods),
        "alpha": config.alpha,
        "beta": config.beta,
        "gamma": config.gamma,
        "cost": config.cost,
    }


def run_curves(
    config: CurvesConfig,
    *,
    trainer: Trainer | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    source: str = "",
    before_report: Callable[[], Mapping[str, Any]] | None = None,
    on_ready: Callable[[], None] | None = None,
    measure_latency: bool = True,
) -> dict[str, Any]:
    """Train every curve point (resumably, as the study ``config.training.study``) and write the report:
    ``curves.{md,csv,json}``, ``curves.png`` and ``curves_summary.json`` in ``config.training.output``.

    Returns the summary (rows, points, coefficients, study, file paths). ``trainer`` as in ``run_search``; with
    the real one (None) the points are costed with the data's classes and input channels
    (:func:`trained_baseline`), with a stand-in as the baseline spec says. ``before_report`` and ``on_ready`` as
    in :func:`effnet.search.run.run_trials` (``--jobs``: :func:`effnet.search.jobs.run_jobs`). With ``--cost latency``
    the points are measured after training (:func:`measure_points`) unless ``measure_latency`` is False (the
    ``--jobs`` helpers, whose reports the parent's replaces, leave the machine quiet for it).
    """
    check_type("config", config, CurvesConfig, "a CurvesConfig")
    train = config.training
    base = trained_baseline(train) if trainer is None else baseline_spec(train)
    profile = None
    if config.cost == "latency" and config.profile:
        profile = load_profile(config.profile, accept_foreign=config.accept_foreign_profile)
    model = latency_cost_model(base, profile) if profile else None
    points = curve_points(base, config, model)
    items = _candidates(points, [train.seed + i for i in range(train.seeds)])
    extra = {
        "tool": "curves",
        "grid": None,
        "strategy": None,
        "curves": _settings(config),
    }
    records, summary = run_trials(
        train,
        items,
        trainer=trainer,
        progress=progress,
        echo=echo,
        extra=extra,
        before_report=before_report,
        on_ready=on_ready,
    )
    measured = measure_points(base, points, profile) if profile and model and measure_latency else None
    rows = _rows(points, items, base, records, (model, measured) if model and measured else None)
    out = Path(train.output)
    title = (
        f"scaling curves: {base.name} on {train.data}, {train.epochs} epoch(s)\ncompound α={config.alpha:g} "
        f"β={config.beta:g} γ={config.gamma:g}"
    )
    paths = write_table(rows, out / "curves", columns(rows), title=title.replace("\n", ", "))
    plot = _plot(rows, config.methods, out / "curves.png", title)
    full = {
        **summary,
        "tool": "curves",
        "source": source,
        **_settings(config),
        "rows": rows,
        "points": [asdict(p) for p in points],
        "records": records,
        "files": {
            "table_md": str(paths["md"]),
            "table_csv": str(paths["csv"]),
            "table_json": str(paths["json"]),
            "plot": str(plot),
            "summary": str(out / "curves_summary.json"),
        },
    }
    atomic_write_json(out / "curves_summary.json", full)
    return full
