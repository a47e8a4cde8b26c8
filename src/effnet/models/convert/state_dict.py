"""Convert a state dict from a registered layout onto effnet's keys, checking every key and shape; infer the model.

Generic: everything layout-specific is read from :data:`effnet.models.convert.REGISTRY`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from effnet.architectures import get_spec, list_models
from effnet.errors import InvalidValue
from effnet.models.convert import get_layout, key_map, source_spec
from effnet.models.efficientnet import EfficientNet
from effnet.specs import NetworkSpec, resolve

__all__ = ["convert_state_dict", "infer_model_name", "classifier_classes"]

_SHOW = 5  # offending keys listed in an error
_HEAD = {"classifier.weight", "classifier.bias"}


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
    A mismatch is a one-line :class:`~effnet.errors.InvalidValue` naming the first missing, unexpected and
    mis-shaped keys.
    """
    mapping = key_map(spec, source)
    expected = _expected_shapes(spec)
    out: dict[str, torch.Tensor] = {}
    missing, shapes = [], []
    for src, dst in mapping.items():
        if drop_head and dst in _HEAD:
            continue
        if src not in state:
            if not src.endswith("num_batches_tracked"):
                missing.append(src)
            continue
        tensor = state[src]
        if dst not in expected:
            raise RuntimeError(f"internal key map error: {dst} is not a parameter of {spec.name}")
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
        raise InvalidValue(f"weights do not fit {spec.name} ({source} layout): " + "; ".join(parts))
    return out


def _candidates() -> list[str]:
    """The models a file's shapes are matched against: the EfficientNets (every foreign layout is one's)."""
    return [n for n in list_models() if n.startswith("efficientnet_")]


def _plausible(spec: NetworkSpec, source: str, keys: set[str], state: Mapping[str, torch.Tensor]) -> bool:
    """A cheap filter before the shape check: the key sets match (for effnet's own layout: the blocks and stem)."""
    if get_layout(source).own_keys is None:
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
            if not _plausible(spec, source, keys, state):
                continue
            convert_state_dict(state, spec, source)
        except ValueError:
            continue
        return name
    return None


def classifier_classes(state: Mapping[str, torch.Tensor], source: str) -> int | None:
    """Outputs of the classifier in ``state`` (in layout ``source``), if it has a 2-D classifier weight."""
    weight = state.get(f"{get_layout(source).classifier}.weight")
    return int(weight.shape[0]) if weight is not None and weight.dim() == 2 else None
