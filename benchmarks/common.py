"""Shared benchmark helpers: thread pinning, robust timing, matmul peak, machine facts, JSON/Markdown/PNG output, and
CSVs in timm's benchmark schema (``results/benchmark-*.csv`` of timm's repository) beside effnet's own tables."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from effnet.cost import cost
from effnet.io import atomic_path, atomic_write_json, atomic_write_text

__all__ = [
    "DEFAULT_OUT",
    "COMMITTED_OUT",
    "Timing",
    "summarize",
    "time_round_robin",
    "matmul_peak_gflops",
    "machine_info",
    "loadavg",
    "pin_threads",
    "markdown_table",
    "bar_plot",
    "write_outputs",
    "TIMM_COLUMNS",
    "timm_row",
    "write_timm_csv",
]

TIMM_COLUMNS = {
    "infer": (
        *("model", "infer_img_size", "infer_samples_per_sec", "infer_step_time", "infer_batch_size"),
        *("param_count", "infer_gmacs", "infer_macts"),
    ),
    "train": ("model", "train_samples_per_sec", "train_step_time", "train_batch_size", "train_img_size", "param_count"),
}
"""timm's benchmark CSV columns (its ``benchmark.py``): samples/s, step time in ms per batch, parameters in
millions, GMACs and million activations per sample. effnet's CSVs add one last column, ``engine`` (what ran it)."""


COMMITTED_OUT = Path(__file__).resolve().parent / "results"
"""The committed results that ``benchmarks/RESULTS.md`` cites: written only when ``--out-dir`` names this folder."""
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "runs" / "benchmarks"
"""Where a benchmark writes by default (ignored by git), so a run never replaces the committed results unasked."""


@dataclass(frozen=True)
class Timing:
    """Seconds per call over repeats: median, min, max and the inter-quartile range (spread)."""

    median_s: float
    min_s: float
    max_s: float
    iqr_s: float
    repeats: int
    samples: tuple[float, ...] = field(repr=False)

    @property
    def spread_pct(self) -> float:
        """IQR as a percentage of the median."""
        return 100.0 * self.iqr_s / self.median_s if self.median_s > 0 else 0.0


def summarize(samples: Sequence[float]) -> Timing:
    """A :class:`Timing` from per-call seconds."""
    s = sorted(samples)
    if len(s) >= 4:
        q = statistics.quantiles(s, n=4)
        iqr = q[2] - q[0]
    else:
        iqr = s[-1] - s[0]
    return Timing(statistics.median(s), s[0], s[-1], iqr, len(s), tuple(samples))


def time_round_robin(
    fns: dict[str, Callable[[], Any]],
    repeats: int,
    calls_per_repeat: int = 1,
    warmup: int = 2,
    progress: Callable[[str], None] | None = None,
    settle_s: float = 0.1,
) -> dict[str, Timing]:
    """Time every function ``repeats`` times, interleaved (a, b, c, a, b, c, ...) after ``warmup`` calls each.

    Interleaving makes contenders share the same background load on a busy machine, so their
    ratios stay meaningful even when absolute numbers drift. One sample = mean of ``calls_per_repeat`` calls.
    Each sample starts after ``settle_s`` of idle time: thread pools spin-wait for work after a call
    (ONNX Runtime's for milliseconds, OpenMP's less), and on few cores a contender timed right after another
    would otherwise share the cores with the previous one's spinning threads (measured here: torchvision
    batch 1 took 2x longer right after an ONNX Runtime call).
    """
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        if progress:
            progress(f"warmed up {name}")
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeats):
        for name, fn in fns.items():
            time.sleep(settle_s)
            t0 = time.perf_counter()
            for _ in range(calls_per_repeat):
                fn()
            samples[name].append((time.perf_counter() - t0) / calls_per_repeat)
        if progress:
            progress(f"repeat {r + 1}/{repeats}")
    return {name: summarize(s) for name, s in samples.items()}


def matmul_peak_gflops(
    n: int = 2048, repeats: int = 7, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> dict[str, float]:
    """Practical peak: GFLOP/s of an ``n×n @ n×n`` matmul (2n³ FLOP), best and median of ``repeats``."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(2):
        torch.matmul(a, b)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        sync()
        times.append(time.perf_counter() - t0)
    flop = 2.0 * n**3
    return {"n": n, "best_gflops": flop / min(times) / 1e9, "median_gflops": flop / statistics.median(times) / 1e9}


def loadavg() -> list[float]:
    """The 1/5/15-minute load averages (empty where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """Facts needed to compare runs: date, CPU, core count, threads, library versions, load."""
    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "host_cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "loadavg_start": loadavg(),
    }
    for mod in ("torchvision", "timm", "onnxruntime"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def pin_threads(threads: int) -> None:
    """Use ``threads`` intra-op threads for every contender in this process (and ONNX Runtime sessions)."""
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return "" if v is None else str(v)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub Markdown table of ``rows`` restricted to ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def bar_plot(path: Path, groups: dict[str, dict[str, float]], ylabel: str, title: str) -> None:
    """Grouped horizontal bars (one panel per group, e.g. batch size) saved atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 0.45 * max(map(len, groups.values())) + 1.5))
    axes = [axes] if len(groups) == 1 else list(axes)
    for ax, (group, values) in zip(axes, groups.items(), strict=True):
        names = list(values)
        ax.barh(names, [values[n] for n in names], color="tab:blue")
        ax.invert_yaxis()
        ax.set_xlabel(ylabel)
        ax.set_title(group)
        for i, n in enumerate(names):
            ax.text(values[n], i, f" {values[n]:.3g}", va="center", fontsize=8)
    fig.suptitle(title)  # once, above the panels: a long title over a narrow panel was clipped
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_outputs(out_dir: Path, stem: str, payload: dict[str, Any], table: str) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` atomically under ``out_dir``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    atomic_write_json(json_path, _jsonable(payload))
    atomic_write_text(md_path, table + "\n")
    return json_path, md_path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Timing):
        return {k: v for k, v in asdict(obj).items() if k != "samples"} | {"samples": list(obj.samples)}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def timm_row(kind: str, model: str, img_size: int, batch: int, step_s: float, engine: str) -> dict[str, Any]:
    """One row of a timm-schema CSV (``kind``: ``infer`` or ``train``); params, MACs and activations are effnet's
    exact counts (:func:`effnet.cost.cost`) at ``img_size``."""
    c = cost(model, img_size)
    row: dict[str, Any] = {
        "model": model,
        f"{kind}_img_size": img_size,
        f"{kind}_samples_per_sec": round(batch / step_s, 2),
        f"{kind}_step_time": round(1e3 * step_s, 3),
        f"{kind}_batch_size": batch,
        "param_count": round(c.params / 1e6, 2),
    }
    if kind == "infer":
        row |= {"infer_gmacs": round(c.macs / 1e9, 2), "infer_macts": round(c.activations / 1e6, 2)}
    return row | {"engine": engine}


def write_timm_csv(path: Path, kind: str, rows: Sequence[dict[str, Any]]) -> Path:
    """Write ``rows`` (:func:`timm_row`) as a CSV with timm's column names, then ``engine``, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*TIMM_COLUMNS[kind], "engine"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buffer.getvalue())
    return path
