"""MobileNetV1's depthwise-separable conv: k×k depthwise conv-BN-act, optional squeeze-excite, 1×1 pointwise
conv-BN-act; no residual. Module: :class:`effnet.models.layers.DepthwiseSeparable`."""

from __future__ import annotations

from effnet.blocks.base import BlockFields, BlockRule, StageFields, Tally, squeeze_channels
from effnet.errors import InvalidValue

__all__ = ["DepthwiseSeparableRule", "RULE"]


class DepthwiseSeparableRule(BlockRule):
    """No expansion (``expand_ratio`` must be 1): the depthwise conv runs at the block's input width."""

    kind = "dwsep"

    def validate(self, stage: StageFields) -> None:
        """``expand_ratio`` must be 1."""
        if stage.expand_ratio != 1:
            raise InvalidValue(
                f"expand_ratio of a dwsep stage must be 1 (it does not expand), got {stage.expand_ratio}"
            )

    def channels(self, stage: StageFields, in_channels: int, width: float, divisor: int) -> tuple[int, int]:
        """The input width (no expansion), and squeeze-excite width from the block input."""
        return in_channels, squeeze_channels(stage, in_channels)

    def has_skip(self, block: BlockFields) -> bool:
        """Never: MobileNetV1 has no residuals."""
        return False

    def cost(self, tally: Tally, block: BlockFields, size: int) -> int:
        """Depthwise conv, squeeze-excite, pointwise conv, each conv with its BN."""
        cin = block.in_channels
        out = tally.conv(cin, cin, block.kernel, block.stride, groups=cin, size=size)
        tally.bn(cin)
        tally.squeeze_excite(cin, block.se_channels)
        tally.conv(cin, block.out_channels, 1, size=out)
        tally.bn(block.out_channels)
        return out


RULE = DepthwiseSeparableRule()
