"""Training checkpoints, RNG state capture, and the weight files a run exports or starts from.

Checkpoints are written atomically with ``torch.save`` and read with ``torch.load(weights_only=True)``: they
hold only tensors and plain Python values (numpy RNG state is stored as a tensor). Exported weights go through
:mod:`effnet.models.weight_files` (safetensors with the network spec and preprocessing in the header).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from effnet.io import atomic_path
from effnet.preprocessing import Preprocessing
from effnet.specs import NetworkSpec

__all__ = [
    "CHECKPOINT_NAME",
    "capture_rng",
    "restore_rng",
    "save_checkpoint",
    "load_checkpoint",
    "describe_spec",
    "export_weights",
    "load_initial_weights",
    "weights_in_chans",
    "weights_conventions",
]

CHECKPOINT_NAME = "checkpoint.pt"


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
    from effnet.models.weight_files import torch_load_safely

    state = torch_load_safely(path, "checkpoint")
    if not isinstance(state, dict) or "model" not in state or "spec" not in state:
        raise ValueError(f"{path} is not an effnet training checkpoint (no model/spec entries)")
    return state


def describe_spec(spec: NetworkSpec) -> str:
    """A short human description of a spec for error messages."""
    return (
        f"{spec.name} (width {spec.width:g}, depth {spec.depth:g}, {spec.resolution}px, {spec.in_chans} input "
        f"channels, {spec.num_classes} classes)"
    )


def export_weights(
    model: nn.Module, path: str | os.PathLike[str], preprocessing: Preprocessing, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model``'s weights with :func:`effnet.models.factory.save_pretrained` (safetensors, spec in the header).

    ``preprocessing`` is the run's (its data's :class:`~effnet.serving.preprocess.Preprocessing`, the one its
    validation used), stored as is; its ``in_chans`` must be the model's.
    """
    from effnet.models.factory import save_pretrained

    if not isinstance(preprocessing, Preprocessing):
        raise TypeError(f"export_weights needs a Preprocessing, got {type(preprocessing).__name__}")
    spec = getattr(model, "spec", None)
    if spec is not None and spec.in_chans != preprocessing.in_chans:
        raise ValueError(
            f"preprocessing is for {preprocessing.in_chans} input channel(s), the model takes {spec.in_chans}"
        )
    return save_pretrained(model, path, preprocessing, {k: json.dumps(v) for k, v in (metadata or {}).items()})


def weights_in_chans(path: str | os.PathLike[str]) -> int:
    """Input channels of the network stored in an effnet weights file (3 when the file does not say)."""
    from effnet.models.weight_files import read_safetensors_header

    try:
        header = read_safetensors_header(path)
        return NetworkSpec.from_json(header["effnet.spec"]).in_chans if "effnet.spec" in header else 3
    except Exception:  # not safetensors / no spec: pretrained ImageNet weights are RGB
        return 3


def weights_conventions(spec: NetworkSpec, path: str | os.PathLike[str]) -> NetworkSpec:
    """``spec`` with the padding, BN eps and activation that the weights in ``path`` were trained with (e.g.
    torchvision's BN eps 1e-5, a TF port's "same" padding), so that ``train --weights`` fine-tunes the network the
    weights belong to. Everything else (classes, channels, dropout, scaling) stays ``spec``'s."""
    from effnet.models.convert import source_spec
    from effnet.models.convert.checkpoint import convert_checkpoint
    from effnet.models.hub import is_weights_ref, resolve_weights

    source = resolve_weights(path) if is_weights_ref(path) else path
    converted = convert_checkpoint(source, spec, "auto", drop_head=True)
    trained = converted.spec if converted.source == "effnet" else source_spec(converted.spec, converted.source)
    return spec.replace(padding=trained.padding, bn_eps=trained.bn_eps, activation=trained.activation)


def load_initial_weights(model: nn.Module, path: str | os.PathLike[str], new_head: bool) -> bool:
    """Load pretrained weights (a file in any layout :mod:`effnet.models.convert` reads, or a hub reference) into
    ``model`` before training, through :func:`~effnet.models.factory.load_pretrained` (which refuses weights
    whose padding, BN eps or activation differ from the model's).

    The classifier keeps ``model``'s fresh initialisation when ``new_head`` is set or when the checkpoint's
    classifier has another number of classes. Returns whether the classifier was loaded too. A checkpoint of
    another architecture is a ``ValueError`` naming the differences.
    """
    from effnet.models.factory import load_pretrained
    from effnet.models.hub import is_weights_ref, resolve_weights

    if is_weights_ref(path):
        path = resolve_weights(path)  # hf-hub:/torchvision: downloaded once, then converted like a file
    elif not Path(path).is_file():
        raise FileNotFoundError(f"--weights {path}: no such file")
    try:
        load_pretrained(model, path, drop_head=new_head)
        head = not new_head
    except ValueError:
        if new_head:
            raise
        load_pretrained(model, path, drop_head=True)  # another class count: a new head
        head = False
    model.train()
    return head
