"""GPU benchmark for one short run on an H100/H200: effnet vs timm, eager and compiled, training and inference.

    PYTHONPATH=src python benchmarks/gpu.py --out "$OUT"          # what benchmarks/gpu.sh runs
    PYTHONPATH=src python benchmarks/gpu.py --smoke --out /tmp/g   # CPU dry run of the whole script, tiny sizes
    PYTHONPATH=src python benchmarks/gpu.py --table-only --out "$OUT"  # gpu.md from a (killed) run's gpu.json

Measures, in priority order and within ``--budget-s`` (items that would start later are skipped and
listed): the card's bf16 matmul TFLOP/s and device-to-device copy bandwidth; for B0 (224 px) then V2-S
(timm's ``tf_efficientnetv2_s``; 384 px inference, 300 px training): bf16 channels_last inference at batch 256
(timm eager, timm compiled, effnet eager, effnet ``compile`` runtime = BN folded + torch.compile with freezing),
then AMP bf16 channels_last training steps (SGD; batch 256 for B0, 64 for V2-S), eager and compiled for both, with
``max_memory_allocated``; last, B0 small-batch latency with CUDA-graph replay. For B0 it reports the fraction of
the HBM-bandwidth bound (each conv/linear output written once and read once in bf16). The ratios table compares
effnet with timm at equal precision (issue 24's target: >= 1.2x timm compiled). Results are written to
``<out>/gpu.json`` after every measurement, so a killed run keeps what it had.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import effnet
from common import loadavg, machine_info, markdown_table, matmul_peak_gflops, timm_row, write_timm_csv
from effnet.io import atomic_write_json, atomic_write_text
from effnet.models.fold import fold_batchnorm
from effnet.serving.runtimes import optimize_for_inference

MODELS = {"efficientnet_b0": 224, "efficientnet_v2_s": 384}
"""effnet's name -> inference resolution."""
TRAIN_SIZE = {"efficientnet_b0": 224, "efficientnet_v2_s": 300}
PEER_NAMES = {"timm": {"efficientnet_v2_s": "tf_efficientnetv2_s"}}
"""A peer library's name for effnet's network where it differs (timm's TF port of V2-S has effnet's padding)."""
LIBS = ("timm", "effnet")


class Bench:
    """Collects results, enforces the time budget and rewrites the JSON after every measurement."""

    def __init__(self, out: Path, budget_s: float, device: str, smoke: bool, skip_compile: bool = False) -> None:
        self.out, self.budget_s, self.device, self.smoke = out, budget_s, device, smoke
        self.skip_compile = skip_compile
        self.t0 = time.perf_counter()
        self.data: dict[str, Any] = {"meta": machine_info(), "peaks": {}, "rows": [], "skipped": [], "errors": []}
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.t0)

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def timeit(self, fn: Callable[[], Any], iters: int, groups: int = 5, warmup: int = 3) -> tuple[float, float]:
        """(median, spread %) seconds per call over ``groups`` timed groups of ``iters`` calls, after warm-up."""
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        for _ in range(groups):
            t = time.perf_counter()
            for _ in range(iters):
                fn()
            self.sync()
            times.append((time.perf_counter() - t) / iters)
        med = statistics.median(times)
        return med, 100 * (max(times) - min(times)) / med

    def run(self, label: str, fn: Callable[[], dict[str, Any] | None], min_left_s: float = 20) -> None:
        """Run one measurement unless the budget is spent; record its row, or its error, and save."""
        compiles = "compiled" in label or "default" in label
        if self.left() < min_left_s or (self.skip_compile and compiles):
            self.data["skipped"].append(label)
            print(f"skip {label} ({'--skip-compile' if compiles and self.skip_compile else 'budget'})", flush=True)
            return
        t = time.perf_counter()
        try:
            if self.device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            row = fn()
            if row is not None:
                row = {"item": label, **row, "wall_s": round(time.perf_counter() - t, 1)}
                if self.device == "cuda":
                    row.setdefault("max_memory_allocated_mb", torch.cuda.max_memory_allocated() / 2**20)
                self.data["rows"].append(row)
                print(label, {k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        except Exception as exc:
            self.data["errors"].append({"item": label, "error": repr(exc)[:400]})
            print(f"error in {label}: {exc!r}", file=sys.stderr, flush=True)
            traceback.print_exc(limit=3)
        self.save()

    def save(self) -> None:
        self.data["meta"]["loadavg_end"] = loadavg()
        self.data["meta"]["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        atomic_write_json(self.out / "gpu.json", self.data)


def _model(name: str, lib: str, device: str) -> nn.Module:
    import timm
    import torchvision

    torch.manual_seed(0)
    peer = PEER_NAMES.get(lib, {}).get(name, name)
    if lib == "torchvision":
        return getattr(torchvision.models, peer)(weights=None).to(device)
    if lib == "timm":
        return timm.create_model(peer, pretrained=False).to(device)
    return effnet.create_model(name).to(device)


def _models(name: str, device: str) -> dict[str, nn.Module]:
    return {lib: _model(name, lib, device) for lib in LIBS}


def bandwidth_gbs(device: str, gib: float) -> float:
    """Device-to-device copy bandwidth (bytes read + written per second), best of 10."""
    n = int(gib * 2**30 / 4)
    a, b = torch.empty(n, device=device), torch.empty(n, device=device)
    best = float("inf")
    for _ in range(12):
        t = time.perf_counter()
        b.copy_(a)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n * 4 / best / 1e9


def inference(bench: Bench, name: str, res: int, batch: int) -> None:
    """bf16 channels_last inference throughput for every contender at ``batch``."""
    dev, cl, bf16 = bench.device, torch.channels_last, torch.bfloat16
    x = torch.randn(batch, 3, res, res, device=dev).to(bf16).contiguous(memory_format=cl)
    models = {k: m.eval().to(bf16).to(memory_format=cl) for k, m in _models(name, dev).items()}
    iters = 2 if bench.smoke else 10
    macs = effnet.cost(name, res).macs

    def eager(m: nn.Module) -> Callable[[], Any]:
        return lambda: m(x)

    def row(fn: Callable[[], Any], setup_s: float = 0.0) -> dict[str, Any]:
        with torch.inference_mode():
            med, spread = bench.timeit(fn, iters)
        ips = batch / med
        return {
            "model": name,
            "batch": batch,
            "images_per_s": ips,
            "ms": 1e3 * med,
            "spread_pct": spread,
            "tflops": ips * 2 * macs / 1e12,
            "setup_s": setup_s,
        }

    for lib in LIBS:
        bench.run(f"{name} infer {lib} eager", lambda lib=lib: row(eager(models[lib])))

    def timm_compiled() -> dict[str, Any]:
        t = time.perf_counter()
        fn = torch.compile(models["timm"])
        with torch.inference_mode():
            fn(x)
        return row(lambda: fn(x), time.perf_counter() - t)

    def effnet_default() -> dict[str, Any]:
        fp32 = effnet.create_model(name).to(dev).eval()
        t = time.perf_counter()
        runner = optimize_for_inference(fold_batchnorm(fp32).to(bf16), example=x, runtime="compile")
        return row(lambda: runner(x), time.perf_counter() - t) | {"backend": runner.backend}

    bench.run(f"{name} infer timm compiled", timm_compiled, min_left_s=120)
    bench.run(f"{name} infer effnet default", effnet_default, min_left_s=120)


def training(bench: Bench, name: str, res: int, batch: int) -> None:
    """AMP bf16 channels_last SGD steps: images/s and peak allocated memory, eager and compiled."""
    dev = bench.device
    x = torch.randn(batch, 3, res, res, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=dev)
    iters = 2 if bench.smoke else 5
    macs = effnet.cost(name, res).macs

    def make(lib: str, compile_it: bool) -> Callable[[], dict[str, Any]]:
        def go() -> dict[str, Any]:
            model = _model(name, lib, dev).train().to(memory_format=torch.channels_last)
            step_model = torch.compile(model) if compile_it else model
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            loss_fn = nn.CrossEntropyLoss()

            def step() -> None:
                opt.zero_grad(set_to_none=True)
                with torch.autocast(dev, dtype=torch.bfloat16):
                    loss = loss_fn(step_model(x), y)
                loss.backward()
                opt.step()

            t = time.perf_counter()
            step()
            bench.sync()
            setup = time.perf_counter() - t
            med, spread = bench.timeit(step, iters, groups=3, warmup=2)
            ips = batch / med
            return {
                "model": name,
                "batch": batch,
                "images_per_s": ips,
                "ms": 1e3 * med,
                "spread_pct": spread,
                "tflops": ips * 6 * macs / 1e12,
                "setup_s": setup,
            }

        return go

    for lib in LIBS:
        bench.run(f"{name} train {lib} eager", make(lib, False))
    for lib in LIBS:
        bench.run(f"{name} train {lib} compiled", make(lib, True), min_left_s=150)


def small_batch(bench: Bench, name: str, res: int, batch: int) -> None:
    """Latency at a small batch: eager launches vs CUDA-graph replay of effnet's fused/compiled model."""
    dev, cl, bf16 = bench.device, torch.channels_last, torch.bfloat16
    x = torch.randn(batch, 3, res, res, device=dev).to(bf16).contiguous(memory_format=cl)
    fp32 = effnet.create_model(name).to(dev).eval()
    folded = fold_batchnorm(fp32).to(bf16).to(memory_format=cl)
    timm_model = _model(name, "timm", dev).eval().to(bf16).to(memory_format=cl)
    iters = 2 if bench.smoke else 50

    def lat(fn: Callable[[], Any]) -> dict[str, Any]:
        with torch.inference_mode():
            med, spread = bench.timeit(fn, iters)
        return {"model": name, "batch": batch, "ms": 1e3 * med, "images_per_s": batch / med, "spread_pct": spread}

    def graphed(fn: Callable[[torch.Tensor], Any]) -> Callable[[], Any]:
        static_x = x.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):
                fn(static_x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            fn(static_x)
        return graph.replay

    bench.run(f"{name} b{batch} timm eager", lambda: lat(lambda: timm_model(x)))
    bench.run(f"{name} b{batch} effnet fused eager", lambda: lat(lambda: folded(x)))
    if dev == "cuda":
        bench.run(f"{name} b{batch} effnet fused cudagraph", lambda: lat(graphed(folded)))

        def compiled_graph() -> dict[str, Any]:
            runner = optimize_for_inference(folded, example=x, runtime="compile")
            return lat(graphed(runner)) | {"backend": runner.backend}

        bench.run(f"{name} b{batch} effnet default cudagraph", compiled_graph, min_left_s=90)


def summarize(bench: Bench) -> str:
    """Markdown tables of every row plus the issue's GPU ratios."""
    rows = bench.data["rows"]
    by = {r["item"]: r for r in rows}
    ratios = []
    for model in MODELS:
        pairs = [
            ("infer effnet default", "infer timm compiled", 1.2),
            ("infer effnet eager", "infer timm eager", 1.2),
            ("train effnet compiled", "train timm compiled", 1.2),
            ("train effnet eager", "train timm eager", 1.2),
        ]
        for ours, theirs, bound in pairs:
            a, b = by.get(f"{model} {ours}"), by.get(f"{model} {theirs}")
            if a and b:
                r = a["images_per_s"] / b["images_per_s"]
                ratios.append(
                    {"model": model, "comparison": f"{ours} / {theirs}", "ratio": r, "target": bound, "met": r >= bound}
                )
    bw = bench.data["peaks"].get("copy_gbs")
    acts = effnet.cost("efficientnet_b0", 224).activations
    if bw:
        bound = bw * 1e9 / (4 * acts)  # bf16: each conv/linear output written once and read once
        bench.data["peaks"]["b0_hbm_bound_images_per_s"] = bound
        for r in rows:
            if r.get("model") == "efficientnet_b0" and " infer " in f" {r['item']} ":
                r["hbm_bound_fraction"] = r["images_per_s"] / bound
    cols = [
        "item",
        "batch",
        "images_per_s",
        "ms",
        "spread_pct",
        "tflops",
        "hbm_bound_fraction",
        "setup_s",
        "max_memory_allocated_mb",
    ]
    text = f"{bench.data['meta']}\n\npeaks: {bench.data['peaks']}\n\n" + markdown_table(rows, cols)
    if ratios:
        text += "\n\n" + markdown_table(ratios, ["model", "comparison", "ratio", "target", "met"])
    bench.data["ratios"] = ratios
    return text


def main(argv: list[str] | None = None) -> int:
    """Run everything that fits in the budget; write ``gpu.json``, ``gpu.md`` under ``--out``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--budget-s", type=float, default=400, help="stop starting new items after this many seconds")
    p.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda (cpu with --smoke)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (on CPU: checks the script, no numbers)")
    p.add_argument("--skip-compile", action="store_true", help="leave out every torch.compile item")
    p.add_argument("--table-only", action="store_true", help="write gpu.md from --out's gpu.json and stop")
    args = p.parse_args(argv)
    device = args.device or ("cpu" if args.smoke else "cuda")
    if args.table_only:
        bench = Bench(args.out, 0, device, args.smoke)
        bench.data = json.loads((args.out / "gpu.json").read_text())
        atomic_write_text(args.out / "gpu.md", summarize(bench) + "\n")
        print((args.out / "gpu.md").read_text())
        return 0
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device; use --smoke (or --device cpu) for a CPU run")
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    bench = Bench(args.out, args.budget_s, device, args.smoke, args.skip_compile)
    n = 256 if args.smoke else 8192
    bench.data["peaks"]["matmul_bf16"] = matmul_peak_gflops(n, 5 if args.smoke else 10, torch.bfloat16, device)
    bench.data["peaks"]["copy_gbs"] = bandwidth_gbs(device, 0.01 if args.smoke else 2.0)
    bench.save()
    for name, res in MODELS.items():
        infer_batch, train_batch = (2, 2) if args.smoke else (256, 256 if name == "efficientnet_b0" else 64)
        inference(bench, name, 64 if args.smoke else res, infer_batch)
        training(bench, name, 64 if args.smoke else TRAIN_SIZE[name], train_batch)
    small_batch(bench, "efficientnet_b0", 64 if args.smoke else 224, 1 if args.smoke else 8)
    text = summarize(bench)
    bench.save()
    atomic_write_text(args.out / "gpu.md", text + "\n")
    for kind in ("infer", "train"):  # timm's benchmark columns, one row per timed item of that kind
        rows = [r for r in bench.data["rows"] if f" {kind} " in f" {r['item']} "]
        sizes = {m: 64 if args.smoke else (res if kind == "infer" else TRAIN_SIZE[m]) for m, res in MODELS.items()}
        timm_rows = [
            timm_row(kind, r["model"], sizes.get(r["model"], 224), r["batch"], r["ms"] / 1e3, r["item"]) for r in rows
        ]
        write_timm_csv(args.out / f"benchmark-{kind}-gpu.csv", kind, timm_rows)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
