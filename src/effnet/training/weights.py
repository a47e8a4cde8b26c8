"""The weight files of a training run: the ``--weights`` it starts from, and the weights it exports.

Both go through :mod:`effnet.models.factory`: initial weights in any layout it reads (or a hub reference) are
converted and loaded into the model; exported weights are safetensors with the network spec and preprocessing in
the header, loadable by ``effnet predict``/``eval``/``export`` and a later ``train --weights``, which trains the
network the file holds (:func:`weights_network`, read as predict/eval/export read it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from effnet.architectures import get_spec, scale
from effnet.config.training import DEFAULT_MODEL
from effnet.errors import BadFile, InvalidValue, MissingFile, WrongType
from effnet.io import json_text
from effnet.models.convert import source_spec
from effnet.models.convert.checkpoint import convert_checkpoint
from effnet.models.factory import load_pretrained, save_pretrained
from effnet.models.hub import LOCAL_PREFIX, is_weights_ref, resolve_weights
from effnet.models.weight_files import read_safetensors_header
from effnet.preprocessing import Preprocessing
from effnet.specs import NetworkSpec, resolve

__all__ = [
    "export_weights",
    "load_initial_weights",
    "weights_in_chans",
    "weights_conventions",
    "weights_network",
]


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
    return save_pretrained(model, path, preprocessing, {k: json_text(v) for k, v in (metadata or {}).items()})


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


def weights_conventions(spec: NetworkSpec, path: str | os.PathLike[str], allow_nonfinite: bool = False) -> NetworkSpec:
    """``spec`` with the padding, BN eps and activation that the weights in ``path`` were trained with (e.g.
    torchvision's BN eps 1e-5, a TF port's "same" padding), so that ``train --weights`` fine-tunes the network the
    weights belong to. Everything else (classes, channels, dropout, scaling) stays ``spec``'s."""
    source = resolve_weights(path) if is_weights_ref(path) else path
    converted = convert_checkpoint(source, spec, "auto", drop_head=True, allow_nonfinite=allow_nonfinite)
    stated = converted.source == "effnet" or getattr(source, "spec", None) is not None  # a Hub folder's exact spec
    trained = converted.spec if stated else source_spec(converted.spec, converted.source)
    return spec.replace(padding=trained.padding, bn_eps=trained.bn_eps, activation=trained.activation)


def _has_effnet_spec(path: str | os.PathLike[str]) -> bool:
    try:
        return "effnet.spec" in read_safetensors_header(path)
    except Exception:  # not safetensors: a foreign checkpoint, converted by its layout
        return False


def _shapes(spec: NetworkSpec) -> tuple[object, ...]:
    """What fixes the tensor shapes of ``spec``'s backbone: stem, every block's channels and kernel, head."""
    r = resolve(spec)
    blocks = [
        (b.block, b.in_channels, b.mid_channels, b.out_channels, b.kernel, b.se_channels) for s in r.stages for b in s
    ]
    return r.stem_channels, tuple(blocks), r.head_channels


def _flags(**given: object) -> str:
    return " ".join(f"--{k} {v:g}" if isinstance(v, float) else f"--{k} {v}" for k, v in given.items() if v is not None)


def weights_network(
    path: str | os.PathLike[str],
    model: str | None = None,
    width: float | None = None,
    depth: float | None = None,
    allow_nonfinite: bool = False,
) -> NetworkSpec:
    """The network the weights in ``path`` hold, as ``effnet predict``/``eval``/``export`` read it
    (:func:`~effnet.models.convert.checkpoint.convert_checkpoint`): an effnet file's header spec, else the hub
    reference's model or the one its tensor shapes show (``model`` names it where they cannot), with the padding,
    BN eps and activation the weights were trained with.

    ``model``, ``width`` and ``depth`` (``--model``/``--width``/``--depth``), where given, must describe the same
    network (``width``/``depth`` multiply ``model``, default :data:`~effnet.config.training.DEFAULT_MODEL`), e.g.
    the flags the weights were trained with. Another network is an :class:`~effnet.errors.InvalidValue` naming
    both. ``allow_nonfinite``: accept weights holding NaN/Inf (``--allow-nonfinite``).
    """
    hub = resolve_weights(path) if is_weights_ref(path) else None
    if hub is None and not Path(path).is_file():
        raise MissingFile(f"--weights {path}: no such file")
    exact = getattr(hub, "spec", None) is not None  # a Hub folder states its exact spec
    own = exact or _has_effnet_spec(hub.path if hub is not None else path)
    converted = convert_checkpoint(
        hub or path, None if own else model, "auto", drop_head=True, allow_nonfinite=allow_nonfinite
    )
    stated = converted.source == "effnet" or exact
    held = converted.spec if stated else source_spec(converted.spec, converted.source)
    if (model is None or not own) and width is None and depth is None:
        return held
    described = scale(get_spec(model or DEFAULT_MODEL), depth=depth or 1.0, width=width or 1.0)
    if _shapes(described) != _shapes(held):
        raise InvalidValue(
            f"{_flags(model=model, width=width, depth=depth)} describe {described.name} at width "
            f"{described.width:g}, depth {described.depth:g}, but --weights {path} holds {held.name} at width "
            f"{held.width:g}, depth {held.depth:g}; leave out --model/--width/--depth to train the weights' network"
        )
    return held


def load_initial_weights(
    model: nn.Module, path: str | os.PathLike[str], new_head: bool, allow_nonfinite: bool = False
) -> bool:
    """Load pretrained weights (a file in any layout :mod:`effnet.models.convert` reads, or a hub reference) into
    ``model`` before training, through :func:`~effnet.models.factory.load_pretrained` (which refuses weights
    whose padding, BN eps or activation differ from the model's).

    The classifier keeps ``model``'s fresh initialisation when ``new_head`` is set or when the checkpoint's
    classifier has another number of classes. Returns whether the classifier was loaded too. A checkpoint of
    another architecture is a ``ValueError`` naming the differences; weights holding NaN or Inf are refused unless
    ``allow_nonfinite``.
    """
    if is_weights_ref(path):
        path = resolve_weights(path)  # hf-hub:/torchvision: downloaded once, then converted like a file
    elif not Path(path).is_file():
        raise MissingFile(f"--weights {path}: no such file")
    try:
        load_pretrained(model, path, drop_head=new_head, allow_nonfinite=allow_nonfinite)
        head = not new_head
    except BadFile:
        raise
    except ValueError:
        if new_head:
            raise
        load_pretrained(model, path, drop_head=True, allow_nonfinite=allow_nonfinite)  # another class count
        head = False
    model.train()
    return head
