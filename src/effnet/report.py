"""Tables and plots shared by the commands that produce results (train, search, benchmark, ...).

Rows are plain dicts. Tables render as Markdown, CSV or JSON; :func:`write_table` writes all three atomically.
Plots use matplotlib's object API with the Agg canvas (no pyplot state, no display needed) and are written
atomically as PNG.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effnet.errors import InvalidValue
from effnet.io import atomic_path, atomic_write_text, json_text

__all__ = [
    "TABLE_FORMATS",
    "format_count",
    "render_table",
    "format_value",
    "table_columns",
    "render_markdown",
    "render_csv",
    "render_json",
    "write_table",
    "Series",
    "Panel",
    "plot_panels",
]

Row = Mapping[str, Any]

TABLE_FORMATS = ("markdown", "csv", "json")
"""Formats accepted by :func:`render_table` (and the ``--format`` flags of the commands)."""


def format_count(value: float) -> str:
    """A large count in short form with 3 significant digits: 5288548 -> ``5.29M``, 390315424 -> ``390M``."""
    value = float(value)
    for threshold, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= threshold:
            scaled = value / threshold
            text = f"{scaled:.3g}" if abs(scaled) < 1000 else f"{scaled:.0f}"
            return f"{text}{suffix}"
    return f"{value:.3g}" if value != int(value) else str(int(value))


def format_value(value: Any, precision: int = 4) -> str:
    """A cell as text: floats to ``precision`` significant digits (ints stay exact), None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.{precision - 1}e}"
        return f"{value:.{precision}g}" if abs(value) < 10**precision else f"{value:.0f}"
    return str(value)


def table_columns(rows: Sequence[Row], columns: Sequence[str] | None = None) -> list[str]:
    """``columns`` if given, else every key in first-seen order across ``rows``."""
    if columns is not None:
        return list(columns)
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def render_markdown(
    rows: Sequence[Row],
    columns: Sequence[str] | None = None,
    *,
    precision: int = 4,
    headers: Mapping[str, str] | None = None,
    right: Sequence[str] = (),
) -> str:
    """A GitHub Markdown table; numbers (and the columns in ``right``) right-aligned. ``headers`` renames columns
    for display."""
    cols = table_columns(rows, columns)
    headers = headers or {}
    cells = [[format_value(row.get(c), precision) for c in cols] for row in rows]
    numeric = [
        c in right or all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows) for c in cols
    ]
    names = [headers.get(c, c) for c in cols]
    widths = [max([3, len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]  # a rule needs 3 chars

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "| " + " | ".join(parts) + " |"

    rule = "| " + " | ".join(("-" * (w - 1) + ":") if num else "-" * w for w, num in zip(widths, numeric, strict=True))
    return "\n".join([line(names), rule + " |"] + [line(r) for r in cells]) + "\n"


def render_csv(rows: Sequence[Row], columns: Sequence[str] | None = None) -> str:
    """CSV text with a header row; values written unformatted (full precision)."""
    cols = table_columns(rows, columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c) for c in cols})
    return buffer.getvalue()


def render_json(rows: Sequence[Row], columns: Sequence[str] | None = None) -> str:
    """A JSON list of row objects restricted to ``columns`` (all keys if None)."""
    cols = table_columns(rows, columns)
    return json_text([{c: row.get(c) for c in cols} for row in rows], indent=2) + "\n"


def render_table(
    rows: Sequence[Row], fmt: str = "markdown", columns: Sequence[str] | None = None, *, precision: int = 4
) -> str:
    """Render ``rows`` in one of :data:`TABLE_FORMATS`."""
    if fmt == "markdown":
        return render_markdown(rows, columns, precision=precision)
    if fmt == "csv":
        return render_csv(rows, columns)
    if fmt == "json":
        return render_json(rows, columns)
    raise InvalidValue(f"table format must be one of {', '.join(TABLE_FORMATS)}; got {fmt!r}")


def write_table(
    rows: Sequence[Row],
    stem: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
    *,
    title: str | None = None,
    precision: int = 4,
) -> dict[str, Path]:
    """Write ``stem.md``, ``stem.csv`` and ``stem.json`` atomically; return the paths by format."""
    stem = Path(stem)
    md = render_markdown(rows, columns, precision=precision)
    paths = {"md": stem.with_suffix(".md"), "csv": stem.with_suffix(".csv"), "json": stem.with_suffix(".json")}
    atomic_write_text(paths["md"], (f"## {title}\n\n" if title else "") + md)
    atomic_write_text(paths["csv"], render_csv(rows, columns))
    atomic_write_text(paths["json"], render_json(rows, columns))
    return paths


@dataclass(frozen=True)
class Series:
    """One line of a plot: x and y values with a legend label (None values are skipped)."""

    label: str
    x: Sequence[float]
    y: Sequence[float | None]
    style: str = "-"


@dataclass(frozen=True)
class Panel:
    """One subplot: a title, axis labels and its series."""

    title: str
    series: Sequence[Series]
    xlabel: str = ""
    ylabel: str = ""
    logx: bool = False
    logy: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def plot_panels(
    panels: Sequence[Panel],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    ncols: int | None = None,
    dpi: int = 120,
    width: float = 5.0,
) -> Path:
    """Draw ``panels`` side by side (or in a grid of ``ncols``, ``width`` inches each) and save a PNG atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib is an optional extra
    from matplotlib.figure import Figure  # lazy: matplotlib is an optional extra

    if not panels:
        raise InvalidValue("plot_panels needs at least one panel")
    ncols = ncols or len(panels)
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(width * ncols, 3.8 * nrows + (0.4 if title and "\n" in title else 0.0)))
    FigureCanvasAgg(fig)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for s in panel.series:
            pts = [(x, y) for x, y in zip(s.x, s.y, strict=True) if y is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, s.style, label=s.label, marker="o" if len(xs) < 30 else None, markersize=3)
        ax.set_title(panel.title)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        if panel.logx:
            ax.set_xscale("log")
        if panel.logy:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        if any(s.label for s in panel.series):
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return target
