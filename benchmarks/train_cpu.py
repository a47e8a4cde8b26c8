"""CPU training benchmark: effnet's trainer vs the eager limit, then effnet vs torchvision and timm at 224 px.

    python benchmarks/train_cpu.py                          # both sections, all variants (see --help)
    python benchmarks/train_cpu.py --quick                  # tiny sizes: checks that everything runs (~1 min)
    python benchmarks/train_cpu.py --sections peers --variants "torchvision eager" "effnet channels_last+bf16"

Section ``trainer`` (:mod:`train_loop`): the search's small candidate (B0 width 0.25, depth 0.5, 32 px, 1 channel,
batch 32, one thread) trained by ``fit`` as a search trial vs the same network and optimizer in a minimal loop over
in-memory tensors: the ratio of their images/s, and a trial's wall time over its training + validation time.

Section ``peers``:

B0 (``--model``) at ``--resolution``: one step = forward + cross-entropy + backward + SGD(momentum) step on
random data. Each variant runs
in its own process, so its peak RSS (``ru_maxrss``) is its own; ``rss_before_mb`` is the RSS after
building the model and batch, so ``peak - before`` is what training itself added (activations, grads,
optimizer state). With ``--rounds`` > 1 the variants run interleaved and the medians over rounds are kept.
``vs_best_peer``/``mem_vs_best_peer``: each variant against the fastest torchvision/timm variant of the run.
With ``--profile-ops`` each variant's process then profiles two more steps (``torch.profiler``, CPU) and the report
shows where a step's time goes: the operators with the most self time, for the fastest effnet variant and the
fastest peer side by side.
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
from train_loop import run_modes

SECTIONS = ("trainer", "peers")
TARGET = "met (>=1.3x, <=0.8x mem)"

BASELINE = "torchvision eager"
# name -> (library, channels_last, bf16 autocast, torch.compile, gradient checkpointing)
VARIANTS: dict[str, tuple[str, bool, bool, bool, bool]] = {
    "torchvision eager": ("torchvision", False, False, False, False),
    "torchvision channels_last": ("torchvision", True, False, False, False),
    "timm eager": ("timm", False, False, False, False),
    "timm channels_last": ("timm", True, False, False, False),
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
PEERS = ("torchvision eager", "torchvision channels_last", "timm eager", "timm channels_last")
QUICK_VARIANTS = ("torchvision channels_last", "timm channels_last", "effnet channels_last")
SLOW = ("effnet compile", "effnet channels_last+compile", "effnet channels_last+bf16+compile")
# ablation: effnet without its memory-lean BN+activation (model.set_lean_activations(False))
PLAIN_BN_ACT = ("effnet eager, plain BN-act", "effnet channels_last, plain BN-act")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _top_ops(step: Any, top: int = 12) -> list[dict[str, Any]]:
    """The operators with the most self CPU time over two profiled steps: ms per step and share of the total."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
        step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [
        {"op": e.key, "self_ms_per_step": e.self_cpu_time_total / 2e3, "share": e.self_cpu_time_total / total}
        for e in ranked
    ]


def worker(
    variant: str, model_name: str, batch: int, resolution: int, threads: int, steps: int, profile_ops: bool = False
) -> dict[str, Any]:
    """Train ``steps`` timed steps (after 2 warm-up steps) of one variant in this process; returns the metrics
    (with ``profile_ops``: and :func:`_top_ops` of two more steps, after the timing)."""
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
    ops = _top_ops(step) if profile_ops else None
    return {
        "top_ops": ops,
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
        *(["--profile-ops"] if args.profile_ops else []),
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
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--quick", action="store_true", help="tiny sizes and three variants: check that it all runs")
    p.add_argument("--trainer-images", type=int, default=4000, help="trainer section: training images (epochs: 2)")
    p.add_argument("--profile-ops", action="store_true", help="peers: show where a step's time goes (operators)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        out = worker(args.worker, args.model, args.batch, args.resolution, args.threads, args.steps, args.profile_ops)
        print(json.dumps(out))
        return 0
    if args.quick:
        args.resolution, args.batch, args.steps, args.trainer_images = 64, 4, 1, 320
        args.variants = args.variants or list(QUICK_VARIANTS)
    meta = machine_info() | {"sections": args.sections, "quick": args.quick}
    payload: dict[str, Any] = {"meta": meta}
    table = ""
    if "trainer" in args.sections:
        trainer = run_modes(2, args.trainer_images, min(2000, args.trainer_images), args.rounds, args.timeout)
        payload["trainer"] = trainer
        table += _trainer_report(trainer, args.trainer_images, args.rounds)
    if "peers" in args.sections:
        rows, runs, checks = _peers(args, meta)
        payload |= {"rows": rows, "runs": runs, "targets": checks}
        table += _report(meta, rows, checks) + _ops_report(rows, runs)
    meta["loadavg_end"] = loadavg()
    json_path, md_path = write_outputs(args.out_dir, "train_cpu", payload, table)
    print(table)
    print(f"wrote {json_path}, {md_path}")
    return 0


def _trainer_report(trainer: dict[str, Any], images: int, rounds: int) -> str:
    loads = [r["loadavg"] for rs in trainer["runs"].values() for r in rs]
    return (
        f"Search's small candidate (B0 w0.25 d0.5, 32 px, 1 channel, batch 32, 1 thread), {images} images x 2 "
        f"epochs, {rounds} round(s), load avg {loads[0]} -> {loads[-1]}\n\n"
        f"| trainer (fit) img/s | eager limit img/s | trainer / eager | trial wall / (train + val) |\n"
        f"| ---: | ---: | ---: | ---: |\n"
        f"| {trainer['trainer_images_per_s']:.0f} | {trainer['eager_images_per_s']:.0f} | "
        f"{trainer['trainer_over_eager']:.3f} | {trainer['trial_wall_over_train_val']:.3f} |\n\n"
    )


def _peers(args: argparse.Namespace, meta: dict[str, Any]) -> tuple[list[dict[str, Any]], Any, Any]:
    """Run the variants of the peers section (interleaved over rounds) and plot them."""
    variants = args.variants or [v for v in VARIANTS if not (args.skip_compile and v in SLOW)]
    if BASELINE not in variants:
        variants = [BASELINE, *variants]
    meta |= {
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
    ok = [r for r in rows if "images_per_s" in r]
    write_timm_csv(  # benchmark-train-cpu.csv: timm's columns
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
    return rows, runs, checks


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
    peers = [r for r in rows if r["variant"] in PEERS and "images_per_s" in r]
    best = max(peers, key=lambda r: r["images_per_s"], default=None)
    for r in rows:
        if best is not None and "images_per_s" in r:
            r["best_peer"] = best["variant"]
            r["vs_best_peer"] = r["images_per_s"] / best["images_per_s"]
            r["mem_vs_best_peer"] = r["peak_rss_mb"] / best["peak_rss_mb"]
    return rows


def _check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 24: >= 1.3x the best-configured peer's images/s at <= 0.8x its peak RSS."""
    out = []
    for r in rows:
        if r["variant"].startswith("effnet") and r.get("vs_best_peer"):
            met = r["vs_best_peer"] >= 1.3 and r["mem_vs_best_peer"] <= 0.8
            out.append(
                {
                    "variant": r["variant"],
                    "best_peer": r["best_peer"],
                    "vs_best_peer": round(r["vs_best_peer"], 3),
                    "mem_vs_best_peer": round(r["mem_vs_best_peer"], 3),
                    TARGET: met,
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
        "vs_best_peer",
        "peak_rss_mb",
        "mem_ratio",
        "mem_vs_best_peer",
        "train_added_mb",
        "warmup_s",
        "losses_finite",
        "error",
    ]
    tgt = markdown_table(checks, ["variant", "best_peer", "vs_best_peer", "mem_vs_best_peer", TARGET])
    return head + markdown_table(rows, cols) + "\n\n" + tgt


def _ops_report(rows: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]) -> str:
    """Where a step's time goes: the top operators of the fastest effnet variant and of the fastest peer (their
    last round), side by side; empty without ``--profile-ops``."""
    timed = [r for r in rows if "images_per_s" in r]
    ours = max((r for r in timed if r["variant"].startswith("effnet")), key=lambda r: r["images_per_s"], default=None)
    peer = max((r for r in timed if r["variant"] in PEERS), key=lambda r: r["images_per_s"], default=None)
    out = ""
    for r in (ours, peer):
        ops = runs[r["variant"]][-1].get("top_ops") if r is not None else None
        if ops:
            table = [{"op": o["op"], "ms_per_step": o["self_ms_per_step"], "share": o["share"]} for o in ops]
            step_ms = 1e3 * r["median_step_s"]
            out += f"\n\nWhere a step goes, {r['variant']} ({step_ms:.0f} ms per step, self CPU time):\n\n"
            out += markdown_table(table, ["op", "ms_per_step", "share"])
    return out


if __name__ == "__main__":
    raise SystemExit(main())
