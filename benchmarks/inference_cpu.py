"""CPU inference benchmark: effnet runtimes vs torchvision and timm, same model, input and threads, one process.

    python benchmarks/inference_cpu.py                      # B0 at 224, 2 threads, batch 1 and 32
    python benchmarks/inference_cpu.py --skip-compile       # no torch.compile (saves ~1-2 min of compilation)

Writes ``inference_cpu.json``, ``inference_cpu.md`` and ``inference_cpu.png`` under ``--out-dir``
(default ``benchmarks/results``). Contenders are timed round-robin (interleaved) after warm-up so they
share the same background load; ratios are to torchvision eager (NCHW) in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

import effnet
from common import (
    bar_plot,
    loadavg,
    machine_info,
    markdown_table,
    matmul_peak_gflops,
    pin_threads,
    time_round_robin,
    write_outputs,
)
from effnet.serving.runtimes import optimize_for_inference

BASELINE = "torchvision eager"
TARGETS = {  # issue 6: (contender, batch, metric, bound); on CPU the default runtime is onnxruntime
    "default b32 throughput >= 3x torchvision": ("effnet default", 32, "ratio", 3.0),
    "default b1 latency <= 0.5x torchvision": ("effnet default", 1, "latency_ratio", 0.5),
    "compile b32 throughput >= 3x torchvision": ("effnet compile", 32, "ratio", 3.0),
    "onnxruntime b32 throughput >= 4x torchvision": ("effnet onnxruntime", 32, "ratio", 4.0),
    "onnxruntime b1 latency <= 0.45x torchvision": ("effnet onnxruntime", 1, "latency_ratio", 0.45),
    "default b32 >= 50% of matmul peak": ("effnet default", 32, "peak_fraction", 0.5),
    "compile b32 >= 50% of matmul peak": ("effnet compile", 32, "peak_fraction", 0.5),
    "onnxruntime b32 >= 50% of matmul peak": ("effnet onnxruntime", 32, "peak_fraction", 0.5),
}


def _peer_models(model_name: str) -> dict[str, torch.nn.Module]:
    import timm
    import torchvision

    tv = getattr(torchvision.models, model_name)(weights=None).eval()
    tm = timm.create_model(model_name, pretrained=False).eval()
    return {"torchvision": tv, "timm": tm}


def _eager_call(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    def call() -> Any:
        with torch.inference_mode():
            return model(x)

    return call


def build_contenders(model_name: str, batch: int, resolution: int, skip_compile: bool,
                     setup: dict[str, float]) -> dict[str, Callable[[], Any]]:  # fmt: skip
    """Zero-argument callables, each running one batch through one contender (setup seconds recorded)."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, resolution, resolution)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    peers = _peer_models(model_name)
    tv_cl = _peer_models(model_name)["torchvision"].to(memory_format=torch.channels_last)
    ours = effnet.create_model(model_name).eval()
    fns: dict[str, Callable[[], Any]] = {
        BASELINE: _eager_call(peers["torchvision"], x),
        "torchvision eager channels_last": _eager_call(tv_cl, x_cl),
        "timm eager": _eager_call(peers["timm"], x),
        "effnet eager": _eager_call(ours, x),
    }
    runtimes = ["fused", "onnxruntime", "default"] + ([] if skip_compile else ["compile"])
    for rt in runtimes:
        t0 = time.perf_counter()
        runner = optimize_for_inference(ours, example=x, runtime=rt)
        setup[f"effnet {rt}"] = time.perf_counter() - t0
        if runner.backend != {"default": "onnxruntime"}.get(rt, rt):
            print(f"warning: effnet {rt} fell back to {runner.backend}: {runner.fallback_reason}", file=sys.stderr)
        fns[f"effnet {rt}"] = (lambda r=runner: r(x))
    return fns


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write JSON, Markdown and PNG results."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="efficientnet_b0", help="a name known to effnet, torchvision and timm")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every contender")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    p.add_argument("--repeats", type=int, default=0, help="timed samples per contender (0: 15 at batch 1, 5 else)")
    p.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile 'compile' runtime")
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args(argv)
    pin_threads(args.threads)
    meta = machine_info() | {"model": args.model, "resolution": args.resolution, "threads": args.threads}
    macs = effnet.cost(args.model, args.resolution).macs
    peak = matmul_peak_gflops()
    meta["matmul_peak"] = peak
    rows: list[dict[str, Any]] = []
    for batch in args.batch_sizes:
        setup: dict[str, float] = {}
        fns = build_contenders(args.model, batch, args.resolution, args.skip_compile, setup)
        repeats = args.repeats or (15 if batch == 1 else 5)
        calls = 10 if batch == 1 else 1
        bar = tqdm(total=repeats, desc=f"batch {batch}", leave=False)
        timings = time_round_robin(fns, repeats, calls, warmup=3 if batch == 1 else 2,
                                   progress=lambda m, bar=bar: bar.update(1) if m.startswith("repeat") else None)
        bar.close()
        base = timings[BASELINE].median_s
        load = loadavg()
        for name, t in timings.items():
            ips = batch / t.median_s
            rows.append({
                "contender": name, "batch": batch, "median_ms": 1e3 * t.median_s, "min_ms": 1e3 * t.min_s,
                "spread_pct": t.spread_pct, "images_per_s": ips, "ratio": base / t.median_s,
                "latency_ratio": t.median_s / base, "peak_fraction": ips * 2 * macs / (peak["best_gflops"] * 1e9),
                "setup_s": setup.get(name), "repeats": t.repeats, "loadavg": load, "samples_s": list(t.samples),
            })  # fmt: skip
        print(f"batch {batch}: done (load {load})", file=sys.stderr)
    meta["loadavg_end"] = loadavg()
    checks = _check_targets(rows)
    table = _report(meta, rows, checks, macs)
    payload = {"meta": meta, "macs_per_image": macs, "rows": rows, "targets": checks}
    json_path, md_path = write_outputs(args.out_dir, "inference_cpu", payload, table)
    groups = {f"batch {b}": {r["contender"]: r["images_per_s"] for r in rows if r["batch"] == b}
              for b in args.batch_sizes}  # fmt: skip
    bar_plot(args.out_dir / "inference_cpu.png", groups, "images/s",
             f"{args.model} {args.resolution}px CPU x{args.threads}")  # fmt: skip
    print(table)
    print(f"wrote {json_path}, {md_path}, {args.out_dir / 'inference_cpu.png'}")
    return 0


def _check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for label, (who, batch, metric, bound) in TARGETS.items():
        row = next((r for r in rows if r["contender"] == who and r["batch"] == batch), None)
        if row is None:
            continue
        value = row[metric]
        met = value <= bound if metric == "latency_ratio" else value >= bound
        out.append({"target": label, "measured": round(value, 3), "met": met})
    return out


def _report(meta: dict[str, Any], rows: list[dict[str, Any]], checks: list[dict[str, Any]], macs: int) -> str:
    head = (
        f"{meta['model']} at {meta['resolution']}px, {meta['threads']} threads, {meta['host_cpu']}, "
        f"torch {meta['torch']}, {meta['date_utc']} UTC, load avg {meta['loadavg_start']} -> {meta['loadavg_end']}, "
        f"matmul peak {meta['matmul_peak']['best_gflops']:.0f} GFLOP/s, {2 * macs / 1e9:.3f} GFLOP/image\n\n"
    )
    cols = ["contender", "batch", "median_ms", "spread_pct", "images_per_s", "ratio", "peak_fraction", "setup_s"]
    targets = markdown_table(checks, ["target", "measured", "met"]) if checks else ""
    return head + markdown_table(rows, cols) + "\n\n" + targets


if __name__ == "__main__":
    raise SystemExit(main())
