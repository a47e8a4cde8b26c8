"""The training state: everything a run changes as it trains, with ``state_dict()`` / ``load_state_dict()``.

A checkpoint is this state plus what identifies the run (spec, config, number of processes); resuming from it
continues bit-identically because every source of randomness (Python, NumPy, torch CPU/CUDA, the DataLoader's
generator) is part of the state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from effnet.config.training import TrainConfig, peak_lr
from effnet.errors import InvalidValue
from effnet.models.efficientnet import EfficientNet
from effnet.specs import NetworkSpec
from effnet.training.checkpoint import capture_rng, restore_rng
from effnet.training.optim import LRSchedule, ModelEMA, build_optimizer, param_groups
from effnet.training.weights import load_initial_weights

__all__ = ["TrainState", "build_state", "resolved"]


@dataclass(eq=False)
class TrainState:
    """Model, EMA, optimizer, LR schedule, grad scaler, DataLoader generator and progress of one process."""

    model: nn.Module
    ema: ModelEMA | None
    optimizer: Optimizer
    schedule: LRSchedule
    scaler: torch.amp.GradScaler
    loader_gen: torch.Generator
    epoch: int = 0
    """Epochs completed."""
    step_in_epoch: int = 0
    """Steps done in the current epoch (non-zero only in a checkpoint written on SIGTERM/SIGINT)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """One record per completed epoch (the rows of ``metrics.jsonl``)."""
    partial: dict[str, float] = field(default_factory=dict)
    """Running sums of the current epoch (loss_sum, correct, seen, time)."""
    best_top1: float = -1.0
    bad: set[str] = field(default_factory=set)
    """Paths of unreadable images this process skipped."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this process's run; ``rng`` and ``bad`` are this process's own."""
        return {
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng(self.loader_gen),
            "bad": sorted(self.bad),
            "history": self.history,
            "partial": self.partial,
            "best_top1": self.best_top1,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (including every RNG state)."""
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"], self.loader_gen)
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        self.history = list(state["history"])
        self.partial = dict(state["partial"])
        self.best_top1, self.bad = float(state["best_top1"]), set(state["bad"])


def resolved(config: TrainConfig, name: str) -> Any:
    """``config``'s recipe field ``name``, which :func:`~effnet.config.training.resolve_recipe` always fills.

    None here is a bug (a config that skipped ``resolve_recipe``), raised as a ``RuntimeError`` naming the field
    rather than replaced by a default that could differ from the recipe's.
    """
    value = getattr(config, name)
    if value is None:
        raise RuntimeError(
            f"{name} is unset: the training config was not resolved (effnet.config.training.resolve_recipe)"
        )
    return value


def _build_model(config: TrainConfig, spec: NetworkSpec, device: torch.device, world: int) -> nn.Module:
    torch.manual_seed(config.seed)
    model = EfficientNet(spec)
    if config.weights:
        load_initial_weights(model, config.weights, resolved(config, "new_head"), config.allow_nonfinite)
    if config.sync_bn and world > 1:
        if device.type == "cpu":
            raise InvalidValue("--sync-bn needs GPUs: PyTorch's SyncBatchNorm does not run on CPU")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.set_grad_checkpointing(config.grad_checkpointing)
    model.set_lean_activations(config.lean_activations)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def build_state(
    config: TrainConfig,
    spec: NetworkSpec,
    device: torch.device,
    *,
    world: int,
    steps_per_epoch: int,
    loader_gen: torch.Generator,
) -> TrainState:
    """A fresh state for a ``config`` resolved by :func:`~effnet.config.training.resolve_recipe` (a recipe field
    left None is a ``RuntimeError``, see :func:`resolved`): the model (seeded by ``config.seed``, ``--weights``
    loaded), its EMA, optimizer, schedule and grad scaler."""
    c = config
    model = _build_model(c, spec, device, world)
    ema_decay = resolved(c, "ema_decay")
    ema = ModelEMA(model, ema_decay, c.ema_warmup) if ema_decay else None
    groups = param_groups(model, peak_lr(c), resolved(c, "weight_decay"), resolved(c, "body_lr_scale"))
    optimizer = build_optimizer(
        resolved(c, "opt"),
        groups,
        peak_lr(c),
        momentum=resolved(c, "momentum"),
        rmsprop_decay=resolved(c, "rmsprop_decay"),
        eps=c.opt_eps,  # None: the optimizer's own epsilon (the finetune recipe's choice)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=c.amp == "fp16")
    schedule = LRSchedule(
        optimizer,
        resolved(c, "schedule"),
        steps_per_epoch,
        epochs=c.epochs,
        warmup_epochs=resolved(c, "warmup_epochs"),
        decay_rate=resolved(c, "decay_rate"),
        decay_epochs=resolved(c, "decay_epochs"),
        min_lr_ratio=c.min_lr_ratio,
    )
    return TrainState(model, ema, optimizer, schedule, scaler, loader_gen)
