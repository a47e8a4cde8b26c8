"""The weight layouts effnet converts, in one registry: one module per layout, one registration line each.

Adding a layout: write a module beside these that defines a :class:`~effnet.models.convert.layout.Layout` (how its
state dicts are recognised, its key pairs per block kind, its conventions, the library module it mirrors), then
add it to :data:`REGISTRY` below. Detection, ``--source``, conversion, model-name inference, the preprocessing
convention and the parity tests all read the registry. Nothing here imports torch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from effnet.architectures import get_spec
from effnet.errors import BadFile, InvalidValue
from effnet.models.convert.efficientnet_pytorch import LAYOUT as EFFICIENTNET_PYTORCH
from effnet.models.convert.effnet import LAYOUT as EFFNET
from effnet.models.convert.layout import Layout
from effnet.models.convert.timm import TF, TIMM
from effnet.models.convert.torchvision import LAYOUT as TORCHVISION
from effnet.specs import NetworkSpec

__all__ = [
    "REGISTRY",
    "SOURCES",
    "get_layout",
    "detect_source",
    "choose_variant",
    "resolve_model_name",
    "key_map",
    "source_spec",
]

REGISTRY: Mapping[str, Layout] = MappingProxyType(
    {record.name: record for record in (TORCHVISION, TIMM, TF, EFFICIENTNET_PYTORCH, EFFNET)}
)
"""Every layout by name, in the order ``--source`` lists them."""

SOURCES = tuple(REGISTRY)
"""Names of the layouts :func:`~effnet.models.factory.load_pretrained` reads (``"auto"`` detects one)."""

_SHOW = 5  # keys listed in an error


def get_layout(name: str) -> Layout:
    """The registered layout ``name``; another name is a one-line :class:`~effnet.errors.InvalidValue`."""
    if name not in REGISTRY:
        raise InvalidValue(f"source must be one of {', '.join(SOURCES)} or 'auto'; got {name!r}")
    return REGISTRY[name]


def detect_source(keys: Iterable[str]) -> str:
    """The layout of a state dict from its keys (the first whose marker key it has).

    Layouts that share another's keys (``tf`` shares ``timm``'s) are never detected; :func:`choose_variant` picks
    them by model or file name.
    """
    found = set(keys)
    for record in REGISTRY.values():
        if record.marker is not None and record.marker in found:
            return record.name
    first = ", ".join(sorted(found)[:_SHOW])
    names = [record.name for record in REGISTRY.values() if record.marker is not None]
    raise BadFile(
        f"unrecognised checkpoint layout (first keys: {first}); expected {', '.join(names[:-1])} or {names[-1]} "
        "EfficientNet weights"
    )


def choose_variant(detected: str, hint: str | None, file_name: str) -> str:
    """The layout sharing ``detected``'s keys that the model name's ``hint`` or the file name chooses (a
    ``tf_efficientnet_b2`` model, a ``tf_efficientnet_b2.pth`` file: ``tf``), else ``detected``."""
    for record in REGISTRY.values():
        if record.variant_of != detected:
            continue
        if hint == record.name or (record.file_pattern is not None and re.match(record.file_pattern, file_name)):
            return record.name
    return detected


def resolve_model_name(name: str) -> tuple[str, str | None, str]:
    """``(effnet name, layout hint, library name)`` for effnet, timm and lukemelas model names.

    ``tf_efficientnet_b2[.tag]`` -> ``("efficientnet_b2", "tf", "tf_efficientnet_b2[.tag]")`` (a registered
    ``name_prefix`` gives the hint); ``efficientnet-b0`` -> ``efficientnet_b0``; timm's ``efficientnetv2_s`` ->
    ``efficientnet_v2_s``. An unknown name is :func:`~effnet.specs.get_spec`'s error.
    """
    base = name.split(".", 1)[0].replace("-", "_")
    hint = None
    for record in REGISTRY.values():
        if record.name_prefix is not None and base.startswith(record.name_prefix):
            base, hint = base[len(record.name_prefix) :], record.name
            break
    if base.startswith("efficientnetv2_"):  # timm's name for the V2 family
        base = "efficientnet_v2_" + base[len("efficientnetv2_") :]
    return get_spec(base).name, hint, name


def key_map(spec: NetworkSpec, source: str) -> dict[str, str]:
    """Explicit ``{source key: effnet key}`` for ``spec`` in layout ``source`` (see :meth:`Layout.key_map`)."""
    return get_layout(source).key_map(spec)


def source_spec(spec: NetworkSpec, source: str) -> NetworkSpec:
    """``spec`` as layout ``source``'s own modules compute it (BN eps/momentum, padding; effnet's: unchanged)."""
    return get_layout(source).conventions(spec)
