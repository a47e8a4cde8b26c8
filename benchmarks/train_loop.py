"""effnet's trainer against the eager limit on the search's small candidate (part of ``benchmarks/train_cpu.py``).

The candidate is the main job's baseline (``SearchConfig`` defaults: B0 width 0.25, depth 0.5, 32 px, 1 channel,
batch 32, one thread), trained as a search trial trains it: :func:`effnet.search.worker.train_config` with the
quick study's options, through :func:`effnet.training.trainer.fit` (``trainer``). The eager limit (``eager``) is the
same network, optimizer and batch size built by effnet's own functions, in a minimal loop over images already
resized and normalised in memory: forward, cross-entropy, zero_grad, backward, step, nothing else. Both train
``--epochs`` epochs; the last epoch's images/s is compared (the first one warms the allocator up). The trainer also
reports its wall time against the sum of its epochs' training + validation time (what a trial pays outside them:
set-up, data loading, checkpoints, the run folder).

    PYTHONPATH=src python benchmarks/train_loop.py --worker trainer   # one run, JSON on the last line
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import loadavg

MODES = ("trainer", "eager")


def _trial(epochs: int, train_limit: int, val_limit: int, output: Path) -> tuple[Any, Any]:
    """(TrainConfig, spec) of one main-job trial of the baseline with this budget (seed 0)."""
    from effnet.config.search import SearchConfig
    from effnet.search.grid import baseline_spec
    from effnet.search.worker import train_config

    search = SearchConfig(epochs=epochs, train_limit=train_limit, val_limit=val_limit, threads=1, output=str(output))
    spec = baseline_spec(search)
    return train_config(search, 0, output / "trial", spec.name), spec


def trainer_worker(epochs: int, train_limit: int, val_limit: int) -> dict[str, Any]:
    """One trial through ``fit``: last epoch's images/s, wall time and the sums of its epochs' times."""
    from effnet.training.trainer import fit

    with tempfile.TemporaryDirectory() as tmp:
        config, spec = _trial(epochs, train_limit, val_limit, Path(tmp))
        start = time.perf_counter()
        fit(config, spec, progress=False)
        wall = time.perf_counter() - start
        lines = (Path(config.output) / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    epoch_s = sum(r["epoch_time_s"] for r in records)
    return {
        "mode": "trainer",
        "images_per_s": records[-1]["images_per_s"],
        "wall_s": wall,
        "train_s": sum(r["train_time_s"] for r in records),
        "epochs_s": epoch_s,
        "wall_over_epochs": wall / epoch_s,
        "val_top1": records[-1]["val_top1"],
        "loadavg": loadavg(),
    }


def eager_worker(epochs: int, train_limit: int, val_limit: int) -> dict[str, Any]:
    """The same network, optimizer and batch size in a minimal loop over in-memory tensors."""
    import torch
    from PIL import Image
    from torch import nn

    from effnet.config.training import resolve_recipe
    from effnet.serving.preprocess import eval_transform
    from effnet.training.data import load_datasets
    from effnet.training.device import resolve_device
    from effnet.training.run import build_spec
    from effnet.training.state import build_state

    with tempfile.TemporaryDirectory() as tmp:
        config, spec = _trial(epochs, train_limit, val_limit, Path(tmp))
    config = resolve_recipe(config)
    torch.set_num_threads(1)
    device, config = resolve_device(config)
    data = load_datasets("fashion-mnist", resolution=spec.resolution, train_limit=train_limit, crop_pct=1.0)
    base, indices = data.train.dataset, data.train.indices
    resize = eval_transform(data.preprocessing)  # once, before timing (works on effnet before the batch path too)
    images = torch.stack([resize(Image.fromarray(base.images[i])) for i in indices])
    labels = torch.as_tensor([base.targets[i] for i in indices])
    net_spec = build_spec(config, spec, num_classes=data.num_classes, in_chans=data.in_chans)
    batch = config.batch_size
    steps = len(images) // batch
    state = build_state(
        config, net_spec, device, world=1, steps_per_epoch=steps, loader_gen=torch.Generator().manual_seed(0)
    )
    model, opt, loss_fn = state.model, state.optimizer, nn.CrossEntropyLoss()
    if config.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    model.train()
    times = []
    for _ in range(epochs):
        order = torch.randperm(len(images))
        start = time.perf_counter()
        for s in range(steps):
            index = order[s * batch : (s + 1) * batch]
            loss = loss_fn(model(images[index]), labels[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return {
        "mode": "eager",
        "images_per_s": steps * batch / times[-1],
        "channels_last": bool(config.channels_last),
        "loadavg": loadavg(),
    }


def run_modes(epochs: int, train_limit: int, val_limit: int, rounds: int, timeout: float) -> dict[str, Any]:
    """Both modes ``rounds`` times, interleaved, each in a fresh process; medians and the trainer/eager ratio."""
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    for r in range(rounds):
        for mode in MODES:
            cmd = [sys.executable, __file__, "--worker", mode, "--epochs", str(epochs)]
            cmd += ["--train-limit", str(train_limit), "--val-limit", str(val_limit)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"{mode} failed: {proc.stderr.strip()[-2000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[mode].append(result)
            print(f"[round {r + 1}/{rounds}] {mode}: {result['images_per_s']:.0f} img/s", file=sys.stderr, flush=True)
    med = {m: statistics.median(x["images_per_s"] for x in runs[m]) for m in MODES}
    overhead = statistics.median(x["wall_over_epochs"] for x in runs["trainer"])
    return {
        "trainer_images_per_s": med["trainer"],
        "eager_images_per_s": med["eager"],
        "trainer_over_eager": med["trainer"] / med["eager"],
        "trial_wall_over_train_val": overhead,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", choices=MODES, required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-limit", type=int, default=4000)
    p.add_argument("--val-limit", type=int, default=2000)
    args = p.parse_args(argv)
    fn = trainer_worker if args.worker == "trainer" else eager_worker
    print(json.dumps(fn(args.epochs, args.train_limit, args.val_limit)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
