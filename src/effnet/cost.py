"""Exact cost of a network from its spec, without building it: parameters, MACs, activations.

MACs count the multiply-adds of convolutions and linear layers (what the paper, torchvision and
timm call "FLOPs"); they equal ``torch.utils.flop_counter.FlopCounterMode`` total ÷ 2. Activations
are the output elements of every convolution and linear layer (the convention of Dollár et al.
2021). Parameters equal ``sum(p.numel() for p in model.parameters())`` of the built module.
All counts are for batch 1. Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from effnet.limits import MAX_RESOLUTION, MIN_RESOLUTION, check_int
from effnet.specs import NetworkSpec, ResolvedNetwork, get_spec, resolve

__all__ = ["StageCost", "Cost", "cost"]


@dataclass(frozen=True)
class StageCost:
    """Cost of one part of the network (stem, a stage, head or classifier) and its output shape."""

    name: str
    repeats: int
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    expand_ratio: float
    output_size: int
    params: int
    macs: int
    activations: int
    block: str = ""
    """The stage's block kind (``mbconv``, ``fused_mbconv``, ``bottleneck``, ``dwsep``); empty for stem, head,
    classifier."""


@dataclass(frozen=True)
class Cost:
    """Totals for a network at one input resolution, with the per-part breakdown."""

    name: str
    resolution: int
    params: int
    macs: int
    activations: int
    parts: tuple[StageCost, ...]

    @property
    def flops(self) -> int:
        """Floating-point operations, counting a multiply-add as two (``2 × macs``)."""
        return 2 * self.macs


class _Tally:
    """Accumulates params/MACs/activations of conv, BN and linear layers for one part."""

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
        """Add a conv applied to a ``size``×``size`` input (default: the running size); return out size."""
        in_size = self.size if size is None else size
        out_size = int(math.ceil(in_size / stride))
        per_pixel = cout * (cin // groups) * kernel * kernel
        self.params += per_pixel + (cout if bias else 0)
        self.macs += per_pixel * out_size * out_size
        self.activations += cout * out_size * out_size
        return out_size

    def bn(self, channels: int) -> None:
        self.params += 2 * channels

    def linear(self, fin: int, fout: int) -> None:
        self.params += fin * fout + fout
        self.macs += fin * fout
        self.activations += fout


def _block(t: _Tally, b, act_size: int) -> int:  # b: BlockConfig
    if b.block == "mbconv":
        if b.mid_channels != b.in_channels:
            t.conv(b.in_channels, b.mid_channels, 1, size=act_size)
            t.bn(b.mid_channels)
        out = t.conv(b.mid_channels, b.mid_channels, b.kernel, b.stride, groups=b.mid_channels, size=act_size)
        t.bn(b.mid_channels)
        if b.se_channels:
            t.conv(b.mid_channels, b.se_channels, 1, bias=True, size=1)
            t.conv(b.se_channels, b.mid_channels, 1, bias=True, size=1)
        t.conv(b.mid_channels, b.out_channels, 1, size=out)
        t.bn(b.out_channels)
        return out
    if b.block == "fused_mbconv":
        return _fused(t, b, act_size)
    if b.block == "dwsep":
        return _dwsep(t, b, act_size)
    t.conv(b.in_channels, b.mid_channels, 1, size=act_size)
    t.bn(b.mid_channels)
    out = t.conv(b.mid_channels, b.mid_channels, b.kernel, b.stride, size=act_size)
    t.bn(b.mid_channels)
    t.conv(b.mid_channels, b.out_channels, 1, size=out)
    t.bn(b.out_channels)
    if b.has_downsample:
        t.conv(b.in_channels, b.out_channels, 1, b.stride, size=act_size)
        t.bn(b.out_channels)
    return out


def _fused(t: _Tally, b, act_size: int) -> int:  # b: BlockConfig of a Fused-MBConv
    expand = b.mid_channels != b.in_channels
    conv_out = b.mid_channels if expand else b.out_channels
    out = t.conv(b.in_channels, conv_out, b.kernel, b.stride, size=act_size)
    t.bn(conv_out)
    if b.se_channels:
        t.conv(conv_out, b.se_channels, 1, bias=True, size=1)
        t.conv(b.se_channels, conv_out, 1, bias=True, size=1)
    if expand:
        t.conv(conv_out, b.out_channels, 1, size=out)
        t.bn(b.out_channels)
    return out


def _dwsep(t: _Tally, b, act_size: int) -> int:  # b: BlockConfig of a depthwise-separable conv
    out = t.conv(b.in_channels, b.in_channels, b.kernel, b.stride, groups=b.in_channels, size=act_size)
    t.bn(b.in_channels)
    if b.se_channels:
        t.conv(b.in_channels, b.se_channels, 1, bias=True, size=1)
        t.conv(b.se_channels, b.in_channels, 1, bias=True, size=1)
    t.conv(b.in_channels, b.out_channels, 1, size=out)
    t.bn(b.out_channels)
    return out


def _validate_resolution(resolution: object) -> int:
    return check_int("resolution", resolution, MIN_RESOLUTION, MAX_RESOLUTION)


def cost(name_or_spec: str | NetworkSpec | ResolvedNetwork, resolution: int | None = None) -> Cost:
    """Exact params, MACs and activations of a named model or spec at ``resolution`` (default: its own).

    ``resolution`` must be an integer in ``[8, 2048]`` (:mod:`effnet.limits`); any other argument type is a
    one-line ``ValueError`` (also a ``TypeError``) naming what is accepted.
    """
    net = name_or_spec if isinstance(name_or_spec, ResolvedNetwork) else resolve(get_spec(name_or_spec))
    spec = net.spec
    res = _validate_resolution(spec.resolution if resolution is None else resolution)
    parts: list[StageCost] = []

    t = _Tally(res)
    size = t.conv(spec.in_chans, net.stem_channels, spec.stem_kernel, spec.stem_stride)
    t.bn(net.stem_channels)
    if spec.stem_pool:
        size = int(math.ceil(size / 2))
    parts.append(
        StageCost(
            "stem",
            1,
            spec.in_chans,
            net.stem_channels,
            spec.stem_kernel,
            spec.stem_stride * (2 if spec.stem_pool else 1),
            1.0,
            size,
            t.params,
            t.macs,
            t.activations,
        )
    )

    for i, (stage_spec, blocks) in enumerate(zip(spec.stages, net.stages, strict=True)):
        t = _Tally(size)
        for b in blocks:
            size = _block(t, b, size)
        parts.append(
            StageCost(
                f"stage{i}",
                len(blocks),
                blocks[0].in_channels,
                blocks[-1].out_channels,
                stage_spec.kernel,
                stage_spec.stride,
                stage_spec.expand_ratio,
                size,
                t.params,
                t.macs,
                t.activations,
                stage_spec.block,
            )
        )

    feats = net.features
    if net.head_channels:
        t = _Tally(size)
        t.conv(net.stages[-1][-1].out_channels, net.head_channels, 1)
        t.bn(net.head_channels)
        parts.append(
            StageCost(
                "head",
                1,
                net.stages[-1][-1].out_channels,
                net.head_channels,
                1,
                1,
                1.0,
                size,
                t.params,
                t.macs,
                t.activations,
            )
        )
    t = _Tally(1)
    t.linear(feats, spec.num_classes)
    parts.append(StageCost("classifier", 1, feats, spec.num_classes, 1, 1, 1.0, 1, t.params, t.macs, t.activations))

    return Cost(
        name=spec.name,
        resolution=res,
        params=sum(p.params for p in parts),
        macs=sum(p.macs for p in parts),
        activations=sum(p.activations for p in parts),
        parts=tuple(parts),
    )
