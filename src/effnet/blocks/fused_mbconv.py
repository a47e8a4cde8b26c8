"""Fused-MBConv (EfficientNetV2): one k×k expand conv, squeeze-excite, 1×1 project; with ``expand_ratio`` 1 a single
k×k conv to the output channels. Module: :class:`effnet.models.layers.FusedMBConv`."""

from __future__ import annotations

from effnet.blocks.base import BlockFields, Tally
from effnet.blocks.mbconv import MBConvRule

__all__ = ["FusedMBConvRule", "RULE"]


class FusedMBConvRule(MBConvRule):
    """MBConv's expand and depthwise convs fused into one full k×k conv; channels and skip are MBConv's."""

    kind = "fused_mbconv"

    def cost(self, tally: Tally, block: BlockFields, size: int) -> int:
        """The k×k conv (to ``mid`` when expanding, else straight to the output), squeeze-excite, project."""
        expand = block.mid_channels != block.in_channels
        conv_out = block.mid_channels if expand else block.out_channels
        out = tally.conv(block.in_channels, conv_out, block.kernel, block.stride, size=size)
        tally.bn(conv_out)
        tally.squeeze_excite(conv_out, block.se_channels)
        if expand:
            tally.conv(conv_out, block.out_channels, 1, size=out)
            tally.bn(block.out_channels)
        return out


RULE = FusedMBConvRule()
