"""MBConv, the mobile inverted bottleneck (EfficientNet, MobileNetV2): 1×1 expand, k×k depthwise, squeeze-excite,
1×1 project; an identity residual where the shape allows. Module: :class:`effnet.models.layers.MBConv`."""

from __future__ import annotations

from effnet.blocks.base import (
    BlockFields,
    BlockRule,
    StageFields,
    Tally,
    expanded_channels,
    same_shape,
    squeeze_channels,
)

__all__ = ["MBConvRule", "RULE"]


class MBConvRule(BlockRule):
    """``expand_ratio`` widens the block input; ``expand_ratio`` 1 has no expand conv (B0's first stage)."""

    kind = "mbconv"

    def channels(self, stage: StageFields, in_channels: int, width: float, divisor: int) -> tuple[int, int]:
        """Expanded width of the block input, and squeeze-excite width from the block input."""
        return expanded_channels(stage, in_channels, divisor), squeeze_channels(stage, in_channels)

    def has_skip(self, block: BlockFields) -> bool:
        """An identity residual at stride 1 with equal channels."""
        return same_shape(block)

    def cost(self, tally: Tally, block: BlockFields, size: int) -> int:
        """Expand (if any), depthwise, squeeze-excite, project, each conv with its BN."""
        mid = block.mid_channels
        if mid != block.in_channels:
            tally.conv(block.in_channels, mid, 1, size=size)
            tally.bn(mid)
        out = tally.conv(mid, mid, block.kernel, block.stride, groups=mid, size=size)
        tally.bn(mid)
        tally.squeeze_excite(mid, block.se_channels)
        tally.conv(mid, block.out_channels, 1, size=out)
        tally.bn(block.out_channels)
        return out


RULE = MBConvRule()
