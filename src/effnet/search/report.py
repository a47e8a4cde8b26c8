"""The report of a scaling search: ranked table, chosen (α, β, γ), accuracy-vs-MACs plot, JSON/CSV export.

Rows aggregate the finished (COMPLETE or PRUNED) trials of one (α, β, γ) over seeds: accuracy mean ± sample
standard deviation and 95 % interval (``None`` with a single seed, see :mod:`effnet.search.stats`), mean epochs
trained and how many seeds were pruned. Fully trained rows rank first (best mean first, ties to fewer MACs), then
pruned ones (their accuracy is from fewer epochs). The chosen coefficients are the best fully trained scaled row
(the unscaled baseline is only a reference). The verdict "compound beats single-dimension" is
:func:`effnet.search.stats.verdict`. Every file is written atomically.

Equal cost: a row is ``equal_cost`` when its factor on the study's cost (exact MACs for ``--cost macs`` and
``formula``; the predicted latency for ``latency``) is within ``--tol`` of ``--target`` (:func:`cost_band`). The
chosen row and the verdict's two rows are taken among those only, and the verdict says what it compared
(``compared``); the table shows the formula's, the exact MACs' and (with a profile) the predicted latency's factor
side by side, and the plot has one panel per factor with the band shaded.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from effnet.errors import OutputConflict
from effnet.io import atomic_write_json
from effnet.report import format_count, render_markdown, write_table
from effnet.search.report_plot import Band, plot_accuracy_vs_macs
from effnet.search.stats import interval95, verdict

__all__ = [
    "TABLE_COLUMNS",
    "PRINTED_COLUMNS",
    "printed_table",
    "Band",
    "cost_band",
    "summarize",
    "choose",
    "compare",
    "check_report_owner",
    "write_report",
]

TABLE_COLUMNS = (
    "rank",
    "kind",
    "alpha",
    "beta",
    "gamma",
    "flops_factor",
    "macs",
    "macs_factor",
    "latency_factor",
    "equal_cost",
    "params",
    "resolution",
    "epochs",
    "pruned",
    "top1_mean",
    "reward",
    "top1_std",
    "top1_ci95_low",
    "top1_ci95_high",
    "seeds",
    "wall_time_s",
)
"""Columns of the ranked table (``flops_factor`` = α·β²·γ² by the rule; ``macs_factor`` = exact MACs ÷ baseline;
``latency_factor`` = predicted latency ÷ baseline's, with a profile; ``equal_cost`` = within the study's cost band;
``reward`` = top-1 × (latency factor / target)^w with ``--reward-weight w``;
``epochs`` = mean epochs trained per seed; ``pruned`` = seeds stopped early by successive halving)."""

PRINTED_COLUMNS = {
    "rank": "rank",
    "kind": "kind",
    "alpha": "α",
    "beta": "β",
    "gamma": "γ",
    "macs": "MACs",
    "macs_factor": "MACs ×",
    "params": "params",
    "resolution": "px",
    "epochs": "epochs",
    "top1": "top-1 % (mean ± std)",
    "interval": "95 % interval",
}
"""The table ``effnet search`` prints (column -> header), the one the README quotes: :data:`TABLE_COLUMNS` in
short (``MACs ×`` is ``macs_factor``; ``epochs`` says how many seeds were stopped early); the files hold them all."""


def printed_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The ranked rows as the Markdown table of :data:`PRINTED_COLUMNS`."""
    shown = []
    for r in rows:
        epochs = f"{r['epochs']:g}" + (f" ({r['pruned']} stopped)" if r["pruned"] else "")
        std = f" ± {r['top1_std']:.2f}" if r["top1_std"] is not None else ""
        interval = f"{r['top1_ci95_low']:.2f}–{r['top1_ci95_high']:.2f}" if r["top1_ci95_low"] is not None else ""
        shown.append(
            {
                **{k: r[k] for k in ("rank", "kind", "alpha", "beta", "gamma", "resolution")},
                "macs": format_count(r["macs"]),
                "macs_factor": f"{r['macs_factor']:.2f}",
                "params": f"{r['params']:,}",
                "epochs": epochs,
                "top1": f"{r['top1_mean']:.2f}{std}",
                "interval": interval,
            }
        )
    return render_markdown(shown, list(PRINTED_COLUMNS), headers=PRINTED_COLUMNS, right=list(PRINTED_COLUMNS)[2:])


_COST_NAMES = {"macs_factor": "exact MACs", "latency_factor": "predicted latency"}


def cost_band(definition: Mapping[str, Any]) -> Band | None:
    """The equal-cost band of a study's definition: exact MACs (``--cost macs`` or ``formula``) or the predicted
    latency (``latency``) within ``tol`` of ``target``; None for a study made before ``--cost`` existed."""
    grid = definition.get("grid") or {}
    if "cost" not in grid:
        return None
    key = "latency_factor" if grid["cost"] == "latency" else "macs_factor"
    return (key, grid["target"] - grid["tol"] - 1e-9, grid["target"] + grid["tol"] + 1e-9)


def summarize(
    records: Sequence[Mapping[str, Any]], baseline_macs: int, definition: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One row per (α, β, γ) from per-trial records, ranked by mean top-1 (best first, then fewer MACs).

    With the study's ``definition``: ``equal_cost`` per row (:func:`cost_band`), each point's predicted
    ``latency_factor`` (a study with ``--profile``) and, with ``--reward-weight w``, ``reward`` = top-1 ×
    (latency factor / target)^w, by which the rows are ranked instead.
    """
    band = cost_band(definition or {})
    factors = {(a, b, g): f for a, b, g, f in (definition or {}).get("latency", {}).get("factors", [])}
    grid = (definition or {}).get("grid") or {}
    weight, target = grid.get("reward_weight") or 0.0, grid.get("target", 1.0)
    groups: dict[tuple[float, float, float], list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["alpha"], r["beta"], r["gamma"]), []).append(r)
    rows = []
    for (a, b, g), trials in groups.items():
        accs = [float(t["top1"]) for t in trials]
        first = trials[0]
        ci = interval95(accs)
        rows.append(
            {
                "kind": first["kind"],
                "alpha": a,
                "beta": b,
                "gamma": g,
                "flops_factor": round(a * b * b * g * g, 4),
                "macs": int(first["macs"]),
                "macs_factor": round(float(first.get("macs_factor", first["macs"] / baseline_macs)), 4),
                "latency_factor": factors.get((a, b, g)),
                "params": int(first["params"]),
                "resolution": int(first["resolution"]),
                "top1_mean": round(statistics.fmean(accs), 3),
                "top1_std": round(statistics.stdev(accs), 3) if len(accs) > 1 else None,
                "top1_ci95_low": round(ci[0], 3) if ci else None,
                "top1_ci95_high": round(ci[1], 3) if ci else None,
                "epochs": round(statistics.fmean(float(t.get("epochs", 0) or 0) for t in trials), 2),
                "pruned": sum(bool(t.get("pruned")) for t in trials),
                "samples": accs,
                "seeds": len(accs),
                "wall_time_s": round(statistics.fmean(float(t["wall_time_s"]) for t in trials), 1),
            }
        )
    for row in rows:
        value = row.get(band[0]) if band else None
        row["equal_cost"] = band is None or (value is not None and band[1] <= value <= band[2])
        if band is not None and row["kind"] == "baseline":
            row["equal_cost"] = None  # the reference: at 1x, never compared
    for row in rows:
        lat = row["latency_factor"]
        row["reward"] = round(row["top1_mean"] * (lat / target) ** weight, 3) if weight and lat else None
    rows.sort(key=lambda r: (r["pruned"] > 0, -(r["reward"] or 0.0) if weight else -r["top1_mean"], r["macs"]))
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return [{**{c: row[c] for c in TABLE_COLUMNS}, "samples": row["samples"]} for row in rows]


def choose(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The best-ranked fully trained scaled row at equal cost (the baseline reference never wins; a row without
    ``equal_cost`` counts as at equal cost); None when there is none."""
    return next(
        (r for r in rows if r["kind"] != "baseline" and not r.get("pruned") and r.get("equal_cost", True)), None
    )


def compare(rows: Sequence[Mapping[str, Any]], chance_top1: float | None, band: Band | None = None) -> dict[str, Any]:
    """:func:`effnet.search.stats.verdict` for the best fully trained compound and single-dimension rows at equal
    cost (``band``; ``compared`` says which rows that was)."""

    def best(kinds: tuple[str, ...]) -> Mapping[str, Any] | None:
        return next((r for r in rows if r["kind"] in kinds and not r["pruned"] and r.get("equal_cost", True)), None)

    compound, single = best(("compound",)), best(("depth", "width", "resolution"))
    out = verdict(compound, single, chance_top1)
    out["compared"] = _compared(rows, band)
    for name, row in (("compound", compound), ("single_dimension", single)):
        out[name] = (
            None
            if row is None
            else {
                k: row[k]
                for k in (
                    "kind",
                    "alpha",
                    "beta",
                    "gamma",
                    "top1_mean",
                    "top1_std",
                    "top1_ci95_low",
                    "top1_ci95_high",
                    "seeds",
                )
            }
        )
    return out


def _compared(rows: Sequence[Mapping[str, Any]], band: Band | None) -> str:
    """What the verdict compared: the rows at equal cost, and the scaled rows it left out with their factor."""
    scaled = [r for r in rows if r["kind"] != "baseline"]
    if band is None:
        return f"the best compound and single-dimension points of the grid, whatever their cost ({len(scaled)} points)"
    key, low, high = band
    inside = [r for r in scaled if r.get("equal_cost")]
    outside = [f"{r['kind']} ({r['alpha']:g}, {r['beta']:g}, {r['gamma']:g}) {r.get(key) or 0:.3g}x" for r in scaled]
    outside = [text for text, r in zip(outside, scaled, strict=True) if not r.get("equal_cost")]
    text = (
        f"only points at equal {_COST_NAMES[key]}: {(low + high) / 2:.4g} +- {(high - low) / 2:.3g}x the baseline's "
        f"({len(inside)} of {len(scaled)} scaled points)"
    )
    return text + (f"; left out: {', '.join(outside)}" if outside else "")


def check_report_owner(summary: str | Path, study: str, storage: str, overwrite: bool = False) -> None:
    """A search or curves run rewrites only its own report: a ``summary`` JSON already written there for another
    study (name or storage) is an :class:`~effnet.errors.OutputConflict` naming both, unless ``overwrite``."""
    path = Path(summary)
    try:
        saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() and not overwrite else {}
    except (OSError, ValueError):
        saved = {}
    owner = (saved.get("study"), saved.get("storage")) if isinstance(saved, dict) else (None, None)
    if owner != (None, None) and owner != (study, storage):
        raise OutputConflict(
            f"{path.parent} holds the report of study {owner[0]!r} in {owner[1]}, not of {study!r} in {storage}; "
            "pass --overwrite to replace it, or another --output"
        )


def write_report(
    records: Sequence[Mapping[str, Any]],
    baseline_macs: int,
    output: str | Path,
    *,
    summary: Mapping[str, Any],
) -> dict[str, Any]:
    """Write ``search_results.{md,csv,json}``, ``accuracy_vs_macs.png`` and ``search_summary.json``.

    ``summary`` (the study definition, storage, study name, wall time, ...) is stored with the chosen
    coefficients, the ranked rows and every trial record. Returns the summary dict that was written.
    """
    out = Path(output)
    band = cost_band(summary.get("definition", {}))
    rows = summarize(records, baseline_macs, summary.get("definition"))
    best = choose(rows)
    grid = summary.get("definition", {}).get("grid", {})
    title = (
        f"scaling search: {summary.get('baseline_name', 'baseline')} on {summary.get('data', '?')}, "
        f"--cost {grid.get('cost', 'formula')} grid {grid.get('target', '?')}±{grid.get('tol', '?')}x"
        + (f", compared at equal {_COST_NAMES[band[0]]}" if band else "")
    )
    columns = [c for c in TABLE_COLUMNS if c not in ("latency_factor", "reward") or any(r[c] is not None for r in rows)]
    paths = write_table([{c: r[c] for c in columns} for r in rows], out / "search_results", columns, title=title)
    plot = plot_accuracy_vs_macs(rows, out / "accuracy_vs_macs.png", title=title, chosen=best, band=band)
    chosen = None
    if best is not None:
        chosen = {
            k: best[k]
            for k in (
                "alpha",
                "beta",
                "gamma",
                "kind",
                "top1_mean",
                "top1_std",
                "top1_ci95_low",
                "top1_ci95_high",
                "seeds",
                "macs",
                "params",
                "flops_factor",
                "macs_factor",
                "latency_factor",
                "equal_cost",
                "reward",
            )
        }
    single: dict[str, float] = {}
    for r in rows:  # rows are ranked, so the first row of each kind is its best
        if r["kind"] in ("depth", "width", "resolution") and not r["pruned"]:
            single.setdefault(r["kind"], r["top1_mean"])
    compound = [r["top1_mean"] for r in rows if r["kind"] == "compound" and not r["pruned"]]
    answer = compare(rows, summary.get("chance_top1"), band)
    full = {
        **summary,
        "chosen": chosen,
        "best_compound_top1": max(compound) if compound else None,
        "single_dimension_top1": single,
        "compound_beats_single_dimension": answer["answer"],
        "verdict": answer,
        "pruned_trials": sum(bool(r.get("pruned")) for r in records),
        "rows": rows,
        "trials": [dict(r) for r in records],
        "files": {
            "table_md": str(paths["md"]),
            "table_csv": str(paths["csv"]),
            "table_json": str(paths["json"]),
            "plot": str(plot),
            "summary": str(out / "search_summary.json"),
        },
        "table_markdown": printed_table(rows),
    }
    atomic_write_json(out / "search_summary.json", full)
    return full
