"""The record of one weight layout: how its state dicts are recognised, its key map, its conventions.

A layout is data. Its key map is built from the resolved spec as ``(its key, effnet key)`` pairs: the stem, one
function per block kind (called with the block's :class:`BlockSite`), the 1x1 head and the classifier. Each layout
is one module of :mod:`effnet.models.convert`, registered there. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from effnet.errors import InvalidValue
from effnet.specs import BlockConfig, NetworkSpec, resolve

__all__ = [
    "PREPROCESSING_CONVENTIONS",
    "Pair",
    "BlockSite",
    "BlockPairs",
    "Layout",
    "conv_bn",
    "squeeze_excite",
    "unsupported_block",
]

PREPROCESSING_CONVENTIONS = ("torchvision", "timm", "default")
"""Where a layout's published preprocessing comes from (derived in :mod:`effnet.models.pretrained`): torchvision's
weight enum, timm's ``pretrained_cfg``, or the default (the spec's resolution at crop 0.875, bicubic)."""

Pair = tuple[str, str]
"""``(key in the layout, effnet key)``."""

_BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_BLOCK_TITLES = {"mbconv": "MBConv", "fused_mbconv": "Fused-MBConv"}


@dataclass(frozen=True)
class BlockSite:
    """Where a block sits (stage, index in the stage, index among all blocks) and its resolved config."""

    stage: int
    index: int
    flat: int
    config: BlockConfig

    @property
    def dst(self) -> str:
        """The block's prefix in effnet's keys."""
        return f"stages.{self.stage}.{self.index}"

    @property
    def expands(self) -> bool:
        """Whether the block has an expansion conv (its mid channels differ from its input's)."""
        return self.config.mid_channels != self.config.in_channels


BlockPairs = Callable[[BlockSite], list[Pair]]
"""The key pairs of one block of a kind; raises :func:`unsupported_block` for a form the layout does not have."""


def _same_spec(spec: NetworkSpec) -> NetworkSpec:
    return spec


def _same_name(name: str) -> str:
    return name


@dataclass(frozen=True)
class Layout:
    """One state-dict layout effnet converts (a foreign library's, or effnet's own).

    - ``name``: what ``source=`` / ``--source`` calls it. ``summary``: where such weights come from.
    - ``marker``: a key only this layout has (how it is detected); ``None``: never detected from keys, only chosen
      by name (``variant_of`` names the layout whose keys it shares, ``name_prefix`` the model-name prefix and
      ``file_pattern`` the file-name regex that choose it).
    - The key map: ``stem`` (conv, BN prefixes), ``blocks`` (block kind -> :data:`BlockPairs`), ``head`` (conv, BN
      prefixes of the 1x1 head; ``{end}`` is replaced by the number of stages + 1), ``classifier`` (the Linear's
      prefix). ``own_keys``: instead of all that, the layout is effnet's own model's keys (an identity map).
    - ``conventions``: the spec as the layout's own modules compute it (BN eps/momentum, padding).
    - ``preprocessing``: one of :data:`PREPROCESSING_CONVENTIONS`. ``library_name``: the library's model name for
      an effnet model name (``efficientnet_v2_s`` -> timm's ``efficientnetv2_s``).
    - ``models``: the effnet models the library builds in this layout. ``reference``: builds the library's own
      module for an effnet model name and input resolution (``None`` for effnet's own layout); the tests convert
      its random weights and compare logits, so a registered layout is checked automatically.
    """

    name: str
    summary: str
    classifier: str
    marker: str | None = None
    stem: tuple[str, str] = ("", "")
    blocks: Mapping[str, BlockPairs] = field(default_factory=dict)
    head: tuple[str, str] = ("", "")
    own_keys: Callable[[NetworkSpec], list[str]] | None = None
    conventions: Callable[[NetworkSpec], NetworkSpec] = _same_spec
    preprocessing: str = "default"
    library_name: Callable[[str], str] = _same_name
    variant_of: str | None = None
    name_prefix: str | None = None
    file_pattern: str | None = None
    models: tuple[str, ...] = ()
    reference: Callable[[str, int], Any] | None = None

    def __post_init__(self) -> None:
        if self.preprocessing not in PREPROCESSING_CONVENTIONS:
            raise InvalidValue(
                f"layout {self.name}: preprocessing must be one of {', '.join(PREPROCESSING_CONVENTIONS)}, "
                f"got {self.preprocessing!r}"
            )
        object.__setattr__(self, "blocks", MappingProxyType(dict(self.blocks)))

    def key_map(self, spec: NetworkSpec) -> dict[str, str]:
        """Explicit ``{layout key: effnet key}`` for ``spec``, every parameter and buffer."""
        if self.own_keys is not None:
            return {k: k for k in self.own_keys(spec)}
        net = resolve(spec)
        if not net.head_channels or any(b.block not in self.blocks for b in net.blocks):
            raise InvalidValue(f"{self.name} weights exist only for EfficientNet/Lite/V2 models, not {spec.name}")
        pairs = conv_bn(*self.stem, "stem")
        flat = 0
        for s, stage in enumerate(net.stages):
            for j, block in enumerate(stage):
                pairs += self.blocks[block.block](BlockSite(s, j, flat, block))
                flat += 1
        end = len(net.stages) + 1
        pairs += conv_bn(self.head[0].format(end=end), self.head[1].format(end=end), "head")
        pairs += [(f"{self.classifier}.{p}", f"classifier.{p}") for p in ("weight", "bias")]
        return dict(pairs)


def conv_bn(conv: str, bn: str, dst: str) -> list[Pair]:
    """A conv's weight and its BatchNorm's parameters and buffers, onto effnet's ``{dst}.conv`` / ``{dst}.bn``."""
    return [(f"{conv}.weight", f"{dst}.conv.weight")] + [(f"{bn}.{f}", f"{dst}.bn.{f}") for f in _BN_FIELDS]


def squeeze_excite(reduce: str, expand: str, dst: str) -> list[Pair]:
    """The two 1x1 convs (weight and bias) of a squeeze-excite, onto effnet's ``{dst}.se.reduce`` / ``.expand``."""
    return [(f"{reduce}.{p}", f"{dst}.se.reduce.{p}") for p in ("weight", "bias")] + [
        (f"{expand}.{p}", f"{dst}.se.expand.{p}") for p in ("weight", "bias")
    ]


def unsupported_block(layout: str, site: BlockSite) -> InvalidValue:
    """The error for a block of a form ``layout``'s weights never have (e.g. a Fused-MBConv with squeeze-excite)."""
    title = _BLOCK_TITLES.get(site.config.block, site.config.block)
    return InvalidValue(f"{layout} weights have no {title} of this form (stage {site.stage}: squeeze-excite or layout)")
