"""The trainer: :func:`fit` runs one training run, resumable, on one CPU or many GPUs (DDP via torchrun).

How a run goes, and where each part lives: the settings are resolved (:mod:`effnet.config.training`: recipe;
:mod:`effnet.training.recipe`: device and speed); the run directory is locked (:mod:`effnet.training.rundir`);
data and loaders are built (:mod:`effnet.training.data`, :mod:`effnet.training.loaders`); the training state is
built or restored from the checkpoint (:mod:`effnet.training.state`); then each epoch is
:func:`effnet.training.loop.train_epoch` + :func:`effnet.training.loop.end_epoch`, followed by a checkpoint, the
metrics line and the best weights; at the end the last/EMA weights and the report are written.

:func:`fit` is reusable in-process (the scaling search calls it once per trial): it keeps no global state,
restores the signal handlers, thread count and determinism flag it changes, and initialises a process group
only when launched by torchrun (``RANK``/``WORLD_SIZE`` set), destroying it again at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from effnet.config.progressive import Stage, progressive_stages, stage_for_epoch
from effnet.cost import cost
from effnet.preprocessing import Preprocessing
from effnet.report import render_markdown
from effnet.specs import NetworkSpec, get_spec, scale
from effnet.training.checkpoint import describe_spec, weights_conventions, weights_in_chans
from effnet.training.data import DataBundle, load_datasets, restage
from effnet.training.loaders import Loaders, build_loaders
from effnet.training.loop import Runtime, StopFlag, end_epoch, evaluate, train_epoch
from effnet.training.recipe import (
    RECIPES,
    SCHEDULE_FIELDS,
    TrainConfig,
    choose_recipe,
    peak_lr,
    recipe_warning,
    resolve_device,
    resolve_recipe,
)
from effnet.training.rundir import RunDir
from effnet.training.state import TrainState, build_state

__all__ = ["TrainConfig", "TrainResult", "TrainingInterrupted", "RECIPES", "fit", "build_spec", "evaluate"]


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`fit` (accuracies in percent; ``ema_top1`` None when EMA is off)."""

    best_top1: float
    best_epoch: int
    last_top1: float
    last_top5: float
    ema_top1: float | None
    best_ema_top1: float | None
    epochs: int
    wall_time_s: float
    images_per_s: float
    output_dir: str
    params: int
    macs: int
    skipped_images: int
    rank_weight_max_diff: float | None
    history: tuple[dict[str, Any], ...]
    spec: dict[str, Any] | None = None
    """The spec actually trained (``NetworkSpec.to_dict``: classes and input channels fitted to the data)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by :func:`fit` after SIGTERM/SIGINT once the in-epoch checkpoint is safely written."""

    def __init__(self, signum: int, checkpoint: str) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; checkpoint {checkpoint}; rerun with --resume")
        self.signum = signum
        self.checkpoint = checkpoint


def _base_spec(config: TrainConfig, spec: NetworkSpec | None) -> NetworkSpec:
    if spec is not None:
        return spec
    if config.spec_file:
        path = Path(config.spec_file)
        if not path.is_file():
            raise FileNotFoundError(f"--spec {path}: no such file")
        return NetworkSpec.from_json(path.read_text(encoding="utf-8"))
    return get_spec(config.model)


def build_spec(
    config: TrainConfig,
    spec: NetworkSpec | None = None,
    *,
    num_classes: int,
    in_chans: int,
    resolution: int | None = None,
) -> NetworkSpec:
    """The network a run trains: ``spec`` / ``--spec`` file / ``--model``, scaled and with the run's options."""
    base = _base_spec(config, spec)
    scaled = scale(base, depth=config.depth, width=config.width, resolution=resolution or config.resolution)
    changes: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans}
    for field_name, value in (
        ("dropout", config.dropout),
        ("drop_path_rate", config.drop_path),
        ("bn_momentum", config.bn_momentum),
        ("stem_stride", config.stem_stride),
    ):
        if value is not None:
            changes[field_name] = value
    return scaled.replace(**changes)


@contextlib.contextmanager
def _process_group() -> Iterator[tuple[int, int, int]]:
    """(rank, world size, local rank); joins torchrun's group when launched by it, leaves it afterwards."""
    if dist.is_available() and dist.is_initialized():
        yield dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
        return
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        yield 0, 1, 0
        return
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend)
    try:
        yield dist.get_rank(), dist.get_world_size(), local
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def _process_settings(config: TrainConfig) -> Iterator[None]:
    """Apply ``--threads`` / ``--deterministic`` for the run and restore the previous values afterwards."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


@dataclass(frozen=True)
class _Run:
    """What stays fixed during a run: its settings, data, network, loaders, where it runs and writes, and its
    progressive-learning stages (empty: off)."""

    config: TrainConfig
    spec: NetworkSpec
    data: DataBundle
    loaders: Loaders
    rt: Runtime
    run_dir: RunDir
    progress: bool
    stages: tuple[Stage, ...] = ()

    def note(self, text: str) -> None:
        if self.progress:
            print(text, flush=True)

    def preprocessing(self) -> Preprocessing:
        """What the exported weights say about the input: the data's validation preprocessing at the net's size."""
        return self.data.preprocessing.replace(input_size=self.spec.resolution)


def _check_compatible(run: _Run, state: dict[str, Any], world: int) -> None:
    """A checkpoint may be resumed only by the same network, schedule-relevant settings and process count."""
    saved_spec = NetworkSpec.from_json(state["spec"])
    if saved_spec != run.spec:
        raise ValueError(
            f"checkpoint {run.run_dir.checkpoint} was written for {describe_spec(saved_spec)}, not "
            f"{describe_spec(run.spec)}; use the same model settings or another --output"
        )
    saved, now, default = state["config"], run.config.to_dict(), TrainConfig().to_dict()
    saved = {k: saved.get(k, default[k]) for k in SCHEDULE_FIELDS}  # a field newer than the checkpoint: its default
    diffs = [f"{k}={saved[k]!r}->{now[k]!r}" for k in SCHEDULE_FIELDS if saved[k] != now[k]]
    if diffs:
        raise ValueError(
            f"--resume: settings differ from checkpoint {run.run_dir.checkpoint} "
            f"({', '.join(diffs[:4])}); the run would not reproduce its schedule"
        )
    if state["world"] != world:
        raise ValueError(f"--resume: checkpoint was written by {state['world']} processes, this run has {world}")


def _gather(value: Any, world: int) -> list[Any]:
    """``value`` of every rank, in rank order."""
    if world == 1:
        return [value]
    every: list[Any] = [None] * world
    dist.all_gather_object(every, value)
    return every


def _save(run: _Run, state: TrainState) -> None:
    """The checkpoint: the state (RNG and skipped images of every rank) plus spec, config and process count."""
    local = state.state_dict()
    parts = _gather((local["rng"], local["bad"]), run.rt.world)
    payload = {
        "format": "effnet-train-1",
        "spec": run.spec.to_json(),
        "config": run.config.to_dict(),
        "world": run.rt.world,
        **local,
        "rng": [x[0] for x in parts],
        "bad": [x[1] for x in parts],
    }
    run.run_dir.save_checkpoint(payload)


def _restore(run: _Run, state: TrainState, checkpoint: dict[str, Any]) -> None:
    rank = run.rt.rank
    state.load_state_dict({**checkpoint, "rng": checkpoint["rng"][rank], "bad": checkpoint["bad"][rank]})
    run.run_dir.write_metrics(state.history)  # the log says exactly what the checkpoint has done


def _setup(
    config: TrainConfig, spec: NetworkSpec | None, run_dir: RunDir, rt: Runtime, progress: bool
) -> tuple[_Run, TrainState, nn.Module, dict[str, Any] | None]:
    """Data, network, loaders and state (restored from the checkpoint on ``--resume``); the module to train."""
    checkpoint = run_dir.start(config.resume)
    base = _base_spec(config, spec)
    in_chans = config.in_chans or (weights_in_chans(config.weights) if config.weights else None)
    data = load_datasets(
        config.data,
        resolution=config.resolution or base.resolution,
        in_chans=in_chans,
        data_root=config.data_root,
        train_limit=config.train_limit,
        val_limit=config.val_limit,
        limit_seed=config.limit_seed,
        augment=config.augmentation(),
        crop_pct=config.crop_pct,
        download=config.download,
    )
    net_spec = build_spec(config, base, num_classes=data.num_classes, in_chans=data.in_chans)
    if config.weights:
        net_spec = weights_conventions(net_spec, config.weights)
    stages = progressive_stages(config, net_spec.resolution)
    if stages:  # the exported spec carries the dropout the run ends with
        net_spec = net_spec.replace(dropout=stages[-1].dropout)
    loaders = build_loaders(data, config, rt.device, rank=rt.rank, world=rt.world)
    run = _Run(config, net_spec, data, loaders, rt, run_dir, progress, stages)
    if checkpoint is not None:
        _check_compatible(run, checkpoint, rt.world)
    state = build_state(
        config,
        net_spec,
        rt.device,
        world=rt.world,
        steps_per_epoch=loaders.steps_per_epoch,
        loader_gen=loaders.generator,
    )
    net: nn.Module = state.model
    if rt.world > 1:
        net = DistributedDataParallel(net, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net)
    torch.manual_seed(config.seed + rt.rank)  # training randomness (dropout, augmentation) differs per rank
    if checkpoint is not None:
        _restore(run, state, checkpoint)
    return run, state, net, checkpoint


def _write_start(run: _Run, state: TrainState, resumed: bool, recipe_line: str) -> None:
    c = run.config
    resolved = {
        **c.to_dict(),
        "recipe_choice": recipe_line,
        "peak_lr": peak_lr(c),
        "world_size": run.rt.world,
        "steps_per_epoch": run.loaders.steps_per_epoch,
        "spec": run.spec.to_dict(),
        "progressive_stages": [stage.to_dict() for stage in run.stages],
        "data_info": {
            "train_images": len(run.data.train),
            "val_images": len(run.data.val),
            "source": run.data.source,
            **run.preprocessing().to_dict(),
        },
    }
    run.run_dir.write_config(resolved)
    if resumed:
        run.note(f"resuming {run.run_dir.path} at epoch {state.epoch + 1} step {state.step_in_epoch}")
        return
    run.run_dir.write_metrics([])
    sizes = f"{len(run.data.train)} train / {len(run.data.val)} val images"
    run.note(f"training {describe_spec(run.spec)} on {run.data.name} ({sizes}) -> {run.run_dir.path}")


def _bar(run: _Run, state: TrainState) -> Any:
    if not run.progress:
        return None
    from tqdm import tqdm

    return tqdm(
        total=run.loaders.steps_per_epoch,
        initial=state.step_in_epoch,
        desc=f"epoch {state.epoch + 1}",
        unit="step",
        leave=False,
        dynamic_ncols=True,
    )


def _tensorboard(run: _Run) -> Any:
    if not (run.config.tensorboard and run.run_dir.main):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("--tensorboard needs the tensorboard package (pip install tensorboard)") from None
    return SummaryWriter(str(run.run_dir.path / "tensorboard"))


def _one_epoch(
    run: _Run,
    state: TrainState,
    net: nn.Module,
    criterion: nn.Module,
    stop: StopFlag,
    loader: DataLoader,
    stage: Stage | None,
) -> None:
    """Train one epoch on ``loader`` (with a progress bar), checkpoint on a stop request, then evaluate and log it;
    ``stage``: the progressive-learning stage the epoch belongs to (None: off)."""
    bar = _bar(run, state)

    def show(p: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix(
            loss=f"{p['loss_sum'] / max(p['seen'], 1):.3f}",
            lr=f"{max(state.schedule.get_last_lr()):.2e}",
            img_s=f"{p['seen'] * run.rt.world / max(p['time'], 1e-9):.0f}",
            refresh=False,
        )

    try:
        signum = train_epoch(
            state,
            net,
            criterion,
            loader,
            run.rt,
            grad_clip=run.config.grad_clip,
            freeze_bn=run.config.freeze_bn,
            stop=stop,
            on_step=show if bar else None,
            mixup_alpha=stage.mixup_alpha if stage else 0.0,
        )
    finally:
        if bar is not None:
            bar.close()
    if signum:
        _save(run, state)
        raise TrainingInterrupted(signum, str(run.run_dir.checkpoint))
    extra: dict[str, Any] = {"resolution": stage.resolution if stage else run.spec.resolution}
    if stage is not None:
        extra.update(
            stage=run.stages.index(stage) + 1,
            dropout=stage.dropout,
            randaugment_m=stage.randaugment_m,
            mixup_alpha=stage.mixup_alpha,
        )
    record, improved = end_epoch(state, run.loaders.val, run.rt, time.perf_counter(), extra)
    _save(run, state)
    run.run_dir.append_metrics(record)
    if improved:
        run.run_dir.export(state.model, "best.safetensors", run.preprocessing(), {"epoch": state.epoch})
    ema = f" ema {record['ema_top1']:.2f}" if record["ema_top1"] is not None else ""
    run.note(
        f"epoch {record['epoch']}/{run.config.epochs}: loss {record['train_loss']:.4f} top-1 "
        f"{record['val_top1']:.2f} top-5 {record['val_top5']:.2f}{ema} lr {record['lr']:.3e} "
        f"{record['images_per_s']:.0f} img/s"
    )


def _enter_stage(run: _Run, state: TrainState, stage: Stage) -> DataLoader:
    """The training loader of a progressive-learning stage (its image size and RandAugment magnitude), with the
    model's dropout set to the stage's. Derived from the epoch alone, so a resumed run re-enters the same stage."""
    augment = dataclasses.replace(run.config.augmentation(), randaugment_m=stage.randaugment_m)
    loader = run.loaders.with_train_dataset(restage(run.data, stage.resolution, augment)).train
    state.model.set_dropout(stage.dropout)
    run.note(
        f"stage {run.stages.index(stage) + 1}/{len(run.stages)} (epochs {stage.first_epoch}-{stage.last_epoch}"
        f"): resolution {stage.resolution}, dropout {stage.dropout:.3g}, RandAugment magnitude "
        f"{stage.randaugment_m}, mixup alpha {stage.mixup_alpha:.3g}"
    )
    return loader


def _train(run: _Run, state: TrainState, net: nn.Module, on_epoch: Callable[[dict[str, Any]], None] | None) -> None:
    criterion = nn.CrossEntropyLoss(label_smoothing=run.config.label_smoothing or 0.0)
    writer = _tensorboard(run)
    loader, current = run.loaders.train, None
    try:
        with StopFlag() as stop:
            while state.epoch < run.config.epochs:
                stage = stage_for_epoch(run.stages, state.epoch + 1)
                if stage is not None and stage != current:
                    loader, current = _enter_stage(run, state, stage), stage
                _one_epoch(run, state, net, criterion, stop, loader, stage)
                if on_epoch is not None:
                    on_epoch(state.history[-1])
                if writer is not None:
                    for key, value in state.history[-1].items():
                        if isinstance(value, float):
                            writer.add_scalar(key, value, state.history[-1]["epoch"])
    finally:
        if writer is not None:
            writer.close()


def _rank_weight_diff(model: nn.Module, world: int) -> float | None:
    """Largest difference of any weight between ranks (None for one process)."""
    if world == 1:
        return None
    flat = torch.cat([p.detach().float().flatten() for p in model.state_dict().values()])
    hi, lo = flat.clone(), flat.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return float((hi - lo).max().item())


def _result(run: _Run, state: TrainState, bad: list[str]) -> TrainResult:
    h = state.history
    emas = [r["ema_top1"] for r in h if r["ema_top1"] is not None]
    best = max(h, key=lambda r: r["val_top1"])
    seen_time = sum(r["train_time_s"] for r in h)
    ips = sum(r["images_per_s"] * r["train_time_s"] for r in h) / max(seen_time, 1e-9)
    c_cost = cost(run.spec)
    return TrainResult(
        best_top1=best["val_top1"],
        best_epoch=best["epoch"],
        last_top1=h[-1]["val_top1"],
        last_top5=h[-1]["val_top5"],
        ema_top1=emas[-1] if emas else None,
        best_ema_top1=max(emas) if emas else None,
        epochs=len(h),
        wall_time_s=sum(r["epoch_time_s"] for r in h),
        images_per_s=ips,
        output_dir=str(run.run_dir.path),
        params=c_cost.params,
        macs=c_cost.macs,
        skipped_images=len(bad),
        rank_weight_max_diff=_rank_weight_diff(state.model, run.rt.world),
        history=tuple(h),
        spec=run.spec.to_dict(),
    )


def _finish(run: _Run, state: TrainState) -> TrainResult:
    """Last and EMA weights, the summary table and plot; the result."""
    bad = sorted(set().union(*_gather(sorted(state.bad), run.rt.world)))
    r = _result(run, state, bad)
    run.run_dir.export(state.model, "last.safetensors", run.preprocessing(), {"epoch": state.epoch})
    if state.ema is not None:
        meta = {"epoch": state.epoch, "ema_decay": state.ema.decay}
        run.run_dir.export(state.ema.module, "ema.safetensors", run.preprocessing(), meta)
    row = {
        "model": run.spec.name,
        "data": run.data.name,
        "epochs": r.epochs,
        "best_top1": r.best_top1,
        "best_epoch": r.best_epoch,
        "last_top1": r.last_top1,
        "last_top5": r.last_top5,
        "ema_top1": r.ema_top1,
        "best_ema_top1": r.best_ema_top1,
        "wall_time_s": r.wall_time_s,
        "images_per_s": r.images_per_s,
        "params": r.params,
        "macs": r.macs,
        "skipped_images": r.skipped_images,
        "world_size": run.rt.world,
        "rank_weight_max_diff": r.rank_weight_max_diff,
    }
    run.run_dir.write_report(row, r.history, f"{run.spec.name} on {run.data.name}")
    if run.progress:
        print(render_markdown([row], [k for k, v in row.items() if v is not None]), end="")
        if bad:
            print(f"skipped {len(bad)} unreadable image(s): {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}")
    return r


def fit(
    config: TrainConfig,
    spec: NetworkSpec | None = None,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train (or resume, with ``config.resume``) one run and return its results; see :class:`TrainConfig`.

    ``spec`` overrides ``config.model``/``config.spec_file`` as the network to train (``config.width``/``depth``
    still multiply it). Writes ``config.json``, ``metrics.jsonl``, ``checkpoint.pt``, ``best/last/ema
    .safetensors``, ``summary.{md,csv,json}`` and ``curves.png`` under ``config.output`` (rank 0 only), which is
    locked for the run (a second run into it raises :class:`~effnet.training.rundir.RunDirLocked` at once).
    Raises :class:`TrainingInterrupted` after SIGTERM/SIGINT, once a resumable checkpoint is written.
    ``on_epoch(record)`` is called with each epoch's ``metrics.jsonl`` record once it is saved; what it raises
    stops the run and propagates (the search's pruner uses this).
    """
    _, recipe_line = choose_recipe(config)
    config = resolve_recipe(config)
    with _process_group() as (rank, world, local_rank), _process_settings(config):
        device, config = resolve_device(config, local_rank)
        rt = Runtime(device, rank, world, config.amp, bool(config.channels_last))
        run_dir = RunDir(config.output, main=rank == 0)
        if config.resume:
            run_dir.require_checkpoint()  # before the lock creates the directory: a failed resume starts nothing
        progressive_stages(config, config.resolution or _base_spec(config, spec).resolution)  # bad sizes: fail now
        warning = recipe_warning(config)
        if rank == 0 and progress:
            print(recipe_line, flush=True)
            if warning:
                print(f"warning: {warning}", file=sys.stderr, flush=True)
        elif rank == 0 and warning:
            warnings.warn(warning, stacklevel=2)
        with run_dir.lock():
            run, state, net, checkpoint = _setup(config, spec, run_dir, rt, progress and rank == 0)
            _write_start(run, state, checkpoint is not None, recipe_line)
            _train(run, state, net, on_epoch)
            return _finish(run, state)
