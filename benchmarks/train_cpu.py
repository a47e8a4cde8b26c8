"""CPU training-step benchmark: effnet options vs torchvision and timm, each variant in a fresh subprocess.

    python benchmarks/train_cpu.py                          # B0 at 224, batch 16, 2 threads, all variants
    python benchmarks/train_cpu.py --variants "torchvision eager" "effnet channels_last+bf16"

One step = forward + cross-entropy + backward + SGD(momentum) step on random data. Each variant runs
in its own process, so its peak RSS (``ru_maxrss``) is its own; ``rss_before_mb`` is the RSS after
building the model and batch, so ``peak - before`` is what training itself added (activations, grads,
optimizer state). With ``--rounds`` > 1 the variants run interleaved and the medians over rounds are kept.
Writes ``train_cpu.json``, ``train_cpu.md``, ``train_cpu.png`` and ``benchmark-train-cpu.csv`` (timm's benchmark
columns) under ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    COMMITTED_OUT,
    DEFAULT_OUT,
    bar_plot,
    loadavg,
    machine_info,
    markdown_table,
    timm_row,
    write_outputs,
    write_timm_csv,
)

BASELINE = "torchvision eager"
# name -> (library, channels_last, bf16 autocast, torch.compile, gradient checkpointing)
VARIANTS: dict[str, tuple[str, bool, bool, bool, bool]] = {
    "torchvision eager": ("torchvision", False, False, False, False),
    "torchvision channels_last": ("torchvision", True, False, False, False),
    "timm eager": ("timm", False, False, False, False),
    "effnet eager": ("effnet", False, False, False, False),
    "effnet eager, plain BN-act": ("effnet", False, False, False, False),
    "effnet channels_last": ("effnet", True, False, False, False),
    "effnet channels_last, plain BN-act": ("effnet", True, False, False, False),
    "effnet bf16": ("effnet", False, True, False, False),
    "effnet channels_last+bf16": ("effnet", True, True, False, False),
    "effnet grad-ckpt": ("effnet", False, False, False, True),
    "effnet channels_last+bf16+grad-ckpt": ("effnet", True, True, False, True),
    "effnet compile": ("effnet", False, False, True, False),
    "effnet channels_last+compile": ("effnet", True, False, True, False),
    "effnet channels_last+bf16+compile": ("effnet", True, True, True, False),
}
SLOW = ("effnet compile", "effnet channels_last+compile", "effnet channels_last+bf16+compile")
# ablation: effnet without its memory-lean BN+activation (model.set_lean_activations(False))
PLAIN_BN_ACT = ("effnet eager, plain BN-act", "effnet channels_last, plain BN-act")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(variant: str, model_name: str, batch: int, resolution: int, threads: int, steps: int) -> dict[str, Any]:
    """Train ``steps`` timed steps (after 2 warm-up steps) of one variant in this process; returns the metrics."""
    import torch
    from torch import nn

    lib, channels_last, bf16, compiled, ckpt = VARIANTS[variant]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if lib == "torchvision":
        import torchvision

        model = getattr(torchvision.models, model_name)(weights=None)
    elif lib == "timm":
        import timm

        model = timm.create_model(model_name, pretrained=False)
    else:
        import effnet

        model = effnet.create_model(model_name, grad_checkpointing=ckpt)
        model.set_lean_activations(variant not in PLAIN_BN_ACT)
    model.train()
    x = torch.randn(batch, 3, resolution, resolution)
    y = torch.randint(0, 1000, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-5)
    loss_fn = nn.CrossEntropyLoss()
    rss_before = _rss_mb()

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(step_model(x), y)
        loss.backward()
        opt.step()
        return float(loss)

    t0 = time.perf_counter()
    losses = [step(), step()]
    warmup_s = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "variant": variant,
        "step_times_s": times,
        "median_step_s": statistics.median(times),
        "warmup_s": warmup_s,
        "peak_rss_mb": peak,
        "rss_before_mb": rss_before,
        "losses_finite": all(v == v and abs(v) < 1e4 for v in losses),
        "loadavg": loadavg(),
    }


def _run_worker(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        variant,
        "--model",
        args.model,
        "--batch",
        str(args.batch),
        "--resolution",
        str(args.resolution),
        "--threads",
        str(args.threads),
        "--steps",
        str(args.steps),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        return {"variant": variant, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run every requested variant in a fresh subprocess and write JSON, Markdown and PNG results."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="efficientnet_b0")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed steps per variant (after 2 warm-up steps)")
    p.add_argument("--rounds", type=int, default=1, help="run all variants this many times, interleaved")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None)
    p.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile variant (slow to build)")
    p.add_argument("--timeout", type=float, default=900, help="seconds before a variant's process is killed")
    p.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT,
        help=f"default {DEFAULT_OUT}; the committed results: {COMMITTED_OUT}",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        out = worker(args.worker, args.model, args.batch, args.resolution, args.threads, args.steps)
        print(json.dumps(out))
        return 0
    variants = args.variants or [v for v in VARIANTS if not (args.skip_compile and v in SLOW)]
    if BASELINE not in variants:
        variants = [BASELINE, *variants]
    meta = machine_info() | {
        "model": args.model,
        "batch": args.batch,
        "resolution": args.resolution,
        "threads": args.threads,
        "steps": args.steps,
        "rounds": args.rounds,
    }
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants:
            res = _run_worker(v, args)
            runs[v].append(res)
            msg = res.get("error") or f"{args.batch / res['median_step_s']:.2f} img/s, {res['peak_rss_mb']:.0f} MB"
            print(f"[round {r + 1}/{args.rounds}] {v}: {msg}", file=sys.stderr, flush=True)
    rows = _rows(runs, args.batch)
    meta["loadavg_end"] = loadavg()
    checks = _check_targets(rows)
    table = _report(meta, rows, checks)
    json_path, md_path = write_outputs(
        args.out_dir, "train_cpu", {"meta": meta, "rows": rows, "runs": runs, "targets": checks}, table
    )
    ok = [r for r in rows if "images_per_s" in r]
    timm_csv = write_timm_csv(
        args.out_dir / "benchmark-train-cpu.csv",
        "train",
        [timm_row("train", args.model, args.resolution, args.batch, r["median_step_s"], r["variant"]) for r in ok],
    )
    bar_plot(
        args.out_dir / "train_cpu.png",
        {
            "images/s": {r["variant"]: r["images_per_s"] for r in ok},
            "peak RSS (MB)": {r["variant"]: r["peak_rss_mb"] for r in ok},
        },
        "",
        f"{args.model} train b{args.batch} CPU x{args.threads}",
    )
    print(table)
    print(f"wrote {json_path}, {md_path}, {args.out_dir / 'train_cpu.png'}, {timm_csv} (timm's columns)")
    return 0


def _rows(runs: dict[str, list[dict[str, Any]]], batch: int) -> list[dict[str, Any]]:
    good = {v: [r for r in rs if "error" not in r] for v, rs in runs.items()}
    base = good.get(BASELINE) or []
    base_step = statistics.median(r["median_step_s"] for r in base) if base else None
    base_mem = statistics.median(r["peak_rss_mb"] for r in base) if base else None
    rows = []
    for v, rs in good.items():
        if not rs:
            rows.append({"variant": v, "error": " ".join(runs[v][-1].get("error", ["failed"]))})
            continue
        step = statistics.median(r["median_step_s"] for r in rs)
        all_steps = sorted(t for r in rs for t in r["step_times_s"])
        peak = statistics.median(r["peak_rss_mb"] for r in rs)
        before = statistics.median(r["rss_before_mb"] for r in rs)
        rows.append(
            {
                "variant": v,
                "images_per_s": batch / step,
                "median_step_s": step,
                "spread_pct": 100 * (all_steps[-1] - all_steps[0]) / step,
                "ratio": base_step / step if base_step else None,
                "peak_rss_mb": peak,
                "mem_ratio": peak / base_mem if base_mem else None,
                "train_added_mb": peak - before,
                "warmup_s": statistics.median(r["warmup_s"] for r in rs),
                "losses_finite": all(r["losses_finite"] for r in rs),
                "loadavg": rs[-1]["loadavg"],
            }
        )
    return rows


def _check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 6: >= 1.4x torchvision eager images/s at batch 16 with <= 0.85x its peak RSS."""
    out = []
    for r in rows:
        if r["variant"].startswith("effnet") and r.get("ratio"):
            met = r["ratio"] >= 1.4 and r["mem_ratio"] <= 0.85
            out.append(
                {
                    "variant": r["variant"],
                    "speed_ratio": round(r["ratio"], 3),
                    "mem_ratio": round(r["mem_ratio"], 3),
                    "met (>=1.4x, <=0.85x mem)": met,
                }
            )
    return out


def _report(meta: dict[str, Any], rows: list[dict[str, Any]], checks: list[dict[str, Any]]) -> str:
    head = (
        f"{meta['model']} training, batch {meta['batch']} at {meta['resolution']}px, {meta['threads']} threads, "
        f"{meta['host_cpu']}, torch {meta['torch']}, {meta['date_utc']} UTC, {meta['rounds']} round(s) x "
        f"{meta['steps']} steps, load avg {meta['loadavg_start']} -> {meta['loadavg_end']}\n\n"
    )
    cols = [
        "variant",
        "images_per_s",
        "spread_pct",
        "ratio",
        "peak_rss_mb",
        "mem_ratio",
        "train_added_mb",
        "warmup_s",
        "losses_finite",
        "error",
    ]
    tgt = markdown_table(checks, ["variant", "speed_ratio", "mem_ratio", "met (>=1.4x, <=0.85x mem)"])
    return head + markdown_table(rows, cols) + "\n\n" + tgt


if __name__ == "__main__":
    raise SystemExit(main())
