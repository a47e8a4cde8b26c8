"""The paper's Figures 3 and 8 as a tool: top-1 against MACs for single-dimension and compound scaling.

The baseline is scaled four ways for φ = 1…N: **depth only**, **width only** and **resolution only** (each
multiplier solved on the exact cost model, :func:`effnet.search.equal_cost.solve_multiplier`, so that the network's
MACs are the closest reachable to ``2^φ`` × the baseline's — depth and width move in steps, because repeats are
``ceil``'d and channels rounded to multiples of 8), and **compound** (``d = α^φ``, ``w = β^φ``, ``r = γ^φ``,
whose FLOPs grow by ``(α·β²·γ²)^φ`` ≈ ``2^φ``). Every point and the unscaled baseline are trained on the same budget
as one Optuna study, through the machinery of ``effnet search`` (:func:`effnet.search.run.run_trials`: enqueued points,
resumable, several processes or machines on one storage). The report (table, CSV, JSON, PNG) has one line per
method through the baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from effnet.config.curves import CurvesConfig
from effnet.cost import cost
from effnet.io import atomic_write_json
from effnet.report import Panel, Series, plot_panels, write_table
from effnet.search.equal_cost import Point, solve_point
from effnet.search.grid import Candidate, baseline_spec, distinct_networks, exact_cost_model, trial_spec
from effnet.search.report import summarize
from effnet.search.run import run_trials, trained_baseline
from effnet.search.worker import Trainer
from effnet.specs import NetworkSpec

__all__ = ["CurvePoint", "curve_points", "run_curves", "TABLE_COLUMNS"]

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
    "params",
    "top1_mean",
    "top1_std",
    "seeds",
    "epochs",
    "wall_time_s",
)
"""Columns of the curves table (``target_factor``: the FLOPs growth aimed at; ``macs_factor``: exact ÷ baseline)."""

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


def _point(base: NetworkSpec, method: str, phi: int, triple: Point, target: float) -> CurvePoint:
    spec = trial_spec(base, *triple)
    c = cost(spec)
    return CurvePoint(method, phi, *triple, spec.resolution, round(target, 6), c.macs, c.params)


def curve_points(base: NetworkSpec, config: CurvesConfig) -> list[CurvePoint]:
    """The baseline (φ = 0, method ``baseline``) and, for φ = 1..phi_max, one point per method of ``config``."""
    points = [_point(base, "baseline", 0, (1.0, 1.0, 1.0), 1.0)]
    rule = config.alpha * config.beta**2 * config.gamma**2
    model = exact_cost_model(base)
    for phi in range(1, config.phi_max + 1):
        for method in config.methods:
            if method == "compound":
                triple = tuple(round(c**phi, _DIGITS) for c in (config.alpha, config.beta, config.gamma))
                points.append(_point(base, method, phi, triple, rule**phi))
            else:
                points.append(_point(base, method, phi, solve_point(model, method, 2.0**phi), 2.0**phi))
    return points


def _candidates(points: Sequence[CurvePoint], seeds: Sequence[int]) -> list[Candidate]:
    """The study's trials: every point × seed (seed-major within a point, as a search's candidates)."""
    return [Candidate(p.depth, p.width, p.gamma, p.method, s) for p in points for s in seeds]


def _rows(
    points: Sequence[CurvePoint], items: Sequence[Candidate], base: NetworkSpec, records: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One table row per point with its trained accuracy (a point that is the same network as another: its row)."""
    by_point = {(r["alpha"], r["beta"], r["gamma"]): r for r in summarize(records, cost(base).macs)}
    _, same = distinct_networks(items, base)
    alias = {d.point: k.point for d, k in same}
    rows = []
    for p in points:
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
    series = []
    for method in methods:
        line = [base] + [r for r in rows if r["method"] == method]
        series.append(Series(method, [r["macs"] / 1e6 for r in line], [r["top1_mean"] for r in line]))
    panel = Panel(
        "each line: the baseline, then φ = 1, 2, ...",
        series,
        "MACs (millions, exact, as trained)",
        "top-1 accuracy (%)",
    )
    return plot_panels([panel], path, title=title, width=7.5)


def run_curves(
    config: CurvesConfig,
    *,
    trainer: Trainer | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    source: str = "",
    before_report: Callable[[], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train every curve point (resumably, as the study ``config.training.study``) and write the report:
    ``curves.{md,csv,json}``, ``curves.png`` and ``curves_summary.json`` in ``config.training.output``.

    Returns the summary (rows, points, coefficients, study, file paths). ``trainer`` as in ``run_search``; with
    the real one (None) the points are costed with the data's classes and input channels
    (:func:`trained_baseline`), with a stand-in as the baseline spec says. ``before_report`` as in
    :func:`effnet.search.run.run_trials` (``--jobs``: :func:`effnet.search.jobs.run_jobs`).
    """
    train = config.training
    base = trained_baseline(train) if trainer is None else baseline_spec(train)
    points = curve_points(base, config)
    items = _candidates(points, [train.seed + i for i in range(train.seeds)])
    extra = {
        "tool": "curves",
        "grid": None,
        "strategy": None,
        "curves": {
            "phi_max": config.phi_max,
            "methods": list(config.methods),
            "alpha": config.alpha,
            "beta": config.beta,
            "gamma": config.gamma,
        },
    }
    records, summary = run_trials(
        train, items, trainer=trainer, progress=progress, echo=echo, extra=extra, before_report=before_report
    )
    rows = _rows(points, items, base, records)
    out = Path(train.output)
    title = (
        f"scaling curves: {base.name} on {train.data}, {train.epochs} epoch(s)\ncompound α={config.alpha:g} "
        f"β={config.beta:g} γ={config.gamma:g}"
    )
    paths = write_table(rows, out / "curves", TABLE_COLUMNS, title=title.replace("\n", ", "))
    plot = _plot(rows, config.methods, out / "curves.png", title)
    full = {
        **summary,
        "tool": "curves",
        "source": source,
        "phi_max": config.phi_max,
        "methods": list(config.methods),
        "alpha": config.alpha,
        "beta": config.beta,
        "gamma": config.gamma,
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
