"""The epoch loop of a run: every epoch trains, checkpoints, evaluates, logs and keeps the best weights.

:func:`train_epochs` runs the epochs a run has left (entering each progressive-learning stage as it starts); each
epoch is :func:`~effnet.training.epoch.train_epoch` (with a progress bar), then the checkpoint,
:func:`~effnet.training.epoch.end_epoch`'s evaluation and record, the ``metrics.jsonl`` line, ``best.safetensors``
when validation top-1 improved, and the optional TensorBoard scalars. A SIGTERM/SIGINT stops it after the current
step with a resumable checkpoint (:class:`TrainingInterrupted`). An epoch whose loss is NaN or infinite stops the
run with :class:`~effnet.errors.TrainingDiverged` (its record, marked ``"diverged"``, is the last line of
``metrics.jsonl``; it is not checkpointed).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from effnet.config.progressive import Stage, stage_for_epoch
from effnet.errors import TrainingDiverged, Unsupported
from effnet.training.batched import ArrayBatches
from effnet.training.epoch import StopFlag, divergence, end_epoch, train_epoch
from effnet.training.progressive import describe_stage, enter_stage, stage_record
from effnet.training.run import Run
from effnet.training.state import TrainState, resolved

__all__ = ["TrainingInterrupted", "train_epochs"]


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by :func:`~effnet.training.trainer.fit` after SIGTERM/SIGINT once the in-epoch checkpoint is safely
    written."""

    def __init__(self, signum: int, checkpoint: str) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; checkpoint {checkpoint}; rerun with --resume")
        self.signum = signum
        self.checkpoint = checkpoint


def _bar(run: Run, state: TrainState) -> Any:
    if not run.progress:
        return None
    return tqdm(
        total=run.loaders.steps_per_epoch,
        initial=state.step_in_epoch,
        desc=f"epoch {state.epoch + 1}",
        unit="step",
        leave=False,
        dynamic_ncols=True,
    )


def _tensorboard(run: Run) -> Any:
    if not (run.config.tensorboard and run.run_dir.main):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard is an optional package
    except ImportError:
        raise Unsupported("--tensorboard needs the tensorboard package (pip install tensorboard)") from None
    return SummaryWriter(str(run.run_dir.path / "tensorboard"))


def _one_epoch(
    run: Run,
    state: TrainState,
    net: nn.Module,
    criterion: nn.Module,
    stop: StopFlag,
    loader: DataLoader | ArrayBatches,
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
        run.save_checkpoint(state)
        raise TrainingInterrupted(signum, str(run.run_dir.checkpoint))
    extra: dict[str, Any] = {"resolution": stage.resolution if stage else run.spec.resolution}
    if stage is not None:
        extra.update(stage_record(stage, run.stages))
    record, improved = end_epoch(state, run.loaders.val, run.rt, time.perf_counter(), extra, progress=run.progress)
    diverged = divergence(record)
    if diverged:  # neither checkpointed nor exported: --resume restarts from the last finite epoch
        run.run_dir.append_metrics({**record, "diverged": True})
        raise TrainingDiverged(
            f"training diverged at epoch {record['epoch']}: {diverged}; lower --lr or use --grad-clip "
            f"(epoch {record['epoch']} was not checkpointed)"
        )
    run.save_checkpoint(state)
    run.run_dir.append_metrics(record)
    if improved and run.config.artifacts == "all":
        run.run_dir.export(state.model, "best.safetensors", run.preprocessing(), {"epoch": state.epoch})
    ema = f" ema {record['ema_top1']:.2f}" if record["ema_top1"] is not None else ""
    run.note(
        f"epoch {record['epoch']}/{run.config.epochs}: loss {record['train_loss']:.4f} top-1 "
        f"{record['val_top1']:.2f} top-5 {record['val_top5']:.2f}{ema} lr {record['lr']:.3e} "
        f"{record['images_per_s']:.0f} img/s"
    )


def train_epochs(
    run: Run, state: TrainState, net: nn.Module, on_epoch: Callable[[dict[str, Any]], None] | None = None
) -> None:
    """Train ``net`` (``state.model``, maybe DDP/compile-wrapped) until ``run.config.epochs`` are done, calling
    ``on_epoch(record)`` after each epoch is saved; raises :class:`TrainingInterrupted` on SIGTERM/SIGINT."""
    criterion = nn.CrossEntropyLoss(label_smoothing=resolved(run.config, "label_smoothing"))
    writer = _tensorboard(run)
    loader, current = run.loaders.train, None
    try:
        with StopFlag() as stop:
            while state.epoch < run.config.epochs:
                stage = stage_for_epoch(run.stages, state.epoch + 1)
                if stage is not None and stage != current:
                    loader = enter_stage(stage, state.model, run.loaders, run.data, run.config)
                    current = stage
                    run.note(describe_stage(stage, run.stages))
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
