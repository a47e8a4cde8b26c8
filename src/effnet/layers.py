"""Building blocks: conv-BN-activation, TF "same" padding, squeeze-excite, drop-path, MBConv, ResNet bottleneck."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from effnet.specs import BlockConfig

__all__ = [
    "make_activation",
    "Conv2dSame",
    "make_conv",
    "ConvBNAct",
    "SqueezeExcite",
    "DropPath",
    "MBConv",
    "Bottleneck",
]


def make_activation(name: str) -> nn.Module:
    """The activation module for a spec's ``activation`` name (``silu``, ``relu`` or ``relu6``)."""
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    raise ValueError(f"activation must be one of silu, relu, relu6; got {name!r}")


def _same_pad(size: int, kernel: int, stride: int, dilation: int) -> int:
    return max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's ``padding="SAME"``: pads the extra pixel at the bottom/right.

    Used only for strided convs, where TF's padding is asymmetric; elsewhere it equals the
    symmetric padding, so weights ported from TF compute the same function.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = False) -> None:  # fmt: skip
        super().__init__(in_channels, out_channels, kernel_size, stride, 0, 1, groups, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2], x.shape[-1]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        dh, dw = self.dilation
        pad_h = _same_pad(ih, kh, sh, dh)
        pad_w = _same_pad(iw, kw, sw, dw)
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def make_conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
              bias: bool = False, padding: str = "symmetric") -> nn.Conv2d:  # fmt: skip
    """A conv with ``k // 2`` padding, or TF "same" padding where that differs (strided convs)."""
    if padding == "tf_same" and stride > 1:
        return Conv2dSame(in_channels, out_channels, kernel, stride, groups, bias)
    if padding not in ("symmetric", "tf_same"):
        raise ValueError(f"padding must be 'symmetric' or 'tf_same', got {padding!r}")
    return nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=bias)


class ConvBNAct(nn.Module):
    """Convolution, BatchNorm and an optional activation (``act`` is Identity when ``activation`` is None)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
                 activation: str | None = "silu", padding: str = "symmetric",
                 bn_eps: float = 1e-3, bn_momentum: float = 0.01) -> None:  # fmt: skip
        super().__init__()
        self.conv = make_conv(in_channels, out_channels, kernel, stride, groups, False, padding)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act = make_activation(activation) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global pool, 1×1 reduce, activation, 1×1 expand, sigmoid gate."""

    def __init__(self, channels: int, squeeze_channels: int, activation: str = "silu") -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1, bias=True)
        self.act = make_activation(activation)
        self.expand = nn.Conv2d(squeeze_channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.expand(self.act(self.reduce(scale)))
        return x * scale.sigmoid()


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability ``rate`` while training, rescaled."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4f}"


class MBConv(nn.Module):
    """Mobile inverted bottleneck: 1×1 expand, k×k depthwise, squeeze-excite, 1×1 project, residual."""

    def __init__(self, cfg: BlockConfig, activation: str = "silu", padding: str = "symmetric",
                 bn_eps: float = 1e-3, bn_momentum: float = 0.01) -> None:  # fmt: skip
        super().__init__()
        bn = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        mid = cfg.mid_channels
        self.has_skip = cfg.has_skip
        self.expand = (
            ConvBNAct(cfg.in_channels, mid, 1, activation=activation, **bn)
            if mid != cfg.in_channels
            else nn.Identity()
        )
        self.dw = ConvBNAct(mid, mid, cfg.kernel, cfg.stride, groups=mid, activation=activation,
                            padding=padding, **bn)  # fmt: skip
        self.se = SqueezeExcite(mid, cfg.se_channels, activation) if cfg.se_channels else nn.Identity()
        self.project = ConvBNAct(mid, cfg.out_channels, 1, activation=None, **bn)
        self.drop_path = DropPath(cfg.drop_path) if self.has_skip else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))
        if self.has_skip:
            out = self.drop_path(out) + x
        return out


class Bottleneck(nn.Module):
    """ResNet bottleneck (v1.5: stride on the 3×3): 1×1 reduce, k×k, 1×1 expand, projected shortcut."""

    def __init__(self, cfg: BlockConfig, activation: str = "relu", padding: str = "symmetric",
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1) -> None:  # fmt: skip
        super().__init__()
        bn = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        mid = cfg.mid_channels
        self.reduce = ConvBNAct(cfg.in_channels, mid, 1, activation=activation, **bn)
        self.conv = ConvBNAct(mid, mid, cfg.kernel, cfg.stride, activation=activation, padding=padding, **bn)
        self.expand = ConvBNAct(mid, cfg.out_channels, 1, activation=None, **bn)
        self.downsample = (
            ConvBNAct(cfg.in_channels, cfg.out_channels, 1, cfg.stride, activation=None, padding=padding, **bn)
            if cfg.has_downsample
            else nn.Identity()
        )
        self.drop_path = DropPath(cfg.drop_path)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(self.conv(self.reduce(x)))
        return self.act(self.drop_path(out) + self.downsample(x))
