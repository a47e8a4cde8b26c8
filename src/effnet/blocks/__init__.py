"""Block kinds: one torch-free rule per kind (stage checks, channels, skip, cost), in one registry.

Each kind is one module here defining a :class:`~effnet.blocks.base.BlockRule` subclass and its ``RULE``;
:data:`REGISTRY` lists every ``RULE`` once. :mod:`effnet.specs` (validation, :func:`effnet.specs.resolve`) and
:mod:`effnet.cost` read the rules through :func:`rule`; the torch module of each kind is registered in
:data:`effnet.models.layers.BLOCK_MODULES`. ``docs/contributing.md`` shows how to add a kind.
Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from effnet.blocks import bottleneck, dwsep, fused_mbconv, mbconv
from effnet.blocks.base import BlockKind, BlockRule
from effnet.errors import InvalidValue

__all__ = ["REGISTRY", "kinds", "rule"]

REGISTRY: Mapping[BlockKind, BlockRule] = MappingProxyType(
    {r.kind: r for r in (mbconv.RULE, fused_mbconv.RULE, bottleneck.RULE, dwsep.RULE)}
)
"""Every block kind's rule by name, in the order error messages list them (read-only)."""


def kinds() -> tuple[BlockKind, ...]:
    """The registered block kinds, in registry order."""
    return tuple(REGISTRY)


def rule(kind: BlockKind) -> BlockRule:
    """The rule of a registered ``kind``; any other value is a one-line :class:`~effnet.errors.InvalidValue`."""
    found = REGISTRY.get(kind) if isinstance(kind, str) else None
    if found is None:
        raise InvalidValue(f"block must be one of {', '.join(REGISTRY)}; got {kind!r}")
    return found
