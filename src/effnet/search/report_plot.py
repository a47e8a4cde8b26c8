"""The search's figure: mean top-1 against each cost factor over the baseline (the formula's, the exact MACs',
the predicted latency's), one marker per kind of scaling, stopped points hollow, the chosen one ringed, the
equal-cost band shaded. matplotlib is imported inside functions only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from effnet.io import atomic_path

__all__ = ["plot_accuracy_vs_macs", "accuracy_figure"]

Band = tuple[str, float, float]
"""``(row key, low, high)``: the rows whose ``row[key]`` lies in ``[low, high]`` are at equal cost."""
_FACTORS = (
    ("flops_factor", "formula α·β²·γ² (× baseline)"),
    ("macs_factor", "exact MACs (× baseline)"),
    ("latency_factor", "predicted latency (× baseline)"),
)
_STYLE = {
    "compound": ("o", "tab:blue"),
    "depth": ("^", "tab:orange"),
    "width": ("s", "tab:green"),
    "resolution": ("D", "tab:red"),
    "baseline": ("*", "black"),
}


_LEGEND = {
    "compound": "compound: 2 or 3 of α, β, γ > 1",
    "depth": "depth only: α > 1",
    "width": "width only: β > 1",
    "resolution": "resolution only: γ > 1",
    "baseline": "baseline: α = β = γ = 1",
}
"""What each kind of point is, as the plot's legend says it (:func:`effnet.search.grid.candidates` sets kinds)."""


def plot_accuracy_vs_macs(
    rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str,
    chosen: Mapping[str, Any] | None = None,
    band: Band | None = None,
) -> Path:
    """Mean top-1 (± std) against each cost factor over the baseline, side by side (:func:`accuracy_figure`); PNG
    written atomically."""
    fig = accuracy_figure(rows, title=title, chosen=chosen, band=band)
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return target


def accuracy_figure(
    rows: Sequence[Mapping[str, Any]],
    *,
    title: str,
    chosen: Mapping[str, Any] | None = None,
    band: Band | None = None,
) -> Any:
    """The matplotlib ``Figure``: one panel per cost factor, the formula's, the exact MACs' and (where the rows have
    it) the predicted latency's; one marker per kind of scaling (legend: :data:`_LEGEND`, with each kind's count),
    the equal-cost ``band`` shaded on its panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: effnet scale --study ranks without plotting
    from matplotlib.figure import Figure  # lazy: matplotlib, as above

    panels = [(k, text) for k, text in _FACTORS if any(r.get(k) is not None for r in rows)]
    fig = Figure(figsize=(3.9 * len(panels) + 2.4, 4.6))
    FigureCanvasAgg(fig)
    first = None
    for col, (key, xlabel) in enumerate(panels, 1):
        ax = fig.add_subplot(1, len(panels), col, sharey=first)
        first = first or ax
        if band is not None and band[0] == key:
            ax.axvspan(band[1], band[2], color="gold", alpha=0.2, label="equal cost (compared)")
        _scatter(ax, [r for r in rows if r.get(key) is not None], key, chosen)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
    first.set_ylabel("top-1 accuracy (%) mean ± std over seeds")
    handles = {label: h for a in fig.axes for h, label in zip(*a.get_legend_handles_labels(), strict=True)}
    fig.axes[-1].legend(
        handles.values(), handles.keys(), fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0
    )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _scatter(ax: Any, rows: Sequence[Mapping[str, Any]], key: str, chosen: Mapping[str, Any] | None) -> None:
    """One panel of :func:`plot_accuracy_vs_macs`: the rows at ``row[key]``, stopped ones hollow, the chosen ringed;
    the baseline (at 1x) as a dashed line, so that the axis spans the scaled points."""
    for kind, (marker, color) in _STYLE.items():
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            continue
        if kind == "baseline":
            ax.axhline(sel[0]["top1_mean"], color=color, linestyle="--", linewidth=1, label=f"{_LEGEND[kind]} (1x)")
            continue
        label = f"{_LEGEND[kind]} ({len(sel)})"
        full, stopped = [r for r in sel if not r.get("pruned")], [r for r in sel if r.get("pruned")]
        for part, face in ((full, color), (stopped, "none")):  # stopped early by halving: hollow (fewer epochs)
            if part:
                ax.errorbar(
                    [r[key] for r in part],
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
    if chosen is not None and chosen.get(key) is not None:
        ax.plot(
            [chosen[key]],
            [chosen["top1_mean"]],
            "o",
            markersize=16,
            markerfacecolor="none",
            markeredgecolor="gold",
            markeredgewidth=2.5,
            label=f"chosen: α={chosen['alpha']:g} β={chosen['beta']:g} γ={chosen['gamma']:g}",
        )
