"""One training run set up: its network, data, loaders, directory and state, and the record of its start.

:class:`Run` is what stays fixed while a run trains; :func:`start_run` builds it (the network from ``--model`` /
``--spec`` / a given spec, scaled and fitted to the data; the data and its loaders; the progressive-learning stages)
together with the :class:`~effnet.training.state.TrainState`, fresh or restored from the checkpoint on
``--resume``. :func:`write_start` records the resolved settings in ``config.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effnet.architectures import get_spec, scale
from effnet.config.progressive import Stage
from effnet.config.training import DEFAULT_MODEL, TrainConfig, peak_lr
from effnet.errors import MissingFile
from effnet.memory import estimate_memory
from effnet.preprocessing import Preprocessing
from effnet.serving.hardware import check_device_memory
from effnet.specs import NetworkSpec
from effnet.training.checkpoint import check_compatible, checkpoint_payload, describe_spec, rank_state
from effnet.training.data import DataBundle, load_datasets
from effnet.training.device import Runtime
from effnet.training.distributed import wrap_ddp
from effnet.training.loaders import Loaders, build_loaders
from effnet.training.progressive import run_stages
from effnet.training.rundir import RunDir
from effnet.training.state import TrainState, build_state, resolved
from effnet.training.weights import weights_conventions, weights_in_chans, weights_network

__all__ = ["Run", "base_spec", "build_spec", "check_run_memory", "start_run", "write_start"]


@dataclass(frozen=True)
class Run:
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
        """Print ``text`` when the run shows its progress (the main process of a run with ``progress``)."""
        if self.progress:
            print(text, flush=True)

    def preprocessing(self) -> Preprocessing:
        """What the exported weights say about the input: the data's validation preprocessing at the net's size."""
        return self.data.preprocessing.replace(input_size=self.spec.resolution)

    def save_checkpoint(self, state: TrainState) -> None:
        """Write the run's checkpoint of ``state`` (a collective call under DDP: every rank makes it)."""
        self.run_dir.save_checkpoint(checkpoint_payload(state.state_dict(), self.spec, self.config, self.rt.world))


def base_spec(config: TrainConfig, spec: NetworkSpec | None) -> NetworkSpec:
    """The network before the run's options: ``spec``, else the ``--spec`` file, else the network ``--weights`` holds
    (:func:`~effnet.training.weights.weights_network`: ``--model``/``--width``/``--depth`` must then describe it),
    else ``--model``; the first two and the last scaled by ``--width``/``--depth``."""
    if spec is None and config.spec_file:
        path = Path(config.spec_file)
        if not path.is_file():
            raise MissingFile(f"--spec {path}: no such file")
        spec = NetworkSpec.from_json(path.read_text(encoding="utf-8"))
    if spec is None and config.weights:
        return weights_network(config.weights, config.model, config.width, config.depth, config.allow_nonfinite)
    base = spec if spec is not None else get_spec(config.model or DEFAULT_MODEL)
    return scale(base, depth=config.depth or 1.0, width=config.width or 1.0)


def build_spec(
    config: TrainConfig,
    spec: NetworkSpec | None = None,
    *,
    num_classes: int,
    in_chans: int,
    resolution: int | None = None,
) -> NetworkSpec:
    """The network a run trains (:func:`base_spec`) at ``resolution`` (default ``--resolution``, else its own),
    with the run's classes, input channels and options (dropout, stochastic depth, BN momentum, stem stride)."""
    return _with_options(config, base_spec(config, spec), num_classes, in_chans, resolution)


def _with_options(
    config: TrainConfig, network: NetworkSpec, num_classes: int, in_chans: int, resolution: int | None = None
) -> NetworkSpec:
    changes: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans}
    for field_name, value in (
        ("resolution", resolution or config.resolution),
        ("dropout", config.dropout),
        ("drop_path_rate", config.drop_path),
        ("bn_momentum", config.bn_momentum),
        ("stem_stride", config.stem_stride),
    ):
        if value is not None:
            changes[field_name] = value
    return network.replace(**changes)


def check_run_memory(config: TrainConfig, spec: NetworkSpec | None, device: torch.device, world: int) -> None:
    """Refuse in one line, before any data or module, a run that cannot fit ``device``'s memory (or ``--max-memory``):
    the lower bound of :func:`effnet.memory.estimate_memory` for this process's batch (weights, gradients, one
    optimizer slot, the EMA, every conv output for backward). ``config`` must be resolved."""
    base = base_spec(config, spec)
    net = build_spec(config, base, num_classes=1, in_chans=config.in_chans or base.in_chans)
    estimate = estimate_memory(
        net,
        max(1, config.batch_size // world),
        training=True,
        state_copies=2 + (resolved(config, "ema_decay") > 0),
        activation_bytes=2 if config.amp in ("bf16", "fp16") else 4,
        recompute=config.grad_checkpointing,
    )
    check_device_memory(estimate, str(device), config.max_memory)


def _load_data(config: TrainConfig, base: NetworkSpec) -> DataBundle:
    in_chans = config.in_chans or (weights_in_chans(config.weights) if config.weights else None)
    return load_datasets(
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


def start_run(
    config: TrainConfig, spec: NetworkSpec | None, run_dir: RunDir, rt: Runtime, progress: bool
) -> tuple[Run, TrainState, nn.Module, dict[str, Any] | None]:
    """The run, its state (restored from the checkpoint on ``--resume``), the module to train (the model, wrapped
    for DDP and ``--compile``) and the checkpoint resumed (None: a fresh run). ``config`` must be resolved."""
    checkpoint = run_dir.start(config.resume)
    base = base_spec(config, spec)  # with --weights alone: the network they hold, in their conventions
    data = _load_data(config, base)
    net_spec = _with_options(config, base, data.num_classes, data.in_chans)
    if config.weights and (spec is not None or config.spec_file):
        net_spec = weights_conventions(net_spec, config.weights, config.allow_nonfinite)
    stages, net_spec = run_stages(config, net_spec)
    loaders = build_loaders(data, config, rt.device, rank=rt.rank, world=rt.world)
    run = Run(config, net_spec, data, loaders, rt, run_dir, progress, stages)
    if checkpoint is not None:
        check_compatible(checkpoint, run_dir.checkpoint, net_spec, config, rt.world)
    state = build_state(
        config,
        net_spec,
        rt.device,
        world=rt.world,
        steps_per_epoch=loaders.steps_per_epoch,
        loader_gen=loaders.generator,
    )
    net = wrap_ddp(state.model, rt.device, rt.world)
    if config.compile:
        net = torch.compile(net)
        run.note("compiling the model with torch.compile at its first training and validation steps")
    torch.manual_seed(config.seed + rt.rank)  # training randomness (dropout, augmentation) differs per rank
    if checkpoint is not None:
        state.load_state_dict(rank_state(checkpoint, rt.rank))
        run_dir.write_metrics(state.history)  # the log says exactly what the checkpoint has done
    return run, state, net, checkpoint


def write_start(run: Run, state: TrainState, resumed: bool, recipe_line: str) -> None:
    """Write ``config.json`` (every resolved setting, the stages, the data) and start or continue the metrics log,
    saying what trains (or where it resumes) when the run shows progress."""
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
