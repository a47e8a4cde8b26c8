"""What every block kind provides: :class:`BlockRule`, the fields it reads, and :class:`Tally`, the cost accumulator.

A rule sees a stage and a block through the small read-only protocols :class:`StageFields` and
:class:`BlockFields` (which :class:`effnet.specs.StageSpec` and :class:`effnet.specs.BlockConfig` satisfy), so
this package never imports :mod:`effnet.specs`, which reads the rules. Nothing here imports torch.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar, Protocol

from effnet.scaling import round_channels

__all__ = [
    "BlockKind",
    "StageFields",
    "BlockFields",
    "Tally",
    "BlockRule",
    "expanded_channels",
    "squeeze_channels",
    "same_shape",
]

BlockKind = str
"""The name of a registered block kind (``effnet.blocks.kinds()``); :class:`effnet.specs.StageSpec` checks it."""


class StageFields(Protocol):
    """The fields of one stage at baseline width and depth that a rule reads (:class:`effnet.specs.StageSpec`)."""

    @property
    def expand_ratio(self) -> float: ...

    @property
    def kernel(self) -> int: ...

    @property
    def stride(self) -> int: ...

    @property
    def out_channels(self) -> int: ...

    @property
    def se_ratio(self) -> float: ...


class BlockFields(Protocol):
    """The fields of one resolved block that a rule reads (:class:`effnet.specs.BlockConfig`)."""

    @property
    def in_channels(self) -> int: ...

    @property
    def mid_channels(self) -> int: ...

    @property
    def out_channels(self) -> int: ...

    @property
    def kernel(self) -> int: ...

    @property
    def stride(self) -> int: ...

    @property
    def se_channels(self) -> int: ...


class Tally:
    """Accumulates params/MACs/activations of conv, BN and linear layers for one part of a network.

    ``size`` is the running square input size; a conv reads it unless given another ``size``. MACs are the
    multiply-adds of convolutions and linear layers, activations their output elements (batch 1).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.params = self.macs = self.activations = 0

    def conv(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
        size: int | None = None,
    ) -> int:
        """Add a conv applied to a ``size``×``size`` input (default: the running size); return its output size."""
        in_size = self.size if size is None else size
        out_size = int(math.ceil(in_size / stride))
        per_pixel = cout * (cin // groups) * kernel * kernel
        self.params += per_pixel + (cout if bias else 0)
        self.macs += per_pixel * out_size * out_size
        self.activations += cout * out_size * out_size
        return out_size

    def bn(self, channels: int) -> None:
        """Add a BatchNorm's weight and bias (its running statistics are buffers, not parameters)."""
        self.params += 2 * channels

    def linear(self, fin: int, fout: int) -> None:
        """Add a linear layer with bias, applied once (batch 1)."""
        self.params += fin * fout + fout
        self.macs += fin * fout
        self.activations += fout

    def squeeze_excite(self, channels: int, squeeze: int) -> None:
        """Add a squeeze-excite gate: two 1×1 convs with bias on the pooled 1×1 map (none when ``squeeze`` is 0)."""
        if squeeze:
            self.conv(channels, squeeze, 1, bias=True, size=1)
            self.conv(squeeze, channels, 1, bias=True, size=1)


class BlockRule(ABC):
    """The torch-free rules of one block kind, beside its cost (pycls style).

    A subclass sets :attr:`kind` and implements :meth:`channels`, :meth:`has_skip` and :meth:`cost`;
    :meth:`validate` and :meth:`has_downsample` have defaults. Rules are stateless: one instance per kind,
    listed once in :data:`effnet.blocks.REGISTRY`. The matching ``nn.Module`` class is registered in
    :data:`effnet.models.layers.BLOCK_MODULES` and must have exactly the params and MACs :meth:`cost` counts.
    """

    kind: ClassVar[BlockKind]
    """The name a :class:`effnet.specs.StageSpec` uses for this kind (``block=...``)."""

    def validate(self, stage: StageFields) -> None:
        """Refuse a stage this kind cannot build (:class:`effnet.errors.InvalidValue`), beyond the checks every
        stage gets; called after those. Default: nothing more to check."""
        return None

    @abstractmethod
    def channels(self, stage: StageFields, in_channels: int, width: float, divisor: int) -> tuple[int, int]:
        """``(mid_channels, se_channels)`` of one block of ``stage`` entering with ``in_channels``, at the
        network's ``width`` multiplier and channel ``divisor``; ``se_channels`` 0 means no squeeze-excite."""

    @abstractmethod
    def has_skip(self, block: BlockFields) -> bool:
        """Whether the block adds a residual (identity or projected) to its output."""

    def has_downsample(self, block: BlockFields) -> bool:
        """Whether the residual goes through a projection (1×1 conv + BN). Default: never."""
        return False

    @abstractmethod
    def cost(self, tally: Tally, block: BlockFields, size: int) -> int:
        """Add the block's params, MACs and activations on a ``size``×``size`` input to ``tally``; return its
        output size. Must match the registered module exactly (``tests/test_cost.py`` checks every kind)."""


def expanded_channels(stage: StageFields, in_channels: int, divisor: int) -> int:
    """An inverted bottleneck's expanded width: ``in_channels × expand_ratio`` rounded, or ``in_channels`` at 1."""
    if stage.expand_ratio == 1:
        return in_channels
    return round_channels(in_channels, stage.expand_ratio, divisor)


def squeeze_channels(stage: StageFields, in_channels: int) -> int:
    """Squeeze-excite width: the *block input* times ``se_ratio`` (at least 1), or 0 without squeeze-excite."""
    return max(1, int(in_channels * stage.se_ratio)) if stage.se_ratio > 0 else 0


def same_shape(block: BlockFields) -> bool:
    """Whether output and input have the same shape (stride 1, equal channels): where an identity skip fits."""
    return block.stride == 1 and block.in_channels == block.out_channels
