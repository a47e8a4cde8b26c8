"""The trainer: :func:`fit` runs one training run, resumable, on one CPU or many GPUs (DDP via torchrun).

How a run goes, and where each part lives: the settings are resolved (:mod:`effnet.config.training`: recipe;
:mod:`effnet.training.device`: device and speed); the process group is joined under torchrun
(:mod:`effnet.training.distributed`); the run directory is locked (:mod:`effnet.training.rundir`); the network,
data, loaders and training state are built or restored from the checkpoint (:mod:`effnet.training.run`,
:mod:`effnet.training.checkpoint`); the epoch loop trains (:mod:`effnet.training.loop`: each epoch is
:mod:`effnet.training.epoch`, progressive learning is :mod:`effnet.training.progressive`); at the end the
last/EMA weights and the report are written and :class:`TrainResult` is returned.

:func:`fit` is reusable in-process (the scaling search calls it once per trial): it keeps no global state,
restores the signal handlers, thread count and determinism flag it changes, and initialises a process group
only when launched by torchrun (``RANK``/``WORLD_SIZE`` set), destroying it again at the end.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from effnet.config.progressive import progressive_stages
from effnet.config.training import TrainConfig, choose_recipe, recipe_warning, resolve_recipe
from effnet.cost import cost
from effnet.errors import check_type
from effnet.machine import bound_count, usable_cpus
from effnet.report import render_markdown
from effnet.specs import NetworkSpec
from effnet.training.device import Runtime, resolve_device
from effnet.training.distributed import gather, process_group, rank_parameter_diff
from effnet.training.loop import train_epochs
from effnet.training.run import Run, base_spec, check_run_memory, start_run, write_start
from effnet.training.rundir import RunDir
from effnet.training.state import TrainState

__all__ = ["TrainResult", "fit"]


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
    rank_parameter_max_diff: float | None
    history: tuple[dict[str, Any], ...]
    spec: dict[str, Any] | None = None
    """The spec actually trained (``NetworkSpec.to_dict``: classes and input channels fitted to the data)."""


@contextlib.contextmanager
def _process_settings(config: TrainConfig) -> Iterator[None]:
    """Apply ``--threads`` / ``--deterministic`` for the run and restore the previous values afterwards."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    if config.threads:
        cpus = usable_cpus()
        torch.set_num_threads(bound_count("--threads", config.threads, cpus, f"{cpus} usable CPU cores"))
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _result(run: Run, state: TrainState, bad: list[str]) -> TrainResult:
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
        rank_parameter_max_diff=rank_parameter_diff(state.model, run.rt.world),
        history=tuple(h),
        spec=run.spec.to_dict(),
    )


def _finish(run: Run, state: TrainState) -> TrainResult:
    """Last and EMA weights, the summary table and plot; the result."""
    bad = sorted(set().union(*gather(sorted(state.bad), run.rt.world)))
    r = _result(run, state, bad)
    keep = run.config.artifacts  # all | weights | metrics: what the folder keeps (config.json, metrics.jsonl always)
    if keep != "metrics":
        run.run_dir.export(state.model, "last.safetensors", run.preprocessing(), {"epoch": state.epoch})
    if state.ema is not None and keep == "all":
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
        "rank_parameter_max_diff": r.rank_parameter_max_diff,
    }
    if keep == "all":
        run.run_dir.write_report(row, r.history, f"{run.spec.name} on {run.data.name}")
    else:
        run.run_dir.remove_checkpoint()  # the run is over: nothing to resume
    if run.progress:
        if keep == "all":  # the summary.md just written; a search trial's one line is its worker's
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
    .safetensors``, ``summary.{md,csv,json}`` and ``curves.png`` under ``config.output`` (rank 0 only; with
    ``config.artifacts`` ``weights``: only the first two and ``last.safetensors`` remain at the end, with
    ``metrics`` only the first two), which is locked for the run (a second run into it raises
    :class:`~effnet.training.rundir.RunDirLocked` at once).
    Raises :class:`~effnet.training.loop.TrainingInterrupted` after SIGTERM/SIGINT, once a resumable checkpoint is
    written. ``on_epoch(record)`` is called with each epoch's ``metrics.jsonl`` record once it is saved; what it
    raises stops the run and propagates (the search's pruner uses this).
    """
    check_type("config", config, TrainConfig, "a TrainConfig (TrainConfig.from_dict(d) reads a dict)")
    check_type("spec", spec, (NetworkSpec, type(None)), "a NetworkSpec or None")
    _, recipe_line = choose_recipe(config)
    config = resolve_recipe(config)
    with process_group() as (rank, world, local_rank), _process_settings(config):
        device, config = resolve_device(config, local_rank)
        rt = Runtime(device, rank, world, config.amp, bool(config.channels_last))
        run_dir = RunDir(config.output, main=rank == 0, overwrite=config.overwrite)
        if config.resume:
            run_dir.require_checkpoint()  # before the lock creates the directory: a failed resume starts nothing
        progressive_stages(config, config.resolution or base_spec(config, spec).resolution)  # bad sizes: fail now
        check_run_memory(config, spec, device, world)  # a network or batch that cannot fit: fail now
        warning = recipe_warning(config)
        if rank == 0 and progress:
            print(recipe_line, flush=True)
            if warning:
                print(f"warning: {warning}", file=sys.stderr, flush=True)
        elif rank == 0 and warning:
            warnings.warn(warning, stacklevel=2)
        with run_dir.lock():
            run, state, net, checkpoint = start_run(config, spec, run_dir, rt, progress and rank == 0)
            write_start(run, state, checkpoint is not None, recipe_line)
            train_epochs(run, state, net, on_epoch)
            return _finish(run, state)
