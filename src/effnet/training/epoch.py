"""One training epoch and its evaluation, as free functions over a :class:`~effnet.training.state.TrainState`.

:func:`train_epoch` runs the optimizer steps of one epoch (resuming part-way after an interrupt), :func:`end_epoch`
evaluates the model and its EMA and records the epoch. Under DDP every process runs the same functions on its own
shard; sums are all-reduced where the numbers are reported, and a stop request (SIGTERM/SIGINT on any rank,
:class:`StopFlag`) is agreed on by all ranks after each step. The loop over a run's epochs is
:mod:`effnet.training.loop`.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from effnet.errors import TrainingDiverged
from effnet.serving.inference import count_correct
from effnet.serving.preprocess import Batch
from effnet.training.batched import ArrayBatches
from effnet.training.device import Runtime, autocast
from effnet.training.distributed import all_max, all_sum
from effnet.training.loaders import EpochSampler
from effnet.training.progressive import mixup, mixup_targets
from effnet.training.state import TrainState

__all__ = ["StopFlag", "evaluate", "train_epoch", "end_epoch", "divergence"]


class StopFlag:
    """Records SIGTERM/SIGINT instead of dying, so the loop can checkpoint first; restores handlers on exit."""

    def __init__(self) -> None:
        self.signum = 0
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
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

    def agreed(self, rt: Runtime) -> int:
        """The signal any rank received (0: none), the same on every rank."""
        return all_max(self.signum, rt.device, rt.world)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Batch],
    device: torch.device,
    *,
    amp: str = "none",
    channels_last: bool = False,
    world: int = 1,
    bad: set[str] | None = None,
    progress: str | None = None,
) -> dict[str, float]:
    """Loss, top-1 and top-5 (percent) of ``model`` over ``loader`` (summed over ranks when ``world`` > 1).

    Paths of unreadable images are added to ``bad``. ``progress``: the description of a progress bar over the
    batches (None: no bar).
    """
    model.eval()
    rt = Runtime(device, world=world, amp=amp, channels_last=channels_last)
    bad = set() if bad is None else bad
    loss_sum, top1, top5, n = 0.0, 0.0, 0.0, 0.0
    batches = tqdm(loader, desc=progress, unit="batch", leave=False, dynamic_ncols=True, disable=progress is None)
    for batch in batches:
        bad.update(batch.skipped)
        if not len(batch.labels):
            continue
        images, labels = rt.inputs(batch.images), batch.labels.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(images)
        logits = logits.float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        hit1, hit5 = count_correct(logits, labels)
        top1 += hit1
        top5 += hit5
        n += len(labels)
    loss_sum, top1, top5, n = all_sum([loss_sum, top1, top5, n], device, world)
    n = max(n, 1.0)
    return {"loss": loss_sum / n, "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "images": n}


def _freeze_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _step(
    state: TrainState,
    net: nn.Module,
    criterion: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    rt: Runtime,
    grad_clip: float | None,
    mixup_alpha: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch (mixed when ``mixup_alpha`` > 0); returns (loss, logits, the labels that
    train accuracy is counted against: each mixed image's larger share)."""
    targets = hard = labels
    if mixup_alpha > 0:
        images, partner, lam = mixup(images, labels, mixup_alpha)
        hard = labels if lam >= 0.5 else partner
    with autocast(rt.device, rt.amp):
        logits = net(images)
        if mixup_alpha > 0:
            targets = mixup_targets(labels, partner, lam, logits.shape[1])
        loss = criterion(logits.float(), targets)
    if not torch.isfinite(loss):
        raise TrainingDiverged(
            f"training diverged: the training loss became {loss.item()} at epoch {state.epoch + 1} step "
            f"{state.step_in_epoch + 1}; lower --lr or use --grad-clip (epoch {state.epoch + 1} was not checkpointed)"
        )
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    if grad_clip:
        state.scaler.unscale_(state.optimizer)
        nn.utils.clip_grad_norm_(state.model.parameters(), grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.schedule.step()
    if state.ema is not None:
        state.ema.update(state.model)
    return loss, logits, hard


def train_epoch(
    state: TrainState,
    net: nn.Module,
    criterion: nn.Module,
    loader: DataLoader | ArrayBatches,
    rt: Runtime,
    *,
    grad_clip: float | None = None,
    freeze_bn: bool = False,
    stop: StopFlag | None = None,
    on_step: Callable[[dict[str, float]], None] | None = None,
    mixup_alpha: float = 0.0,
) -> int:
    """Train ``net`` (the model, maybe DDP/compile-wrapped) over the rest of ``state``'s current epoch.

    Resumes part-way when ``state.step_in_epoch`` > 0; keeps the epoch's running sums in ``state.partial``.
    Returns 0 at the end of the epoch, or the signal number as soon as ``stop`` records one (``state`` then
    describes the steps done, ready to be checkpointed). ``on_step`` gets the running sums after each step.
    ``mixup_alpha`` > 0 trains on mixed batches (:func:`mixup`; ``criterion`` must accept soft targets).
    """
    net.train()
    if freeze_bn:
        _freeze_bn(net)
    sampler = loader.sampler
    if isinstance(sampler, EpochSampler):
        sampler.set_epoch(state.epoch, state.step_in_epoch * (loader.batch_size or 1))
    p = state.partial or {"loss_sum": 0.0, "correct": 0.0, "seen": 0.0, "time": 0.0}
    state.partial = p
    start = time.perf_counter() - p["time"]
    for batch in loader:
        state.bad.update(batch.skipped)
        if len(batch.labels) > 1:  # BatchNorm in train mode needs 2+ images (a tail left by unreadable files)
            labels = batch.labels.to(rt.device, non_blocking=True)
            loss, logits, hard = _step(
                state, net, criterion, rt.inputs(batch.images), labels, rt, grad_clip, mixup_alpha
            )
            p["loss_sum"] += loss.item() * len(labels)
            p["correct"] += (logits.argmax(1) == hard).sum().item()
            p["seen"] += len(labels)
        state.step_in_epoch += 1
        p["time"] = time.perf_counter() - start
        if on_step is not None:
            on_step(p)
        signum = stop.agreed(rt) if stop is not None else 0
        if signum:
            return signum
    return 0


def divergence(record: dict[str, Any]) -> str | None:
    """What shows that the epoch of ``record`` diverged (its training or validation loss, or its EMA's, is NaN or
    infinite), else None."""
    bad = [
        f"{key.replace('_', ' ')} is {value}"
        for key in ("train_loss", "val_loss", "ema_loss")
        if isinstance(value := record.get(key), float) and not math.isfinite(value)
    ]
    return "; ".join(bad) or None


def end_epoch(
    state: TrainState,
    val_loader: Iterable[Batch],
    rt: Runtime,
    eval_start: float,
    extra: dict[str, Any] | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], bool]:
    """Evaluate the model (and its EMA) after an epoch, append the epoch's record (plus ``extra``'s keys) to
    ``state.history`` and move ``state`` to the next epoch; returns (record, whether validation top-1 improved).
    ``progress``: show a progress bar over the validation batches."""
    p = state.partial
    loss_sum, correct, seen = all_sum([p["loss_sum"], p["correct"], p["seen"]], rt.device, rt.world)
    opts = {"amp": rt.amp, "channels_last": rt.channels_last, "world": rt.world, "bad": state.bad}
    bar = f"validate epoch {state.epoch + 1}" if progress else None
    val = evaluate(state.model, val_loader, rt.device, progress=bar, **opts)
    ema = (
        evaluate(state.ema.module, val_loader, rt.device, progress=bar and f"{bar} (EMA)", **opts)
        if state.ema
        else None
    )
    record = {
        "epoch": state.epoch + 1,
        "step": state.schedule.step_count,
        "train_loss": loss_sum / max(seen, 1),
        "train_top1": 100.0 * correct / max(seen, 1),
        "val_loss": val["loss"],
        "val_top1": val["top1"],
        "val_top5": val["top5"],
        "ema_top1": ema["top1"] if ema else None,
        "ema_top5": ema["top5"] if ema else None,
        "ema_loss": ema["loss"] if ema else None,
        "lr": max(state.schedule.get_last_lr()),
        "images_per_s": seen / max(p["time"], 1e-9),
        "train_time_s": p["time"],
        "epoch_time_s": p["time"] + (time.perf_counter() - eval_start),
        **(extra or {}),
    }
    state.history.append(record)
    improved = val["top1"] > state.best_top1
    state.best_top1 = max(state.best_top1, val["top1"])
    state.epoch += 1
    state.step_in_epoch = 0
    state.partial = {}
    return record, improved
