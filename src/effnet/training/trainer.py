"""The trainer: one run of a recipe on a dataset, resumable, on one CPU or many GPUs (DDP via torchrun).

:func:`fit` is reusable in-process (the scaling search calls it once per trial): it keeps no global state,
restores the signal handlers, thread count and determinism flag it changes, and initialises a process group
only when launched by torchrun (``RANK``/``WORLD_SIZE`` set), destroying it again at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from effnet.cost import cost
from effnet.io import append_line, atomic_write_json, atomic_write_text
from effnet.models.efficientnet import EfficientNet
from effnet.report import Panel, Series, plot_panels, render_markdown, write_table
from effnet.serving.preprocess import Preprocessing
from effnet.specs import NetworkSpec, get_spec, scale
from effnet.training.checkpoint import (
    CHECKPOINT_NAME,
    capture_rng,
    describe_spec,
    export_weights,
    load_checkpoint,
    load_initial_weights,
    restore_rng,
    save_checkpoint,
    weights_in_chans,
)
from effnet.training.data import DataBundle, collate_skip, load_datasets
from effnet.training.optim import LRSchedule, ModelEMA, build_optimizer, param_groups
from effnet.training.recipe import RECIPES, SCHEDULE_FIELDS, TrainConfig, peak_lr, resolve_recipe, resolve_speed

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


def build_spec(config: TrainConfig, spec: NetworkSpec | None = None, *, num_classes: int, in_chans: int,
               resolution: int | None = None) -> NetworkSpec:  # fmt: skip
    """The network a run trains: ``spec`` / ``--spec`` file / ``--model``, scaled and with the run's options."""
    base = _base_spec(config, spec)
    scaled = scale(base, depth=config.depth, width=config.width, resolution=resolution or config.resolution)
    changes: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans}
    for field_name, value in (("dropout", config.dropout), ("drop_path_rate", config.drop_path),
                              ("bn_momentum", config.bn_momentum), ("stem_stride", config.stem_stride)):  # fmt: skip
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


class _StopFlag:
    """Records SIGTERM/SIGINT instead of dying, so the loop can checkpoint first; restores handlers on exit."""

    def __init__(self) -> None:
        self.signum = 0
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


class _EpochSampler(Sampler[int]):
    """A ``DistributedSampler`` whose epoch can be entered part-way (skipping batches already trained on)."""

    def __init__(self, base: DistributedSampler) -> None:
        self.base = base
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.base.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.base)[self.skip :])

    def __len__(self) -> int:
        return len(self.base) - self.skip


class _Shard(Sampler[int]):
    """Every ``world``-th index from ``rank``: an exact split of the validation set (no padding)."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _all_sum(values: list[float], device: torch.device, world: int) -> list[float]:
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, *, amp: str = "none",
             channels_last: bool = False, world: int = 1, bad: set[str] | None = None) -> dict[str, float]:  # fmt: skip
    """Loss, top-1 and top-5 (percent) of ``model`` over ``loader`` (summed over ranks when ``world`` > 1).

    Paths of unreadable images are added to ``bad``.
    """
    model.eval()
    bad = set() if bad is None else bad
    loss_sum, top1, top5, n = 0.0, 0.0, 0.0, 0.0
    for batch in loader:
        bad.update(batch.skipped)
        if not len(batch.labels):
            continue
        images = batch.images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = batch.labels.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(images)
        logits = logits.float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        k = min(5, logits.shape[1])
        hits = logits.topk(k, 1).indices.eq(labels[:, None])
        top1 += hits[:, 0].sum().item()
        top5 += hits.any(1).sum().item()
        n += len(labels)
    loss_sum, top1, top5, n = _all_sum([loss_sum, top1, top5, n], device, world)
    n = max(n, 1.0)
    return {"loss": loss_sum / n, "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "images": n}


def _freeze_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _select_device(config: TrainConfig, local_rank: int) -> torch.device:
    if config.device != "auto":
        return torch.device(config.device)
    return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")


class _Run:
    """State and steps of one :func:`fit` call (split out only to keep each method short)."""

    def __init__(self, config: TrainConfig, spec: NetworkSpec | None, progress: bool, rank: int, world: int,
                 local_rank: int) -> None:  # fmt: skip
        self.config, self.rank, self.world = config, rank, world
        self.main = rank == 0
        self.progress = progress and self.main
        self.out = Path(config.output)
        self.ckpt_path = self.out / CHECKPOINT_NAME
        self.device = _select_device(config, local_rank)
        bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.config = config = resolve_speed(config, self.device.type, bf16)
        if config.batch_size % world:
            raise ValueError(f"--batch-size {config.batch_size} (global) is not divisible by {world} processes")
        self.local_batch = config.batch_size // world
        self.checkpoint = self._find_checkpoint()
        base = _base_spec(config, spec)
        self.data = self._load_data(base)
        self.spec = build_spec(config, base, num_classes=self.data.num_classes, in_chans=self.data.in_chans)
        self._build()

    # ---------------------------------------------------------------- setup
    def _find_checkpoint(self) -> dict[str, Any] | None:
        if self.config.resume:
            if not self.ckpt_path.is_file():
                raise FileNotFoundError(f"--resume: no checkpoint {self.ckpt_path}; nothing to resume, nothing started")
            return load_checkpoint(self.ckpt_path)
        if self.ckpt_path.is_file():
            raise ValueError(f"--output {self.out} already holds a run ({CHECKPOINT_NAME}); pass --resume to continue "
                                  "it or choose another --output")  # fmt: skip
        return None

    def _load_data(self, base: NetworkSpec) -> DataBundle:
        c = self.config
        in_chans = c.in_chans or (weights_in_chans(c.weights) if c.weights else None)
        return load_datasets(
            c.data, resolution=c.resolution or base.resolution, in_chans=in_chans, data_root=c.data_root,
            train_limit=c.train_limit, val_limit=c.val_limit, limit_seed=c.limit_seed, augment=c.augmentation(),
            crop_pct=c.crop_pct, download=c.download,
        )  # fmt: skip

    def _build(self) -> None:
        c, device = self.config, self.device
        if self.checkpoint is not None:
            self._check_compatible(self.checkpoint)
        torch.manual_seed(c.seed)
        model = EfficientNet(self.spec)
        if c.weights:
            load_initial_weights(model, c.weights, bool(c.new_head))
        if c.sync_bn and self.world > 1:
            if device.type == "cpu":
                raise ValueError("--sync-bn needs GPUs: PyTorch's SyncBatchNorm does not run on CPU")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.set_grad_checkpointing(c.grad_checkpointing)
        model.set_lean_activations(c.lean_activations)
        model.to(device)
        if c.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.ema = ModelEMA(model, c.ema_decay, c.ema_warmup) if c.ema_decay else None
        train_module: nn.Module = model
        if self.world > 1:
            train_module = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self.train_module = torch.compile(train_module) if c.compile else train_module
        groups = param_groups(model, peak_lr(c), c.weight_decay or 0.0, c.body_lr_scale or 1.0)
        self.optimizer = build_optimizer(c.opt or "rmsprop_tf", groups, peak_lr(c), momentum=c.momentum or 0.0,
                                         rmsprop_decay=c.rmsprop_decay or 0.9, eps=c.opt_eps)  # fmt: skip
        self.scaler = torch.amp.GradScaler(device.type, enabled=c.amp == "fp16")
        self.criterion = nn.CrossEntropyLoss(label_smoothing=c.label_smoothing or 0.0)
        self.loader_gen = torch.Generator().manual_seed(c.seed + self.rank)
        base_sampler = DistributedSampler(self.data.train, num_replicas=self.world, rank=self.rank, shuffle=True,
                                          seed=c.seed, drop_last=True)  # fmt: skip
        self.steps_per_epoch = len(base_sampler) // self.local_batch
        if self.steps_per_epoch < 1:
            raise ValueError(f"the training set ({len(self.data.train)} images) is smaller than --batch-size "
                             f"{c.batch_size}; lower --batch-size or raise --train-limit")  # fmt: skip
        self.sampler = _EpochSampler(base_sampler)
        workers = c.workers if c.workers is not None else (min(8, os.cpu_count() or 1) if device.type == "cuda" else 0)
        pin = c.pin_memory if c.pin_memory is not None else device.type == "cuda"
        common = {"num_workers": workers, "pin_memory": pin, "collate_fn": collate_skip,
                  "persistent_workers": False}  # fmt: skip
        self.train_loader = DataLoader(self.data.train, batch_size=self.local_batch, sampler=self.sampler,
                                       drop_last=True, generator=self.loader_gen, **common)  # fmt: skip
        self.val_loader = DataLoader(self.data.val, batch_size=max(self.local_batch, 64),
                                     sampler=_Shard(len(self.data.val), self.rank, self.world), **common)  # fmt: skip
        self.schedule = LRSchedule(self.optimizer, c.schedule or "step", self.steps_per_epoch, epochs=c.epochs,
                                   warmup_epochs=c.warmup_epochs or 0.0, decay_rate=c.decay_rate or 0.97,
                                   decay_epochs=c.decay_epochs or 2.4, min_lr_ratio=c.min_lr_ratio)  # fmt: skip
        self.epoch, self.step_in_epoch, self.history = 0, 0, []
        self.partial: dict[str, float] = {}
        self.best_top1, self.bad = -1.0, set()
        torch.manual_seed(c.seed + self.rank)  # training randomness (dropout, augmentation) differs per rank
        if self.checkpoint is not None:
            self._restore(self.checkpoint)

    def _check_compatible(self, state: dict[str, Any]) -> None:
        saved_spec = NetworkSpec.from_json(state["spec"])
        if saved_spec != self.spec:
            raise ValueError(
                f"checkpoint {self.ckpt_path} was written for {describe_spec(saved_spec)}, not "
                f"{describe_spec(self.spec)}; use the same model settings or another --output"
            )
        saved = state["config"]
        now = self.config.to_dict()
        diffs = [f"{k}={saved.get(k)!r}->{now[k]!r}" for k in SCHEDULE_FIELDS if saved.get(k) != now[k]]
        if diffs:
            raise ValueError(f"--resume: settings differ from checkpoint {self.ckpt_path} ({', '.join(diffs[:4])});"
                             " the run would not reproduce its schedule")  # fmt: skip
        if state["world"] != self.world:
            raise ValueError(f"--resume: checkpoint was written by {state['world']} processes, this run has "
                             f"{self.world}")  # fmt: skip

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"][self.rank], self.loader_gen)
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        self.history = list(state["history"])
        self.partial = dict(state["partial"])
        self.best_top1, self.bad = float(state["best_top1"]), set(state["bad"][self.rank])
        if self.main:  # the log must say exactly what the checkpoint has done: rewrite it from the history
            atomic_write_text(self.out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))

    # ---------------------------------------------------------------- checkpoints
    def _save(self) -> None:
        mine = (capture_rng(self.loader_gen), sorted(self.bad))
        states = [mine]
        if self.world > 1:
            states = [None] * self.world  # type: ignore[list-item]
            dist.all_gather_object(states, mine)
        if not self.main:
            return
        save_checkpoint(self.ckpt_path, {
            "format": "effnet-train-1", "spec": self.spec.to_json(), "config": self.config.to_dict(),
            "world": self.world, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "model": self.model.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": [x[0] for x in states], "bad": [x[1] for x in states],
            "history": self.history, "partial": self.partial, "best_top1": self.best_top1,
        })  # fmt: skip

    def _preprocessing(self) -> Preprocessing:
        """The data's preprocessing (the one validation uses) at the network's input size, for the weights."""
        return self.data.preprocessing.replace(input_size=self.spec.resolution)

    # ---------------------------------------------------------------- loop
    def _stop_requested(self, flag: _StopFlag) -> int:
        signum = flag.signum
        if self.world > 1:
            t = torch.tensor([signum], device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            signum = int(t.item())
        return signum

    def _train_epoch(self, flag: _StopFlag, bar: Any) -> None:
        c, device = self.config, self.device
        self.train_module.train()
        if c.freeze_bn:
            _freeze_bn(self.train_module)
        self.sampler.set_epoch(self.epoch, self.step_in_epoch * self.local_batch)
        p = self.partial or {"loss_sum": 0.0, "correct": 0.0, "seen": 0.0, "time": 0.0}
        start = time.perf_counter() - p["time"]
        for batch in self.train_loader:
            self.bad.update(batch.skipped)
            if len(batch.labels) > 1:  # BatchNorm in train mode needs 2+ images (a tail left by unreadable files)
                images = batch.images.to(device, non_blocking=True)
                if c.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                labels = batch.labels.to(device, non_blocking=True)
                with _autocast(device, c.amp):
                    logits = self.train_module(images)
                    loss = self.criterion(logits.float(), labels)
                if not torch.isfinite(loss):
                    raise ValueError(f"training loss became {loss.item()} at epoch {self.epoch + 1} step "
                                             f"{self.step_in_epoch + 1}; lower --lr or use --grad-clip")  # fmt: skip
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if c.grad_clip:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.schedule.step()
                if self.ema is not None:
                    self.ema.update(self.model)
                p["loss_sum"] += loss.item() * len(labels)
                p["correct"] += (logits.argmax(1) == labels).sum().item()
                p["seen"] += len(labels)
            self.step_in_epoch += 1
            p["time"] = time.perf_counter() - start
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{p['loss_sum'] / max(p['seen'], 1):.3f}",
                    lr=f"{max(self.schedule.get_last_lr()):.2e}",
                    img_s=f"{p['seen'] * self.world / max(p['time'], 1e-9):.0f}",
                    refresh=False,
                )
            signum = self._stop_requested(flag)
            if signum:
                self.partial = p
                self._save()
                raise TrainingInterrupted(signum, str(self.ckpt_path))
        self.partial = p

    def _end_epoch(self, writer: Any) -> None:
        c, p = self.config, self.partial
        loss_sum, correct, seen = _all_sum([p["loss_sum"], p["correct"], p["seen"]], self.device, self.world)
        train_time = p["time"]
        opts = {"amp": c.amp, "channels_last": c.channels_last, "world": self.world, "bad": self.bad}
        val = evaluate(self.model, self.val_loader, self.device, **opts)
        ema = evaluate(self.ema.module, self.val_loader, self.device, **opts) if self.ema else None
        record = {
            "epoch": self.epoch + 1, "step": self.schedule.step_count, "train_loss": loss_sum / max(seen, 1),
            "train_top1": 100.0 * correct / max(seen, 1), "val_loss": val["loss"], "val_top1": val["top1"],
            "val_top5": val["top5"], "ema_top1": ema["top1"] if ema else None, "ema_top5": ema["top5"] if ema else None,
            "lr": max(self.schedule.get_last_lr()), "images_per_s": seen / max(train_time, 1e-9),
            "train_time_s": train_time, "epoch_time_s": train_time + (time.perf_counter() - self._eval_start),
        }  # fmt: skip
        self.history.append(record)
        improved = val["top1"] > self.best_top1
        self.best_top1 = max(self.best_top1, val["top1"])
        self.epoch += 1
        self.step_in_epoch = 0
        self.partial = {}
        self._save()
        if self.main:
            append_line(self.out / "metrics.jsonl", json.dumps(record))
            if improved:
                export_weights(self.model, self.out / "best.safetensors", self._preprocessing(), {"epoch": self.epoch})
            if writer is not None:
                for key, value in record.items():
                    if isinstance(value, float):
                        writer.add_scalar(key, value, record["epoch"])

    def run(self) -> TrainResult:
        c = self.config
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            resolved = {**c.to_dict(), "peak_lr": peak_lr(c), "world_size": self.world,
                        "steps_per_epoch": self.steps_per_epoch, "spec": self.spec.to_dict(),
                        "data_info": {"train_images": len(self.data.train), "val_images": len(self.data.val),
                                      "source": self.data.source, **self._preprocessing().to_dict()}}  # fmt: skip
            atomic_write_json(self.out / "config.json", resolved)
            if self.checkpoint is None:
                atomic_write_text(self.out / "metrics.jsonl", "")
                sizes = f"{len(self.data.train)} train / {len(self.data.val)} val images"
                self._note(f"training {describe_spec(self.spec)} on {self.data.name} ({sizes}) -> {self.out}")
            else:
                self._note(f"resuming {self.out} at epoch {self.epoch + 1} step {self.step_in_epoch}")
        writer = self._tensorboard()
        try:
            with _StopFlag() as flag:
                while self.epoch < c.epochs:
                    bar = self._bar()
                    try:
                        self._train_epoch(flag, bar)
                    finally:
                        if bar is not None:
                            bar.close()
                    self._eval_start = time.perf_counter()
                    self._end_epoch(writer)
                    self._note_epoch(self.history[-1])
        finally:
            if writer is not None:
                writer.close()
        return self._finish()

    # ---------------------------------------------------------------- output
    def _note(self, text: str) -> None:
        if self.progress:
            print(text, flush=True)

    def _note_epoch(self, r: dict[str, Any]) -> None:
        ema = f" ema {r['ema_top1']:.2f}" if r["ema_top1"] is not None else ""
        self._note(f"epoch {r['epoch']}/{self.config.epochs}: loss {r['train_loss']:.4f} top-1 {r['val_top1']:.2f} "
                   f"top-5 {r['val_top5']:.2f}{ema} lr {r['lr']:.3e} {r['images_per_s']:.0f} img/s")  # fmt: skip

    def _bar(self) -> Any:
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, desc=f"epoch {self.epoch + 1}",
                    unit="step", leave=False, dynamic_ncols=True)  # fmt: skip

    def _tensorboard(self) -> Any:
        if not (self.config.tensorboard and self.main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError("--tensorboard needs the tensorboard package (pip install tensorboard)") from None
        return SummaryWriter(str(self.out / "tensorboard"))

    def _all_bad(self) -> list[str]:
        every = [sorted(self.bad)]
        if self.world > 1:
            every = [None] * self.world  # type: ignore[list-item]
            dist.all_gather_object(every, sorted(self.bad))
        return sorted(set().union(*every))

    def _rank_weight_diff(self) -> float | None:
        if self.world == 1:
            return None
        flat = torch.cat([p.detach().float().flatten() for p in self.model.state_dict().values()])
        hi, lo = flat.clone(), flat.clone()
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        return float((hi - lo).max().item())

    def _finish(self) -> TrainResult:
        h = self.history
        last = h[-1]
        emas = [r["ema_top1"] for r in h if r["ema_top1"] is not None]
        best = max(h, key=lambda r: r["val_top1"])
        seen_time = sum(r["train_time_s"] for r in h)
        ips = sum(r["images_per_s"] * r["train_time_s"] for r in h) / max(seen_time, 1e-9)
        c_cost = cost(self.spec)
        self.bad_paths = self._all_bad()
        result = TrainResult(
            best_top1=best["val_top1"], best_epoch=best["epoch"], last_top1=last["val_top1"],
            last_top5=last["val_top5"], ema_top1=emas[-1] if emas else None, best_ema_top1=max(emas) if emas else None,
            epochs=len(h), wall_time_s=sum(r["epoch_time_s"] for r in h), images_per_s=ips,
            output_dir=str(self.out), params=c_cost.params, macs=c_cost.macs, skipped_images=len(self.bad_paths),
            rank_weight_max_diff=self._rank_weight_diff(), history=tuple(h), spec=self.spec.to_dict(),
        )  # fmt: skip
        if self.main:
            export_weights(self.model, self.out / "last.safetensors", self._preprocessing(), {"epoch": self.epoch})
            if self.ema is not None:
                meta = {"epoch": self.epoch, "ema_decay": self.ema.decay}
                export_weights(self.ema.module, self.out / "ema.safetensors", self._preprocessing(), meta)
            self._report(result)
        return result

    def _report(self, r: TrainResult) -> None:
        row = {"model": self.spec.name, "data": self.data.name, "epochs": r.epochs, "best_top1": r.best_top1,
               "best_epoch": r.best_epoch, "last_top1": r.last_top1, "last_top5": r.last_top5,
               "ema_top1": r.ema_top1, "best_ema_top1": r.best_ema_top1, "wall_time_s": r.wall_time_s,
               "images_per_s": r.images_per_s, "params": r.params, "macs": r.macs,
               "skipped_images": r.skipped_images, "world_size": self.world,
               "rank_weight_max_diff": r.rank_weight_max_diff}  # fmt: skip
        write_table([row], self.out / "summary", title=f"effnet train: {self.spec.name} on {self.data.name}")
        epochs = [x["epoch"] for x in r.history]
        panels = [
            Panel("loss", [Series("train (label-smoothed)", epochs, [x["train_loss"] for x in r.history]),
                           Series("val", epochs, [x["val_loss"] for x in r.history])], "epoch", "cross-entropy"),
            Panel("accuracy", [Series("train top-1", epochs, [x["train_top1"] for x in r.history]),
                               Series("val top-1", epochs, [x["val_top1"] for x in r.history]),
                               Series("val top-5", epochs, [x["val_top5"] for x in r.history]),
                               Series("EMA top-1", epochs, [x["ema_top1"] for x in r.history])], "epoch", "%"),
        ]  # fmt: skip
        plot_panels(panels, self.out / "curves.png", title=f"{self.spec.name} on {self.data.name}")
        if self.progress:
            print(render_markdown([row], [k for k, v in row.items() if v is not None]), end="")
            if r.skipped_images:
                shown = ", ".join(self.bad_paths[:3]) + (" ..." if len(self.bad_paths) > 3 else "")
                print(f"skipped {r.skipped_images} unreadable image(s): {shown}")


def fit(config: TrainConfig, spec: NetworkSpec | None = None, progress: bool = True) -> TrainResult:
    """Train (or resume, with ``config.resume``) one run and return its results; see :class:`TrainConfig`.

    ``spec`` overrides ``config.model``/``config.spec_file`` as the network to train (``config.width``/``depth``
    still multiply it). Writes ``config.json``, ``metrics.jsonl``, ``checkpoint.pt``, ``best/last/ema
    .safetensors``, ``summary.{md,csv,json}`` and ``curves.png`` under ``config.output`` (rank 0 only).
    Raises :class:`TrainingInterrupted` after SIGTERM/SIGINT, once a resumable checkpoint is written.
    """
    config = resolve_recipe(config)
    with _process_group() as (rank, world, local_rank), _process_settings(config):
        return _Run(config, spec, progress, rank, world, local_rank).run()

