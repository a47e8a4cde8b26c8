"""Read a weights file (or a hub reference) in any registered layout and convert it to effnet's, with its spec and
preprocessing.

The layout is the one asked for, or detected from the keys (a ``tf_`` model or file name picks the TF-port variant);
the spec is the effnet header's, the model asked for (in the layout's conventions), or inferred from the tensor
shapes; the preprocessing comes from :func:`effnet.models.pretrained.file_preprocessing`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from effnet.architectures import get_spec
from effnet.errors import BadFile, InvalidValue, WrongType, check_type
from effnet.models.convert import SOURCES, choose_variant, detect_source, get_layout, resolve_model_name, source_spec
from effnet.models.convert.state_dict import classifier_classes, convert_state_dict, infer_model_name
from effnet.models.hub import HubWeights, is_weights_ref, resolve_weights
from effnet.models.pretrained import file_preprocessing
from effnet.models.weight_files import check_finite, read_checkpoint
from effnet.preprocessing import Preprocessing
from effnet.specs import NetworkSpec

__all__ = ["ConvertedWeights", "convert_checkpoint"]


@dataclass(frozen=True)
class ConvertedWeights:
    """A state dict in effnet's layout with the spec it fits and the preprocessing it expects."""

    spec: NetworkSpec
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    source: str
    preprocessing: Preprocessing
    metadata: dict[str, str]

    @property
    def num_classes(self) -> int:
        """Outputs of the classifier in the checkpoint (the spec's when the head was dropped)."""
        weight = self.state_dict.get("classifier.weight")
        return int(weight.shape[0]) if weight is not None else self.spec.num_classes


@dataclass(frozen=True)
class _Request:
    """What the caller's model argument asks for: a spec (or none), a layout hint, the library's model name."""

    base: NetworkSpec | None
    hint: str | None
    library_name: str | None
    num_classes: int | None
    module: bool


def convert_checkpoint(
    path: str | os.PathLike[str] | HubWeights,
    model_or_name: str | NetworkSpec | nn.Module | None = None,
    source: str = "auto",
    *,
    drop_head: bool = False,
    num_classes: int | None = None,
    allow_nonfinite: bool = False,
) -> ConvertedWeights:
    """Read ``path`` and convert it to effnet's layout for the given model (inferred when ``None``).

    ``path``: a local file, or a hub reference (``hf-hub:timm/<repo>``, ``torchvision:<Enum>[.<MEMBER>]``, a
    resolved :class:`~effnet.models.hub.HubWeights`): downloaded once into the standard cache by
    :func:`effnet.models.hub.resolve_weights`, which also names the model, the layout and the source's own
    preprocessing; the file then goes through the same converters. ``source``: one of
    :data:`~effnet.models.convert.SOURCES` or ``"auto"``. ``num_classes``: the classifier size wanted; a checkpoint
    with another size is an error unless ``drop_head``. A tensor holding NaN or Inf is a one-line
    :class:`~effnet.errors.BadFile` naming it, unless ``allow_nonfinite`` (for debugging).
    """
    check_type(
        "path", path, (str, os.PathLike, HubWeights), "a weights file or a hub reference (hf-hub:..., torchvision:...)"
    )
    hub = None
    if is_weights_ref(path):
        hub = resolve_weights(path)
        path = hub.path
        if model_or_name is None:
            model_or_name = hub.spec if hub.spec is not None else hub.model_name
        source = hub.source if source == "auto" else source
    return _convert_file(Path(path), model_or_name, source, drop_head, num_classes, hub, allow_nonfinite)


def _request(model_or_name: str | NetworkSpec | nn.Module | None, num_classes: int | None) -> _Request:
    if isinstance(model_or_name, nn.Module):
        base = getattr(model_or_name, "spec", None)
        if not isinstance(base, NetworkSpec):
            raise WrongType("model must be an effnet EfficientNet (with a .spec)")
        return _Request(base, None, None, base.num_classes if num_classes is None else num_classes, True)
    if isinstance(model_or_name, str):
        effnet_name, hint, library_name = resolve_model_name(model_or_name)
        return _Request(get_spec(effnet_name), hint, library_name, num_classes, False)
    check_type(
        "model", model_or_name, (NetworkSpec, type(None)), "a model name, a NetworkSpec, an effnet model or None"
    )
    return _Request(model_or_name, None, None, num_classes, False)


def _spec(
    where: str,
    header: dict[str, str],
    state: dict[str, torch.Tensor],
    request: _Request,
    source: str,
    stated: NetworkSpec | None = None,
) -> NetworkSpec:
    """The spec the weights are loaded into: ``stated`` (a Hub folder's config.json), else the header's, the
    module's, the one asked for, or inferred."""
    base, header_spec = request.base, stated
    if stated is None and "effnet.spec" in header:
        try:
            header_spec = NetworkSpec.from_json(header["effnet.spec"])
        except ValueError as exc:
            raise BadFile(f"{where}: the header's effnet.spec is invalid: {exc}") from None
    if header_spec is not None:
        if base is not None and base.name != header_spec.name and not request.module:
            raise InvalidValue(f"{where}: weights hold {header_spec.name}, but the model asked for is {base.name}")
        return base if request.module and base is not None else header_spec
    ckpt_classes = classifier_classes(state, source)
    if base is None:
        inferred = infer_model_name(state, source, ckpt_classes)
        if inferred is None:
            raise InvalidValue(f"{where}: cannot tell which EfficientNet these {source} weights are for; pass --model")
        base = get_spec(inferred)
    if request.module:
        return base
    spec = source_spec(base, source)
    if ckpt_classes is not None and request.num_classes is None:
        spec = spec.replace(num_classes=ckpt_classes)
    return spec


def _convert_file(
    file: Path,
    model_or_name: str | NetworkSpec | nn.Module | None,
    source: str,
    drop_head: bool,
    num_classes: int | None,
    hub: HubWeights | None,
    allow_nonfinite: bool = False,
) -> ConvertedWeights:
    state, header = read_checkpoint(file)
    where = hub.ref if hub is not None else str(file)
    if not allow_nonfinite:
        check_finite(state, where)
    if source != "auto" and source not in SOURCES:
        raise InvalidValue(f"source must be one of auto, {', '.join(SOURCES)}; got {source!r}")
    detected = detect_source(state) if source == "auto" else source
    request = _request(model_or_name, num_classes)
    if source == "auto":
        detected = choose_variant(detected, request.hint, file.name)
    spec = _spec(where, header, state, request, detected, hub.spec if hub is not None else None)
    ckpt_classes = classifier_classes(state, detected)
    if request.num_classes is not None:
        if not drop_head and ckpt_classes is not None and ckpt_classes != request.num_classes:
            raise InvalidValue(
                f"{where}: checkpoint classifier has {ckpt_classes} classes, the model {request.num_classes}; "
                "use drop_head=True (--drop-head) to keep the backbone only"
            )
        spec = spec.replace(num_classes=request.num_classes)
    try:
        converted = convert_state_dict(state, spec, detected, drop_head=drop_head)
    except ValueError as exc:
        guess = infer_model_name(state, detected, ckpt_classes)
        hint = f" (the checkpoint looks like {guess})" if guess and guess != spec.name else ""
        raise InvalidValue(f"{where}: {exc}{hint}") from None
    preprocessing = file_preprocessing(
        spec,
        get_layout(detected),
        header=header,
        file=file,
        library_name=request.library_name,
        known=hub.preprocessing if hub is not None else None,
        drop_head=drop_head,
        ckpt_classes=ckpt_classes,
    )
    metadata = {
        "source": header.get("effnet.source", detected),
        "model": spec.name,
        "padding": spec.padding,
        "bn_eps": repr(spec.bn_eps),
        "path": str(file),
        **({"weights": hub.ref} if hub is not None else {}),
    }
    return ConvertedWeights(spec, converted, detected, preprocessing, metadata)
