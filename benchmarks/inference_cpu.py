"""CPU inference benchmark: every effnet runtime and precision vs the engines a user would pick instead.

    python benchmarks/inference_cpu.py --skip-compile       # B0 at 224, 2 threads, batch 1, 8 and 32
    python benchmarks/inference_cpu.py --batch-sizes 1 32 --repeats 3 --skip-compile   # a short smoke run

Peers, on the same model, input and threads: torchvision/timm eager, and torchvision's own model exported to ONNX
and run by ONNX Runtime and by OpenVINO (fp32 and, where the CPU has it natively, bf16). effnet: eager, fused,
compile (unless ``--skip-compile``), onnxruntime, openvino, default, at fp32, bf16 (native only) and int8
(calibrated on random inputs: speed only; accuracy is ``tests/test_precision_accuracy.py`` / ``docs/speed.md``).
Writes ``inference_cpu.json``, ``inference_cpu.md``, ``inference_cpu.png`` and ``benchmark-infer-cpu.csv`` (timm's
benchmark columns) under ``--out-dir`` (default ``runs/benchmarks``; ``--out-dir benchmarks/results`` replaces the
committed results). Contenders are timed round-robin (interleaved) after warm-up so they share the same background
load. ``ratio`` is throughput over torchvision eager; ``vs_best_peer`` is throughput over the best peer engine (ONNX
Runtime / OpenVINO fp32 on torchvision's export) at the same batch; ``peak_fraction`` and ``bf16_peak_fraction`` are
the model's FLOP rate over the fp32 / bf16 matmul peak measured in the same run.
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
    COMMITTED_OUT,
    DEFAULT_OUT,
    bar_plot,
    loadavg,
    machine_info,
    markdown_table,
    matmul_peak_gflops,
    pin_threads,
    time_round_robin,
    timm_row,
    write_outputs,
    write_timm_csv,
)
from effnet.serving.hardware import cpu_has_native_bf16
from effnet.serving.runtimes import optimize_for_inference

BASELINE = "torchvision eager"
PEER_ENGINES = ("peer onnxruntime", "peer openvino fp32")
"""The engines a user would run torchvision's own export with; ``vs_best_peer`` compares to the faster of them."""
TARGETS = {  # issues 6 and 12: (contender, batch, metric, bound)
    "default b32 throughput >= 3x torchvision": ("effnet default", 32, "ratio", 3.0),
    "default b1 latency <= 0.5x torchvision": ("effnet default", 1, "latency_ratio", 0.5),
    "default b32 throughput >= 1.0x best peer engine": ("effnet default", 32, "vs_best_peer", 1.0),
    "default b1 latency <= 1.0x best peer engine": ("effnet default", 1, "peer_latency_ratio", 1.0),
    "onnxruntime b1 latency <= 1.0x plain ORT on effnet's export": ("effnet onnxruntime", 1, "vs_plain_ort", 1.0),
    "bf16 b32 >= 1.8x ORT fp32 on torchvision's export": ("effnet openvino bf16", 32, "vs_peer_ort", 1.8),
    "int8 b32 faster than the fp32 default": ("effnet openvino int8", 32, "vs_default", 1.0),
    "default b32 >= 50% of matmul peak": ("effnet default", 32, "peak_fraction", 0.5),
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


def _peer_engines(model: torch.nn.Module, x: torch.Tensor, prefix: str, bf16: bool) -> dict[str, Callable[[], Any]]:
    """Plain ONNX Runtime / OpenVINO on ``model``'s ONNX export, as a user would run them (no effnet wrapper)."""
    import openvino as ov

    from effnet.serving.onnx_writer import onnx_bytes
    from effnet.serving.openvino import openvino_config, openvino_core
    from effnet.serving.ort import ort_session

    data = onnx_bytes(model.eval(), x[:1])
    array = x.numpy()
    session = ort_session(data)
    fns: dict[str, Callable[[], Any]] = {f"{prefix} onnxruntime": lambda: session.run(None, {"input": array})}
    if prefix == "plain":
        return fns
    ov_model = ov.convert_model(__import__("io").BytesIO(data))
    ov_model.reshape(list(x.shape))
    for precision in ("fp32", "bf16") if bf16 else ("fp32",):
        request = openvino_core().compile_model(ov_model, "CPU", openvino_config(precision)).create_infer_request()
        fns[f"{prefix} openvino {precision}"] = lambda r=request: r.infer({0: array})
    return fns


EFFNET_PATHS = [
    ("fused", "fp32"),
    ("onnxruntime", "fp32"),
    ("openvino", "fp32"),
    ("default", "fp32"),
    ("openvino", "bf16"),
    ("fused", "bf16"),
    ("openvino", "int8"),
    ("onnxruntime", "int8"),
]


def build_contenders(
    model_name: str, batch: int, resolution: int, skip_compile: bool, setup: dict[str, float]
) -> dict[str, Callable[[], Any]]:
    """Zero-argument callables, each running one batch through one contender (setup seconds recorded)."""
    from effnet.models.fold import fold_batchnorm

    torch.manual_seed(0)
    x = torch.randn(batch, 3, resolution, resolution)
    peers = _peer_models(model_name)
    ours = effnet.create_model(model_name).eval()
    bf16 = cpu_has_native_bf16()
    fns: dict[str, Callable[[], Any]] = {
        BASELINE: _eager_call(peers["torchvision"], x),
        "timm eager": _eager_call(peers["timm"], x),
        "effnet eager": _eager_call(ours, x),
    }
    fns |= _peer_engines(peers["torchvision"], x, "peer", bf16)
    fns |= _peer_engines(fold_batchnorm(ours), x, "plain", bf16)  # effnet's own export, no wrapper
    paths = EFFNET_PATHS + ([] if skip_compile else [("compile", "fp32")])
    calibration = torch.randn(8, 3, resolution, resolution)
    for rt, precision in paths:
        if precision == "bf16" and not bf16:
            continue
        name = f"effnet {rt}" + ("" if precision == "fp32" else f" {precision}")
        t0 = time.perf_counter()
        runner = optimize_for_inference(
            ours, example=x, runtime=rt, precision=precision, calibration=calibration if precision == "int8" else None
        )
        setup[name] = time.perf_counter() - t0
        if runner.fallback_reason:
            print(f"warning: {name} fell back to {runner.backend}: {runner.fallback_reason}", file=sys.stderr)
        fns[name] = lambda r=runner: r(x)
    return fns


def wrapper_overhead_us(model_name: str, resolution: int, calls: int = 20000) -> float:
    """Microseconds effnet's ONNX Runtime runner adds per batch-1 call around ``session.run``: the runner is built
    on a stub session whose ``run`` returns a ready output at once, so only effnet's own Python work is timed."""
    import numpy as np

    import effnet.serving.cpu_engines as engines

    class Stub:
        def __init__(self, real: Any) -> None:
            self.real, self.out = real, [np.zeros((1, 1000), np.float32)]

        def get_inputs(self) -> Any:
            return self.real.get_inputs()

        def get_outputs(self) -> Any:
            return self.real.get_outputs()

        def run(self, names: Any, feeds: Any) -> Any:
            return self.out

    real = engines.ort_session
    engines.ort_session = lambda data, threads=None: Stub(real(data, threads))
    try:
        x = torch.randn(1, 3, resolution, resolution)
        runner = optimize_for_inference(effnet.create_model(model_name).eval(), example=x, runtime="onnxruntime")
    finally:
        engines.ort_session = real
    t0 = time.perf_counter()
    for _ in range(calls):
        runner(x)
    return 1e6 * (time.perf_counter() - t0) / calls


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write JSON, Markdown and PNG results."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="efficientnet_b0", help="a name known to effnet, torchvision and timm")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every contender")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--repeats", type=int, default=0, help="timed samples per contender (0: 15 at batch 1, 5 else)")
    p.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile 'compile' runtime")
    p.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT,
        help=f"default {DEFAULT_OUT}; the committed results: {COMMITTED_OUT}",
    )
    args = p.parse_args(argv)
    pin_threads(args.threads)
    meta = machine_info() | {"model": args.model, "resolution": args.resolution, "threads": args.threads}
    macs = effnet.cost(args.model, args.resolution).macs
    peak = matmul_peak_gflops()
    meta["matmul_peak"] = peak
    meta["bf16_matmul_peak"] = matmul_peak_gflops(dtype=torch.bfloat16) if cpu_has_native_bf16() else None
    rows: list[dict[str, Any]] = []
    for batch in args.batch_sizes:
        setup: dict[str, float] = {}
        fns = build_contenders(args.model, batch, args.resolution, args.skip_compile, setup)
        repeats = args.repeats or (15 if batch == 1 else 5)
        calls = 10 if batch == 1 else 1
        bar = tqdm(total=repeats, desc=f"batch {batch}", leave=False)
        timings = time_round_robin(
            fns,
            repeats,
            calls,
            warmup=3 if batch == 1 else 2,
            progress=lambda m, bar=bar: bar.update(1) if m.startswith("repeat") else None,
        )
        bar.close()
        rows += _rows(timings, batch, macs, meta, setup)
        print(f"batch {batch}: done (load {loadavg()})", file=sys.stderr)
    meta["loadavg_end"] = loadavg()
    meta["ort_wrapper_overhead_us"] = round(wrapper_overhead_us(args.model, args.resolution), 1)
    checks = _check_targets(rows)
    table = _report(meta, rows, checks, macs)
    payload = {"meta": meta, "macs_per_image": macs, "rows": rows, "targets": checks}
    json_path, md_path = write_outputs(args.out_dir, "inference_cpu", payload, table)
    timm_csv = write_timm_csv(
        args.out_dir / "benchmark-infer-cpu.csv",
        "infer",
        [
            timm_row("infer", args.model, args.resolution, r["batch"], r["median_ms"] / 1e3, r["contender"])
            for r in rows
        ],
    )
    groups = {
        f"batch {b}": {r["contender"]: r["images_per_s"] for r in rows if r["batch"] == b} for b in args.batch_sizes
    }
    bar_plot(
        args.out_dir / "inference_cpu.png", groups, "images/s", f"{args.model} {args.resolution}px CPU x{args.threads}"
    )
    print(table)
    print(f"wrote {json_path}, {md_path}, {args.out_dir / 'inference_cpu.png'}, {timm_csv} (timm's columns)")
    return 0


def _rows(
    timings: dict[str, Any], batch: int, macs: int, meta: dict[str, Any], setup: dict[str, float]
) -> list[dict[str, Any]]:
    """One row per contender at ``batch``: times, throughput and every ratio the report and targets use."""
    med = {name: t.median_s for name, t in timings.items()}
    best_peer = min(med[n] for n in PEER_ENGINES)
    bf16_peak = (meta["bf16_matmul_peak"] or {}).get("best_gflops")
    load = loadavg()
    rows = []
    for name, t in timings.items():
        ips = batch / t.median_s
        rows.append(
            {
                "contender": name,
                "batch": batch,
                "median_ms": 1e3 * t.median_s,
                "min_ms": 1e3 * t.min_s,
                "spread_pct": t.spread_pct,
                "images_per_s": ips,
                "ratio": med[BASELINE] / t.median_s,
                "latency_ratio": t.median_s / med[BASELINE],
                "vs_best_peer": best_peer / t.median_s,
                "peer_latency_ratio": t.median_s / best_peer,
                "vs_peer_ort": med["peer onnxruntime"] / t.median_s,
                "vs_plain_ort": t.median_s / med["plain onnxruntime"],
                "vs_default": med["effnet default"] / t.median_s,
                "peak_fraction": ips * 2 * macs / (meta["matmul_peak"]["best_gflops"] * 1e9),
                "bf16_peak_fraction": ips * 2 * macs / (bf16_peak * 1e9) if bf16_peak else None,
                "setup_s": setup.get(name),
                "repeats": t.repeats,
                "loadavg": load,
                "samples_s": list(t.samples),
            }
        )
    return rows


def _check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for label, (who, batch, metric, bound) in TARGETS.items():
        row = next((r for r in rows if r["contender"] == who and r["batch"] == batch), None)
        if row is None:
            continue
        value = row[metric]
        met = value <= bound if metric in ("latency_ratio", "peer_latency_ratio", "vs_plain_ort") else value >= bound
        out.append({"target": label, "measured": round(value, 3), "met": met})
    return out


def _report(meta: dict[str, Any], rows: list[dict[str, Any]], checks: list[dict[str, Any]], macs: int) -> str:
    head = (
        f"{meta['model']} at {meta['resolution']}px, {meta['threads']} threads, {meta['host_cpu']}, "
        f"torch {meta['torch']}, {meta['date_utc']} UTC, load avg {meta['loadavg_start']} -> {meta['loadavg_end']}, "
        f"matmul peak {meta['matmul_peak']['best_gflops']:.0f} GFLOP/s fp32, "
        f"{(meta['bf16_matmul_peak'] or {}).get('best_gflops', 0):.0f} GFLOP/s bf16 (0: no native bf16), "
        f"{2 * macs / 1e9:.3f} GFLOP/image, effnet's ORT wrapper adds {meta['ort_wrapper_overhead_us']} us per "
        "call (stub session)\n\n"
    )
    cols = [
        "contender",
        "batch",
        "median_ms",
        "spread_pct",
        "images_per_s",
        "ratio",
        "vs_best_peer",
        "peak_fraction",
        "bf16_peak_fraction",
        "setup_s",
    ]
    targets = markdown_table(checks, ["target", "measured", "met"]) if checks else ""
    return head + markdown_table(rows, cols) + "\n\n" + targets


if __name__ == "__main__":
    raise SystemExit(main())
