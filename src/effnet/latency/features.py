"""What the latency model reads from a network: per-part features, computed from the spec alone (torch-free).

Each part of a network (stem, every stage, head, classifier) becomes a vector of features, each a count the time
of an engine grows with: multiply-adds of each kind of convolution, activation memory a convolution reads and
writes, weights read, elements through an activation, a squeeze-excite gate or a residual add, the number of
convolutions (a fixed cost each) and one call per network. A profile's :class:`~effnet.latency.profile.LatencyModel`
holds one coefficient per feature (ms per unit), fitted on measured parts and networks, so a prediction is a sum.

The features are found by running each block kind's own cost rule (:mod:`effnet.blocks`) on a recording
:class:`~effnet.blocks.base.Tally`, so every registered kind is covered without a per-kind table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass

from effnet.blocks import rule
from effnet.blocks.base import Tally
from effnet.specs import BlockConfig, NetworkSpec, ResolvedNetwork, resolve

__all__ = [
    "FEATURES",
    "BYTES_PER_ELEMENT",
    "DEFAULT_CACHE_BYTES",
    "Context",
    "Conv",
    "Part",
    "network_parts",
    "block_features",
    "BlockFeatures",
]

FEATURES: tuple[str, ...] = (
    "pw_macs",
    "pw_macs_narrow",
    "kxk_macs",
    "dw_macs",
    "pw_in",
    "pw_out",
    "dw_io",
    "kxk_io",
    "spill",
    "weights",
    "act_silu",
    "act_clip",
    "gate",
    "add",
    "output",
    "convs",
    "call",
)
"""The features, in order. ``pw_macs``: multiply-adds of dense 1×1 convolutions; ``pw_macs_narrow``: the part of
them in convolutions with fewer than :data:`NARROW` input or output channels (slower per multiply-add);
``kxk_macs``: dense k×k (k > 1); ``dw_macs``: depthwise; ``conv_io``: input plus output elements of every
convolution; ``weights``: parameters read; ``act_silu`` / ``act_clip``: elements through a SiLU / a ReLU or ReLU6;
``gate``: elements a squeeze-excite gate pools and scales; ``add``: residual-add and max-pool elements; ``convs``:
convolutions (a fixed cost each, squeeze-excite's 1×1 ones included); ``call``: one per network run."""
BYTES_PER_ELEMENT = {"fp32": 4, "bf16": 2, "int8": 1}
"""Bytes of one weight or activation element at each precision."""
DEFAULT_CACHE_BYTES = 2 << 20
"""The cache a tensor must fit in (per core: a common L2) when the profile does not say."""
NARROW = 64
"""Below this many input or output channels a 1×1 convolution is memory-bound (``pw_macs_narrow``)."""


@dataclass(frozen=True)
class Conv:
    """One convolution or linear layer as a cost rule reported it (``size``: input side; linear: 1)."""

    cin: int
    cout: int
    kernel: int
    stride: int
    groups: int
    size: int
    out_size: int
    bias: bool

    @property
    def macs(self) -> int:
        """Multiply-adds per image."""
        return self.cout * (self.cin // self.groups) * self.kernel * self.kernel * self.out_size * self.out_size


class _Recorder(Tally):
    """A :class:`Tally` that also records each convolution it is told about."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.convs: list[Conv] = []

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
        out = super().conv(cin, cout, kernel, stride, groups, bias, size)
        self.convs.append(Conv(cin, cout, kernel, stride, groups, self.size if size is None else size, out, bias))
        return out


@dataclass(frozen=True)
class Context:
    """What features depend on beyond the network: its ``activation``, the ``batch`` per call, and the bytes of
    cache a tensor must fit in not to spill (``cache_bytes``) at ``element_bytes`` per element."""

    activation: str = "silu"
    batch: int = 1
    cache_bytes: int = DEFAULT_CACHE_BYTES
    element_bytes: int = 4

    def spilled(self, elements: int) -> float:
        """``elements`` × batch if a tensor of that many elements per image overflows the cache, else 0."""
        total = elements * self.batch
        return float(total) if total * self.element_bytes > self.cache_bytes else 0.0


@dataclass(frozen=True)
class Part:
    """One part of a network: its name (``stem``, ``stage0``, ..., ``head``, ``classifier``), features at the
    context's batch (in :data:`FEATURES` order), parameters, and peak live activation elements per image: the
    largest input plus output (plus a residual input held for its add) of any of its convolutions, as an engine
    that frees each tensor after its last use needs."""

    name: str
    features: tuple[float, ...]
    params: int = 0
    peak: int = 0


def _conv_features(convs: Iterable[Conv], ctx: Context, last_no_act: bool) -> dict[str, float]:
    out = dict.fromkeys(FEATURES, 0.0)
    convs = list(convs)
    spatial = [c for c in convs if not c.bias]  # squeeze-excite's 1×1 convolutions on the pooled map have a bias
    n = ctx.batch
    for i, c in enumerate(spatial):
        elements, read = c.cout * c.out_size * c.out_size, c.cin * c.size * c.size
        out["spill"] += ctx.spilled(read) + ctx.spilled(elements)
        elements, read = elements * n, read * n
        if c.groups > 1 and c.groups == c.cin:
            out["dw_macs"] += c.macs * n
            out["dw_io"] += read + elements
        elif c.kernel == 1:
            out["pw_macs"] += c.macs * n
            out["pw_in"] += read
            out["pw_out"] += elements
            if min(c.cin, c.cout) < NARROW:
                out["pw_macs_narrow"] += c.macs * n
        else:
            out["kxk_macs"] += c.macs * n
            out["kxk_io"] += read + elements
        if not (last_no_act and i == len(spatial) - 1):
            out["act_silu" if ctx.activation == "silu" else "act_clip"] += elements
    for c in convs:
        out["weights"] += c.cout * (c.cin // c.groups) * c.kernel * c.kernel
        out["convs"] += 1
    return out


@dataclass(frozen=True)
class BlockFeatures:
    """One block's features, output size, parameters and peak live activation elements per image."""

    features: tuple[float, ...]
    out_size: int
    params: int
    peak: int


def block_features(block: BlockConfig, size: int, ctx: Context) -> BlockFeatures:
    """One block's features in ``ctx`` on a ``size``×``size`` input (module docstring)."""
    recorder = _Recorder(size)
    kind = rule(block.block)
    out_size = kind.cost(recorder, block, size)
    spatial = [c for c in recorder.convs if not c.bias]
    # the last convolution of a block is linear (a projection) unless its kind ends on an activation
    # (MobileNetV1's depthwise-separable conv, ResNet's bottleneck after its add)
    last_linear = block.block in ("mbconv", "fused_mbconv")
    values = _conv_features(recorder.convs, ctx, last_linear)
    for c in recorder.convs:
        if c.bias and c.cout < c.cin:  # the squeeze conv: the gate pools and scales the map it reads
            source = next((s for s in reversed(spatial) if s.cout == c.cin), None)
            values["gate"] += c.cin * (source.out_size**2 if source else out_size**2) * ctx.batch
    skip = kind.has_skip(block)
    if skip:
        values["add"] += block.out_channels * out_size * out_size * ctx.batch
    held = block.in_channels * size * size if skip else 0
    peak = max(c.cin * c.size**2 + c.cout * c.out_size**2 + held for c in spatial)
    return BlockFeatures(tuple(values[name] for name in FEATURES), out_size, recorder.params, peak)


def _sum(vectors: Iterable[tuple[float, ...]]) -> tuple[float, ...]:
    total = [0.0] * len(FEATURES)
    for v in vectors:
        for i, x in enumerate(v):
            total[i] += x
    return tuple(total)


def _stem(net: ResolvedNetwork, resolution: int, ctx: Context) -> tuple[Part, int]:
    spec = net.spec
    recorder = _Recorder(resolution)
    size = recorder.conv(spec.in_chans, net.stem_channels, spec.stem_kernel, spec.stem_stride)
    values = _conv_features(recorder.convs, ctx, False)
    peak = spec.in_chans * resolution**2 + net.stem_channels * size * size
    if spec.stem_pool:
        values["add"] += net.stem_channels * size * size * ctx.batch
        size = int(math.ceil(size / 2))
    values["call"] = 1.0  # the call's own cost is shown with the stem, where the input enters
    recorder.bn(net.stem_channels)
    return Part("stem", tuple(values[name] for name in FEATURES), recorder.params, peak), size


def _head_and_classifier(net: ResolvedNetwork, size: int, ctx: Context) -> list[Part]:
    spec, parts = net.spec, []
    last = net.stages[-1][-1].out_channels
    if net.head_channels:
        recorder = _Recorder(size)
        recorder.conv(last, net.head_channels, 1)
        recorder.bn(net.head_channels)
        values = _conv_features(recorder.convs, ctx, False)
        peak = (last + net.head_channels) * size * size
        parts.append(Part("head", tuple(values[name] for name in FEATURES), recorder.params, peak))
    values = dict.fromkeys(FEATURES, 0.0)
    values["gate"] = net.features * size * size * ctx.batch  # the global average pool reads the last map once
    values["weights"] = net.features * spec.num_classes
    values["pw_macs"] = net.features * spec.num_classes * ctx.batch
    values["convs"] = 1.0
    values["output"] = spec.num_classes * ctx.batch
    params = (net.features + 1) * spec.num_classes
    parts.append(Part("classifier", tuple(values[name] for name in FEATURES), params, net.features * size * size))
    return parts


def network_parts(
    spec: NetworkSpec | ResolvedNetwork, resolution: int | None = None, ctx: Context | None = None
) -> tuple[Part, ...]:
    """Every part of the network (stem, each stage, head, classifier) with its features at ``resolution`` (default:
    the spec's own) in ``ctx`` (default: batch 1, fp32; the activation is always the spec's)."""
    net = spec if isinstance(spec, ResolvedNetwork) else resolve(spec)
    ctx = dataclasses.replace(ctx or Context(), activation=net.spec.activation)
    stem, size = _stem(net, resolution or net.spec.resolution, ctx)
    parts = [stem]
    for i, stage in enumerate(net.stages):
        found = []
        for block in stage:
            found.append(block_features(block, size, ctx))
            size = found[-1].out_size
        params, peak = sum(b.params for b in found), max(b.peak for b in found)
        parts.append(Part(f"stage{i}", _sum(b.features for b in found), params, peak))
    return (*parts, *_head_and_classifier(net, size, ctx))
