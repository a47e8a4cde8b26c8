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

from effnet.architectures import get_spec
from effnet.blocks import rule
from effnet.blocks.base import Tally
from effnet.limits import MAX_RESOLUTION, MIN_RESOLUTION, check_int
from effnet.specs import NetworkSpec, ResolvedNetwork, resolve

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
    """The stage's block kind (a name in :data:`effnet.blocks.REGISTRY`); empty for stem, head, classifier."""


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


def _validate_resolution(resolution: object) -> int:
    return check_int("resolution", resolution, MIN_RESOLUTION, MAX_RESOLUTION)


def _part(
    name: str,
    tally: Tally,
    in_channels: int,
    out_channels: int,
    output_size: int,
    *,
    repeats: int = 1,
    kernel: int = 1,
    stride: int = 1,
    expand_ratio: float = 1.0,
    block: str = "",
) -> StageCost:
    """A part's :class:`StageCost` from its shape and what ``tally`` counted."""
    return StageCost(
        name,
        repeats,
        in_channels,
        out_channels,
        kernel,
        stride,
        expand_ratio,
        output_size,
        tally.params,
        tally.macs,
        tally.activations,
        block,
    )


def _stem(net: ResolvedNetwork, resolution: int) -> StageCost:
    """The stem conv + BN (and max-pool, which has no params or MACs) on the input image."""
    spec = net.spec
    tally = Tally(resolution)
    size = tally.conv(spec.in_chans, net.stem_channels, spec.stem_kernel, spec.stem_stride)
    tally.bn(net.stem_channels)
    if spec.stem_pool:
        size = int(math.ceil(size / 2))
    stride = spec.stem_stride * (2 if spec.stem_pool else 1)
    return _part("stem", tally, spec.in_chans, net.stem_channels, size, kernel=spec.stem_kernel, stride=stride)


def _stages(net: ResolvedNetwork, size: int) -> list[StageCost]:
    """Every stage, each the sum of its blocks' costs by their kind's rule (:mod:`effnet.blocks`)."""
    parts = []
    for i, (stage, blocks) in enumerate(zip(net.spec.stages, net.stages, strict=True)):
        tally = Tally(size)
        for b in blocks:
            size = rule(b.block).cost(tally, b, size)
        parts.append(
            _part(
                f"stage{i}",
                tally,
                blocks[0].in_channels,
                blocks[-1].out_channels,
                size,
                repeats=len(blocks),
                kernel=stage.kernel,
                stride=stage.stride,
                expand_ratio=stage.expand_ratio,
                block=stage.block,
            )
        )
    return parts


def _head_and_classifier(net: ResolvedNetwork, size: int) -> list[StageCost]:
    """The 1×1 head conv + BN (if the network has one) and the linear classifier on the pooled features."""
    parts = []
    last = net.stages[-1][-1].out_channels
    if net.head_channels:
        tally = Tally(size)
        tally.conv(last, net.head_channels, 1)
        tally.bn(net.head_channels)
        parts.append(_part("head", tally, last, net.head_channels, size))
    tally = Tally(1)
    tally.linear(net.features, net.spec.num_classes)
    parts.append(_part("classifier", tally, net.features, net.spec.num_classes, 1))
    return parts


def cost(name_or_spec: str | NetworkSpec | ResolvedNetwork, resolution: int | None = None) -> Cost:
    """Exact params, MACs and activations of a named model or spec at ``resolution`` (default: its own).

    ``resolution`` must be an integer in ``[8, 2048]`` (:mod:`effnet.limits`); any other argument type is a
    one-line ``ValueError`` (also a ``TypeError``) naming what is accepted.
    """
    net = name_or_spec if isinstance(name_or_spec, ResolvedNetwork) else resolve(get_spec(name_or_spec))
    spec = net.spec
    res = _validate_resolution(spec.resolution if resolution is None else resolution)
    stem = _stem(net, res)
    stages = _stages(net, stem.output_size)
    parts = (stem, *stages, *_head_and_classifier(net, stages[-1].output_size))
    return Cost(
        name=spec.name,
        resolution=res,
        params=sum(p.params for p in parts),
        macs=sum(p.macs for p in parts),
        activations=sum(p.activations for p in parts),
        parts=parts,
    )
