"""The report of a scaling search: ranked table, chosen (α, β, γ), accuracy-vs-MACs plot, JSON/CSV export.

Rows aggregate the finished (COMPLETE or PRUNED) trials of one (α, β, γ) over seeds: accuracy mean ± sample
standard deviation and 95 % interval (``None`` with a single seed, see :mod:`effnet.search.stats`), mean epochs
trained and how many seeds were pruned. Fully trained rows rank first (best mean first, ties to fewer MACs), then
pruned ones (their accuracy is from fewer epochs). The chosen coefficients are the best fully trained scaled row
(the unscaled baseline is only a reference). The verdict "compound beats single-dimension" is
:func:`effnet.search.stats.verdict`. Every file is written atomically.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from effnet.errors import OutputConflict
from effnet.io import atomic_path, atomic_write_json
from effnet.report import format_count, render_markdown, write_table
from effnet.search.stats import interval95, verdict

__all__ = [
    "TABLE_COLUMNS",
    "PRINTED_COLUMNS",
    "printed_table",
    "summarize",
    "choose",
    "compare",
    "accuracy_figure",
    "check_report_owner",
    "plot_accuracy_vs_macs",
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
    "params",
    "resolution",
    "epochs",
    "pruned",
    "top1_mean",
    "top1_std",
    "top1_ci95_low",
    "top1_ci95_high",
    "seeds",
    "wall_time_s",
)
"""Columns of the ranked table (``flops_factor`` = α·β²·γ² by the rule; ``macs_factor`` = exact MACs ÷ baseline;
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


_STYLE = {
    "compound": ("o", "tab:blue"),
    "depth": ("^", "tab:orange"),
    "width": ("s", "tab:green"),
    "resolution": ("D", "tab:red"),
    "baseline": ("*", "black"),
}


def summarize(records: Sequence[Mapping[str, Any]], baseline_macs: int) -> list[dict[str, Any]]:
    """One row per (α, β, γ) from per-trial records, ranked by mean top-1 (best first, then fewer MACs)."""
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
    rows.sort(key=lambda r: (r["pruned"] > 0, -r["top1_mean"], r["macs"]))
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return [{**{c: row[c] for c in TABLE_COLUMNS}, "samples": row["samples"]} for row in rows]


def choose(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The best-ranked fully trained scaled row (the baseline reference never wins); None when there is none."""
    return next((r for r in rows if r["kind"] != "baseline" and not r.get("pruned")), None)


def compare(rows: Sequence[Mapping[str, Any]], chance_top1: float | None) -> dict[str, Any]:
    """:func:`effnet.search.stats.verdict` for the best fully trained compound and single-dimension rows."""

    def best(kinds: tuple[str, ...]) -> Mapping[str, Any] | None:
        return next((r for r in rows if r["kind"] in kinds and not r["pruned"]), None)

    compound, single = best(("compound",)), best(("depth", "width", "resolution"))
    out = verdict(compound, single, chance_top1)
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


_LEGEND = {
    "compound": "compound: 2 or 3 of α, β, γ > 1",
    "depth": "depth only: α > 1",
    "width": "width only: β > 1",
    "resolution": "resolution only: γ > 1",
    "baseline": "baseline: α = β = γ = 1",
}
"""What each kind of point is, as the plot's legend says it (:func:`effnet.search.grid.candidates` sets kinds)."""


def plot_accuracy_vs_macs(
    rows: Sequence[Mapping[str, Any]], path: str | Path, *, title: str, chosen: Mapping[str, Any] | None = None
) -> Path:
    """Scatter of mean top-1 (± std) against exact MACs, one marker per kind of scaling; PNG written atomically."""
    fig = accuracy_figure(rows, title=title, chosen=chosen)
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return target


def accuracy_figure(rows: Sequence[Mapping[str, Any]], *, title: str, chosen: Mapping[str, Any] | None = None) -> Any:
    """The matplotlib ``Figure`` of :func:`plot_accuracy_vs_macs` (legend: :data:`_LEGEND`, with each kind's count)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: effnet scale --study ranks without plotting
    from matplotlib.figure import Figure  # lazy: matplotlib, as above

    fig = Figure(figsize=(8.6, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for kind, (marker, color) in _STYLE.items():
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            continue
        label = f"{_LEGEND[kind]} ({len(sel)})"
        full, stopped = [r for r in sel if not r.get("pruned")], [r for r in sel if r.get("pruned")]
        for part, face in ((full, color), (stopped, "none")):  # stopped early by halving: hollow (fewer epochs)
            if part:
                ax.errorbar(
                    [r["macs"] / 1e6 for r in part],
                    [r["top1_mean"] for r in part],
                    yerr=[r["top1_std"] or 0.0 for r in part],
                    fmt=marker,
                    color=color,
                    markerfacecolor=face,
                    label=label,
                    markersize=7 if kind != "baseline" else 11,
                    capsize=3,
                    alpha=0.9,
                )
                label = None  # one legend entry per kind
    if any(r.get("pruned") for r in rows):
        ax.plot([], [], "o", color="gray", markerfacecolor="none", label="hollow: stopped early (fewer epochs)")
    if chosen is not None:
        ax.plot(
            [chosen["macs"] / 1e6],
            [chosen["top1_mean"]],
            "o",
            markersize=16,
            markerfacecolor="none",
            markeredgecolor="gold",
            markeredgewidth=2.5,
            label="chosen",
        )
        ax.annotate(
            f"α={chosen['alpha']:g} β={chosen['beta']:g} γ={chosen['gamma']:g}",
            (chosen["macs"] / 1e6, chosen["top1_mean"]),
            textcoords="offset points",
            xytext=(-12, -4),
            ha="right",
            va="top",
            fontsize=8,
        )
    ax.set_xlabel("MACs (millions, exact, batch 1)")
    ax.set_ylabel("top-1 accuracy (%) mean ± std over seeds")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig


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
    records: Sequence[Mapping[str, Any]], baseline_macs: int, output: str | Path, *, summary: Mapping[str, Any]
) -> dict[str, Any]:
    """Write ``search_results.{md,csv,json}``, ``accuracy_vs_macs.png`` and ``search_summary.json``.

    ``summary`` (the study definition, storage, study name, wall time, ...) is stored with the chosen
    coefficients, the ranked rows and every trial record. Returns the summary dict that was written.
    """
    out = Path(output)
    rows = summarize(records, baseline_macs)
    best = choose(rows)
    grid = summary.get("definition", {}).get("grid", {})
    title = (
        f"scaling search: {summary.get('baseline_name', 'baseline')} on {summary.get('data', '?')}, "
        f"target α·β²·γ²={grid.get('target', '?')}±{grid.get('tol', '?')}"
    )
    paths = write_table(
        [{c: r[c] for c in TABLE_COLUMNS} for r in rows], out / "search_results", TABLE_COLUMNS, title=title
    )
    plot = plot_accuracy_vs_macs(rows, out / "accuracy_vs_macs.png", title=title, chosen=best)
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
            )
        }
    single: dict[str, float] = {}
    for r in rows:  # rows are ranked, so the first row of each kind is its best
        if r["kind"] in ("depth", "width", "resolution") and not r["pruned"]:
            single.setdefault(r["kind"], r["top1_mean"])
    compound = [r["top1_mean"] for r in rows if r["kind"] == "compound" and not r["pruned"]]
    answer = compare(rows, summary.get("chance_top1"))
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
