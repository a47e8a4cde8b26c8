"""Beyond the eager limit on the search's small candidate: torch.compile, plain BN-act, 3 seeds as one vmapped model.

    PYTHONPATH=src python benchmarks/train_small.py                 # ~2 min on 2 cores (one compile)
    PYTHONPATH=src python benchmarks/train_small.py --quick         # a few seconds, no compile: checks it runs

The candidate is the main job's baseline (B0 width 0.25, depth 0.5, 32 px, 1 channel, 10 classes, batch 32, one
thread), its training step as effnet's trainer takes it (channels_last, fused AdamW, cross-entropy) on random data
held in memory. Variants, timed interleaved over ``--rounds`` (median seconds per step):

- ``eager``: effnet's default (memory-lean BatchNorm+activation); ``eager plain``: ``set_lean_activations(False)``;
  ``eager contiguous``: plain BN-act without channels_last;
- ``compile``: ``torch.compile`` (Inductor) of the plain model; its compile time (first 3 steps) and the number of
  steps that pay for it (compile seconds / seconds saved per step);
- ``3 seeds vmapped``: three models (seeds 0-2) stacked with ``torch.func.stack_module_state`` and trained as one
  with ``vmap`` over ``functional_call`` (each seed its own batch), against ``3 seeds in turn`` (three eager steps).

Writes ``train_small.json`` and ``train_small.md`` under ``--out-dir``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common import DEFAULT_OUT, loadavg, machine_info, markdown_table, write_outputs

BATCH, SIZE, CLASSES, SEEDS = 32, 32, 10, 3


def _model(seed: int, lean: bool, channels_last: bool) -> nn.Module:
    from effnet.architectures import get_spec, scale
    from effnet.models.efficientnet import EfficientNet

    torch.manual_seed(seed)
    spec = scale(get_spec("efficientnet_b0"), width=0.25, depth=0.5)
    spec = spec.replace(num_classes=CLASSES, in_chans=1, resolution=SIZE, dropout=0.0, drop_path_rate=0.0)
    model = EfficientNet(spec)
    model.set_lean_activations(lean)
    model.train()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _data(n: int, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, BATCH, 1, SIZE, SIZE, generator=generator)
    y = torch.randint(0, CLASSES, (n, BATCH), generator=generator)
    if channels_last:
        x = torch.stack([b.contiguous(memory_format=torch.channels_last) for b in x])
    return x, y


def single_step(model: nn.Module, channels_last: bool = True) -> Callable[[], None]:
    """One optimizer step of ``model`` (possibly compiled) on a fixed batch."""
    params = [p for p in model.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3, fused=True)
    x, y = _data(1, channels_last)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        loss = loss_fn(model(x[0]), y[0])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def vmapped_step(seeds: int) -> Callable[[], None]:
    """One optimizer step of ``seeds`` stacked models trained as one (vmap over functional_call)."""
    from torch.func import functional_call, stack_module_state

    models = [_model(s, lean=False, channels_last=False) for s in range(seeds)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    opt = torch.optim.AdamW(list(params.values()), lr=1e-3, fused=True)
    x, y = _data(seeds, channels_last=False)

    def forward(p: dict[str, Any], b: dict[str, Any], images: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (images,))

    def step() -> None:
        logits = torch.vmap(forward)(params, buffers, x)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / BATCH
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _time(step: Callable[[], None], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="timed steps per variant and round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="2 steps, 1 round, no compile")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.rounds = 2, 1
    torch.set_num_threads(1)
    meta = machine_info() | {"steps": args.steps, "rounds": args.rounds, "threads": 1}
    steps: dict[str, Callable[[], None]] = {
        "eager": single_step(_model(0, lean=True, channels_last=True)),
        "eager plain": single_step(_model(0, lean=False, channels_last=True)),
        "eager contiguous": single_step(_model(0, lean=False, channels_last=False), channels_last=False),
        "3 seeds vmapped": vmapped_step(SEEDS),
    }
    compile_s = None
    if not args.quick:
        compiled = torch.compile(_model(0, lean=False, channels_last=True))
        steps["compile"] = single_step(compiled)
        start = time.perf_counter()
        for _ in range(3):
            steps["compile"]()
        compile_s = time.perf_counter() - start
    for step in steps.values():  # warm-up
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            times[name].append(_time(step, args.steps))
    med = {name: statistics.median(t) for name, t in times.items()}
    med["3 seeds in turn"] = SEEDS * med["eager"]
    rows = [
        {
            "variant": name,
            "ms_per_step": 1e3 * s,
            "images_per_s": (SEEDS if "seeds" in name else 1) * BATCH / s,
            "vs_eager": (SEEDS * med["eager"] / s) if "seeds" in name else med["eager"] / s,
        }
        for name, s in med.items()
    ]
    result: dict[str, Any] = {"meta": meta | {"loadavg_end": loadavg()}, "rows": rows, "times": times}
    if compile_s is not None:
        saved = med["eager"] - med["compile"]
        result["compile_s"] = compile_s
        result["compile_break_even_steps"] = compile_s / saved if saved > 0 else None
    head = (
        f"Search's small candidate, batch {BATCH}, 1 thread, {meta['host_cpu']}, torch {meta['torch']}, "
        f"{args.rounds} rounds x {args.steps} steps, load avg {meta['loadavg_start']} -> {loadavg()}\n\n"
    )
    extra = ""
    if compile_s is not None:
        extra = f"\n\ncompile: {compile_s:.1f} s for the first 3 steps; pays after {result['compile_break_even_steps']}"
    table = head + markdown_table(rows, ["variant", "ms_per_step", "images_per_s", "vs_eager"]) + extra
    write_outputs(args.out_dir, "train_small", result, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
