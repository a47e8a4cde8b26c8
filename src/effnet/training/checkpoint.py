"""Training checkpoints: what one holds, writing and reading it, the RNG states in it, and whether a run may resume it.

A checkpoint is the :class:`~effnet.training.state.TrainState` of a run (with the RNG states and skipped images of
every rank) plus what identifies the run: its spec, config and process count (:func:`checkpoint_payload`). It is
written atomically with ``torch.save`` and read with ``torch.load(weights_only=True)``: it holds only tensors and
plain Python values (numpy's RNG state is stored as a tensor). A run resumes it only with the same network,
schedule-relevant settings and process count (:func:`check_compatible`).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effnet.config.training import SCHEDULE_FIELDS, TrainConfig
from effnet.errors import BadFile, InvalidValue
from effnet.io import atomic_path
from effnet.models.weight_files import torch_load_safely
from effnet.specs import NetworkSpec
from effnet.training.distributed import gather

__all__ = [
    "CHECKPOINT_NAME",
    "CHECKPOINT_FORMAT",
    "capture_rng",
    "restore_rng",
    "save_checkpoint",
    "load_checkpoint",
    "describe_spec",
    "checkpoint_payload",
    "rank_state",
    "check_compatible",
]

CHECKPOINT_NAME = "checkpoint.pt"
"""File name of the checkpoint in a run directory."""
CHECKPOINT_FORMAT = "effnet-train-1"
"""The ``format`` entry of a training checkpoint."""


def capture_rng(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Python, numpy, torch (CPU and CUDA) and DataLoader-generator RNG states, loadable with weights_only."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    return state


def restore_rng(state: dict[str, Any], loader_generator: torch.Generator | None = None) -> None:
    """Inverse of :func:`capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if loader_generator is not None and "loader" in state:
        loader_generator.set_state(state["loader"])


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """``torch.save`` ``state`` atomically (a kill leaves the previous checkpoint intact)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain values only).

    A missing, truncated, foreign or pickled-object file is one line naming it
    (:func:`effnet.models.weight_files.torch_load_safely`).
    """
    state = torch_load_safely(path, "checkpoint")
    if not isinstance(state, dict) or "model" not in state or "spec" not in state:
        raise BadFile(f"{path} is not an effnet training checkpoint (no model/spec entries)")
    return state


def describe_spec(spec: NetworkSpec) -> str:
    """A short human description of a spec for error messages."""
    return (
        f"{spec.name} (width {spec.width:g}, depth {spec.depth:g}, {spec.resolution}px, {spec.in_chans} input "
        f"channels, {spec.num_classes} classes)"
    )


def checkpoint_payload(local: dict[str, Any], spec: NetworkSpec, config: TrainConfig, world: int) -> dict[str, Any]:
    """The checkpoint of a run from this process's ``TrainState.state_dict()`` (``local``): the RNG states and
    skipped images of every rank, plus spec, config and process count. Under DDP every rank must call it."""
    parts = gather((local["rng"], local["bad"]), world)
    return {
        "format": CHECKPOINT_FORMAT,
        "spec": spec.to_json(),
        "config": config.to_dict(),
        "world": world,
        **local,
        "rng": [x[0] for x in parts],
        "bad": [x[1] for x in parts],
    }


def rank_state(checkpoint: dict[str, Any], rank: int) -> dict[str, Any]:
    """What ``TrainState.load_state_dict`` of process ``rank`` takes from a checkpoint (its own RNG and skips)."""
    return {**checkpoint, "rng": checkpoint["rng"][rank], "bad": checkpoint["bad"][rank]}


def check_compatible(
    checkpoint: dict[str, Any], path: str | os.PathLike[str], spec: NetworkSpec, config: TrainConfig, world: int
) -> None:
    """A checkpoint (read from ``path``) may be resumed only by the same network, schedule-relevant settings and
    process count; otherwise a one-line ``InvalidValue`` naming the difference."""
    path = Path(path)
    saved_spec = NetworkSpec.from_json(checkpoint["spec"])
    if saved_spec != spec:
        raise InvalidValue(
            f"checkpoint {path} was written for {describe_spec(saved_spec)}, not "
            f"{describe_spec(spec)}; use the same model settings or another --output"
        )
    saved, now, default = checkpoint["config"], config.to_dict(), TrainConfig().to_dict()
    saved = {k: saved.get(k, default[k]) for k in SCHEDULE_FIELDS}  # a field newer than the checkpoint: its default
    diffs = [f"{k}={saved[k]!r}->{now[k]!r}" for k in SCHEDULE_FIELDS if saved[k] != now[k]]
    if diffs:
        raise InvalidValue(
            f"--resume: settings differ from checkpoint {path} "
            f"({', '.join(diffs[:4])}); the run would not reproduce its schedule"
        )
    if checkpoint["world"] != world:
        raise InvalidValue(f"--resume: checkpoint was written by {checkpoint['world']} processes, this run has {world}")
