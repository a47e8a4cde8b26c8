"""Building blocks: conv-BN-activation, TF "same" padding, squeeze-excite, drop-path, MBConv, Fused-MBConv
(EfficientNetV2), the ResNet bottleneck and MobileNetV1's depthwise-separable conv, and :data:`BLOCK_MODULES`,
the module class of every block kind of :data:`effnet.blocks.REGISTRY`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn

from effnet.blocks.base import BlockKind
from effnet.errors import InvalidValue
from effnet.specs import BlockConfig

__all__ = [
    "make_activation",
    "batch_norm_act",
    "Conv2dSame",
    "make_conv",
    "ConvBNAct",
    "SqueezeExcite",
    "DropPath",
    "MBConv",
    "FusedMBConv",
    "Bottleneck",
    "DepthwiseSeparable",
    "BLOCK_MODULES",
]


def make_activation(name: str) -> nn.Module:
    """The activation module for a spec's ``activation`` name (``silu``, ``relu`` or ``relu6``)."""
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    raise InvalidValue(f"activation must be one of silu, relu, relu6; got {name!r}")


class _BatchNormActFn(torch.autograd.Function):
    """Training-mode BatchNorm + SiLU/ReLU that saves only the BN *input* for backward.

    The plain composition saves both the BN input (for BN's backward) and the BN output (for the
    activation's backward). Here the BN output is recomputed in backward from the input and the
    batch statistics (one cheap elementwise pass), so each conv-BN-act keeps one activation-sized
    tensor fewer alive between forward and backward. Running statistics are updated exactly once.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, factor, eps, kind):
        y, mean, invstd = torch.ops.aten.native_batch_norm(
            x, weight, bias, running_mean, running_var, True, factor, eps
        )
        ctx.save_for_backward(x, weight, bias, mean, invstd)
        ctx.eps, ctx.kind = eps, kind
        return F.silu(y, inplace=True) if kind == "silu" else F.relu(y, inplace=True)

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias, mean, invstd = ctx.saved_tensors
        shape = (1, -1) + (1,) * (x.dim() - 2)
        alpha = invstd * weight
        scale, shift = alpha.view(shape), (bias - mean * alpha).view(shape)
        # The BN output, recomputed as BN computes it (fp32 math, one rounding to x's dtype under autocast).
        y = torch.addcmul(shift, x, scale) if x.dtype == scale.dtype else torch.addcmul(shift, x.float(), scale)
        y = y.to(x.dtype)
        if ctx.kind == "silu":
            grad_y = torch.ops.aten.silu_backward.grad_input(grad, y, grad_input=y)  # reuse y's buffer
        else:
            grad_y = grad.masked_fill(y <= 0, 0)
        del y
        need = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            grad_y, x, weight, None, None, mean, invstd, True, ctx.eps, need
        )
        return gx, gw, gb, None, None, None, None, None


def _lean_kind(bn: nn.Module, act: nn.Module) -> str | None:
    """``"silu"``/``"relu"`` when :func:`batch_norm_act` can replace ``act(bn(x))``, else None."""
    if type(bn) is not nn.BatchNorm2d or not bn.affine or not bn.track_running_stats:
        return None
    if type(act) is nn.SiLU:
        return "silu"
    if type(act) is nn.ReLU:
        return "relu"
    return None


def batch_norm_act(x: torch.Tensor, bn: nn.BatchNorm2d, act: nn.Module, *, lean: bool = True) -> torch.Tensor:
    """``act(bn(x))``, memory-lean in training (see ``_BatchNormActFn``), plain composition otherwise.

    The lean path is used only for training-mode BN with SiLU/ReLU under autograd, in eager mode
    (not while tracing, scripting or compiling, where the compiler does its own recomputation), and on
    CPU only: on a GPU it saves memory at a cost in training speed (both measured in ``benchmarks/RESULTS.md``),
    so CUDA tensors take the plain composition. ``lean=False`` always does.
    Numerically it matches the composition (same kernels forward; backward to float rounding).
    """
    kind = _lean_kind(bn, act)
    if (
        kind is None
        or not lean
        or x.device.type != "cpu"
        or not bn.training
        or not torch.is_grad_enabled()
        or not (x.requires_grad or bn.weight.requires_grad)
        or torch.jit.is_scripting()
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
    ):
        return act(bn(x))
    bn.num_batches_tracked.add_(1)
    factor = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    return _BatchNormActFn.apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, factor, bn.eps, kind)


def _same_pad(size: int, kernel: int, stride: int, dilation: int) -> int:
    return max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's ``padding="SAME"``: pads the extra pixel at the bottom/right.

    Used only for strided convs, where TF's padding is asymmetric; elsewhere it equals the
    symmetric padding, so weights ported from TF compute the same function.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
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


def make_conv(
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    bias: bool = False,
    padding: str = "symmetric",
) -> nn.Conv2d:
    """A conv with ``k // 2`` padding, or TF "same" padding where that differs (strided convs)."""
    if padding == "tf_same" and stride > 1:
        return Conv2dSame(in_channels, out_channels, kernel, stride, groups, bias)
    if padding not in ("symmetric", "tf_same"):
        raise InvalidValue(f"padding must be 'symmetric' or 'tf_same', got {padding!r}")
    return nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=bias)


class ConvBNAct(nn.Module):
    """Convolution, BatchNorm and an optional activation (``act`` is Identity when ``activation`` is None).

    ``lean`` (default True) lets training on CPU use the memory-lean :func:`batch_norm_act`; False always
    runs the plain composition (set model-wide by ``EfficientNet.set_lean_activations``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        activation: str | None = "silu",
        padding: str = "symmetric",
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        self.conv = make_conv(in_channels, out_channels, kernel, stride, groups, False, padding)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act = make_activation(activation) if activation else nn.Identity()
        self.lean = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # TorchScript compiles this branch only (it cannot script autograd.Function)
            return self.act(self.bn(self.conv(x)))
        else:
            return batch_norm_act(self.conv(x), self.bn, self.act, lean=self.lean)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global pool, 1×1 reduce, activation, 1×1 expand, sigmoid gate."""

    def __init__(self, channels: int, squeeze_channels: int, activation: str = "silu") -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1, bias=True)
        self.act = make_activation(activation)
        self.expand = nn.Conv2d(squeeze_channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # adaptive_avg_pool2d exports as ONNX GlobalAveragePool, which ONNX Runtime runs in its blocked (NCHWc)
        # layout; mean() exports as ReduceMean, which costs a layout reorder around every block.
        scale = F.adaptive_avg_pool2d(x, 1)
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

    def __init__(
        self,
        cfg: BlockConfig,
        activation: str = "silu",
        padding: str = "symmetric",
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        bn = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        mid = cfg.mid_channels
        self.has_skip = cfg.has_skip
        self.expand = (
            ConvBNAct(cfg.in_channels, mid, 1, activation=activation, **bn) if mid != cfg.in_channels else nn.Identity()
        )
        self.dw = ConvBNAct(mid, mid, cfg.kernel, cfg.stride, groups=mid, activation=activation, padding=padding, **bn)
        self.se = SqueezeExcite(mid, cfg.se_channels, activation) if cfg.se_channels else nn.Identity()
        self.project = ConvBNAct(mid, cfg.out_channels, 1, activation=None, **bn)
        self.drop_path = DropPath(cfg.drop_path) if self.has_skip else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))
        if self.has_skip:
            out = self.drop_path(out) + x
        return out


class FusedMBConv(nn.Module):
    """EfficientNetV2's Fused-MBConv: k×k expand conv (stride), squeeze-excite, 1×1 project, residual.

    Without expansion (``mid_channels == in_channels``) it is one k×k conv-BN-act to ``out_channels``
    (torchvision's single-conv FusedMBConv, timm's ``ConvBnAct``). The residual is added at stride 1
    with equal channels, as in MBConv.
    """

    def __init__(
        self,
        cfg: BlockConfig,
        activation: str = "silu",
        padding: str = "symmetric",
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        bn = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        expand = cfg.mid_channels != cfg.in_channels
        conv_out = cfg.mid_channels if expand else cfg.out_channels
        self.has_skip = cfg.has_skip
        self.expand = ConvBNAct(
            cfg.in_channels, conv_out, cfg.kernel, cfg.stride, activation=activation, padding=padding, **bn
        )
        self.se = SqueezeExcite(conv_out, cfg.se_channels, activation) if cfg.se_channels else nn.Identity()
        self.project = ConvBNAct(conv_out, cfg.out_channels, 1, activation=None, **bn) if expand else nn.Identity()
        self.drop_path = DropPath(cfg.drop_path) if self.has_skip else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.expand(x)))
        if self.has_skip:
            out = self.drop_path(out) + x
        return out


class Bottleneck(nn.Module):
    """ResNet bottleneck (v1.5: stride on the 3×3): 1×1 reduce, k×k, 1×1 expand, projected shortcut."""

    def __init__(
        self,
        cfg: BlockConfig,
        activation: str = "relu",
        padding: str = "symmetric",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
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


class DepthwiseSeparable(nn.Module):
    """MobileNetV1's depthwise-separable conv: k×k depthwise conv-BN-act (stride), optional squeeze-excite,
    1×1 pointwise conv-BN-act; no residual."""

    def __init__(
        self,
        cfg: BlockConfig,
        activation: str = "relu",
        padding: str = "symmetric",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        bn = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        cin = cfg.in_channels
        self.dw = ConvBNAct(cin, cin, cfg.kernel, cfg.stride, groups=cin, activation=activation, padding=padding, **bn)
        self.se = SqueezeExcite(cin, cfg.se_channels, activation) if cfg.se_channels else nn.Identity()
        self.pw = ConvBNAct(cin, cfg.out_channels, 1, activation=activation, **bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.se(self.dw(x)))


BLOCK_MODULES: Mapping[BlockKind, type[nn.Module]] = MappingProxyType(
    {
        "mbconv": MBConv,
        "fused_mbconv": FusedMBConv,
        "bottleneck": Bottleneck,
        "dwsep": DepthwiseSeparable,
    }
)
"""The module class of each block kind (read-only). Each takes ``(cfg: BlockConfig, activation, padding,
bn_eps=..., bn_momentum=...)`` and has exactly the params and MACs its kind's rule in :mod:`effnet.blocks` counts
(``tests/test_cost.py`` checks every kind)."""
