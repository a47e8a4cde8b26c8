"""The weight files of a training run: the ``--weights`` it starts from, and the weights it exports.

Both go through :mod:`effnet.models.factory`: initial weights in any layout it reads (or a hub reference) are
converted and loaded into the model; exported weights are safetensors with the network spec and preprocessing in
the header, loadable by ``effnet predict``/``eval``/``export`` and a later ``train --weights``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from effnet.errors import InvalidValue, MissingFile, WrongType
from effnet.models.convert import source_spec
from effnet.models.convert.checkpoint import convert_checkpoint
from effnet.models.factory import load_pretrained, save_pretrained
from effnet.models.hub import LOCAL_PREFIX, is_weights_ref, resolve_weights
from effnet.models.weight_files import read_safetensors_header
from effnet.preprocessing import Preprocessing
from effnet.specs import NetworkSpec

__all__ = ["export_weights", "load_initial_weights", "weights_in_chans", "weights_conventions"]


def export_weights(
    model: nn.Module, path: str | os.PathLike[str], preprocessing: Preprocessing, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model``'s weights with :func:`effnet.models.factory.save_pretrained` (safetensors, spec in the header).

    ``preprocessing`` is the run's (its data's :class:`~effnet.preprocessing.Preprocessing`, the one its
    validation used), stored as is; its ``in_chans`` must be the model's.
    """
    if not isinstance(preprocessing, Preprocessing):
        raise WrongType(f"export_weights needs a Preprocessing, got {type(preprocessing).__name__}")
    spec = getattr(model, "spec", None)
    if spec is not None and spec.in_chans != preprocessing.in_chans:
        raise InvalidValue(
            f"preprocessing is for {preprocessing.in_chans} input channel(s), the model takes {spec.in_chans}"
        )
    return save_pretrained(model, path, preprocessing, {k: json.dumps(v) for k, v in (metadata or {}).items()})


def weights_in_chans(path: str | os.PathLike[str]) -> int:
    """Input channels of the network stored in an effnet weights file or a Hub folder (3 when it does not say)."""
    try:
        if Path(str(path).removeprefix(LOCAL_PREFIX)).is_dir():
            stated = resolve_weights(path).spec
            return stated.in_chans if stated is not None else 3
        header = read_safetensors_header(path)
        return NetworkSpec.from_json(header["effnet.spec"]).in_chans if "effnet.spec" in header else 3
    except Exception:  # not safetensors / no spec: pretrained ImageNet weights are RGB
        return 3


def weights_conventions(spec: NetworkSpec, path: str | os.PathLike[str]) -> NetworkSpec:
    """``spec`` with the padding, BN eps and activation that the weights in ``path`` were trained with (e.g.
    torchvision's BN eps 1e-5, a TF port's "same" padding), so that ``train --weights`` fine-tunes the network the
    weights belong to. Everything else (classes, channels, dropout, scaling) stays ``spec``'s."""
    source = resolve_weights(path) if is_weights_ref(path) else path
    converted = convert_checkpoint(source, spec, "auto", drop_head=True)
    stated = converted.source == "effnet" or getattr(source, "spec", None) is not None  # a Hub folder's exact spec
    trained = converted.spec if stated else source_spec(converted.spec, converted.source)
    return spec.replace(padding=trained.padding, bn_eps=trained.bn_eps, activation=trained.activation)


def load_initial_weights(model: nn.Module, path: str | os.PathLike[str], new_head: bool) -> bool:
    """Load pretrained weights (a file in any layout :mod:`effnet.models.convert` reads, or a hub reference) into
    ``model`` before training, through :func:`~effnet.models.factory.load_pretrained` (which refuses weights
    whose padding, BN eps or activation differ from the model's).

    The classifier keeps ``model``'s fresh initialisation when ``new_head`` is set or when the checkpoint's
    classifier has another number of classes. Returns whether the classifier was loaded too. A checkpoint of
    another architecture is a ``ValueError`` naming the differences.
    """
    if is_weights_ref(path):
        path = resolve_weights(path)  # hf-hub:/torchvision: downloaded once, then converted like a file
    elif not Path(path).is_file():
        raise MissingFile(f"--weights {path}: no such file")
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
