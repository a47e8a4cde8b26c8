"""The ResNet bottleneck (v1.5: stride on the k×k conv): 1×1 reduce, k×k conv, 1×1 expand, a residual projected
where stride or channels change. Module: :class:`effnet.models.layers.Bottleneck`."""

from __future__ import annotations

from effnet.blocks.base import BlockFields, BlockRule, StageFields, Tally, same_shape
from effnet.scaling import round_channels

__all__ = ["BottleneckRule", "RULE"]


class BottleneckRule(BlockRule):
    """``expand_ratio`` is the ratio of output to inner channels (4 in ResNet-50); no squeeze-excite."""

    kind = "bottleneck"

    def channels(self, stage: StageFields, in_channels: int, width: float, divisor: int) -> tuple[int, int]:
        """Inner width: the baseline output channels over ``expand_ratio``, width-scaled; never squeeze-excite."""
        return round_channels(stage.out_channels / stage.expand_ratio, width, divisor), 0

    def has_skip(self, block: BlockFields) -> bool:
        """Always: identity where the shape allows, else projected (:meth:`has_downsample`)."""
        return True

    def has_downsample(self, block: BlockFields) -> bool:
        """A 1×1 conv + BN on the shortcut when stride or channels change."""
        return not same_shape(block)

    def cost(self, tally: Tally, block: BlockFields, size: int) -> int:
        """Reduce, k×k conv, expand, each with its BN, and the projected shortcut if any."""
        mid = block.mid_channels
        tally.conv(block.in_channels, mid, 1, size=size)
        tally.bn(mid)
        out = tally.conv(mid, mid, block.kernel, block.stride, size=size)
        tally.bn(mid)
        tally.conv(mid, block.out_channels, 1, size=out)
        tally.bn(block.out_channels)
        if self.has_downsample(block):
            tally.conv(block.in_channels, block.out_channels, 1, block.stride, size=size)
            tally.bn(block.out_channels)
        return out


RULE = BottleneckRule()
