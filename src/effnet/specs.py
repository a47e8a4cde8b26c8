"""Architecture as data: frozen specs for stages and networks, and their expansion into concrete blocks.

A :class:`NetworkSpec` describes a network completely (baseline stages, width/depth multipliers,
input size, head, regularisation, padding, classes). :func:`resolve` expands a spec into concrete per-block
channel counts, which both the cost model (:mod:`effnet.cost`) and the module builder
(:mod:`effnet.models.efficientnet`) read; each block kind's own rules come from :mod:`effnet.blocks`. The named
published networks, :func:`~effnet.architectures.get_spec` and :func:`~effnet.architectures.scale` are in
:mod:`effnet.architectures`. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from effnet.blocks import kinds, rule
from effnet.blocks.base import BlockKind
from effnet.errors import InvalidValue, check_type
from effnet.limits import (
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_EXPAND_RATIO,
    MAX_IN_CHANS,
    MAX_KERNEL,
    MAX_MULTIPLIER,
    MAX_REPEATS,
    MAX_RESOLUTION,
    MAX_STAGES,
    MAX_STRIDE,
    MIN_RESOLUTION,
    check_number,
    parse_json,
    read_json_file,
)
from effnet.scaling import BASE_RESOLUTION, round_channels, round_repeats

__all__ = [
    "Activation",
    "Padding",
    "HeadScaling",
    "StageSpec",
    "NetworkSpec",
    "BlockConfig",
    "ResolvedNetwork",
    "resolve",
    "require_known_fields",
]

Activation = Literal["silu", "relu", "relu6"]
Padding = Literal["symmetric", "tf_same"]
HeadScaling = Literal["scale", "fixed", "up"]

_ACTIVATIONS = ("silu", "relu", "relu6")
_PADDINGS = ("symmetric", "tf_same")
_HEAD_SCALINGS = ("scale", "fixed", "up")


def require_known_fields(cls: type, keys: Iterable[str], message: str) -> None:
    """``InvalidValue("<message>: a, b")`` (a ``ValueError``) naming the ``keys`` that are not fields of the
    dataclass ``cls``."""
    unknown = sorted(set(keys) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise InvalidValue(f"{message}: {', '.join(unknown)}")


def _require_int(name: str, value: Any, minimum: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidValue(f"{name} must be an integer in [{minimum}, {maximum}], got {value!r}")


def _require_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidValue(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _require_rate(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise InvalidValue(f"{name} must be a number in [0, 1), got {value!r}")


@dataclass(frozen=True)
class StageSpec:
    """One stage of identical blocks, at baseline width and depth.

    ``block``: a registered block kind (:func:`effnet.blocks.kinds`; each module of :mod:`effnet.blocks`
    describes its kind): ``"mbconv"`` (inverted bottleneck), ``"fused_mbconv"`` (EfficientNetV2),
    ``"bottleneck"`` (ResNet) or ``"dwsep"`` (MobileNetV1's depthwise-separable conv; ``expand_ratio`` must be 1).
    ``expand_ratio`` is the (Fused-)MBConv expansion of its input channels, or the ResNet ratio of output to
    inner channels; the kind's rule checks what else it requires.
    ``stride`` applies to the first block only. ``se_ratio`` = 0 disables squeeze-excite.
    ``scale_repeats`` = False keeps ``repeats`` fixed under depth scaling (Lite's first and last stage).
    """

    block: BlockKind
    expand_ratio: float
    kernel: int
    stride: int
    out_channels: int
    repeats: int
    se_ratio: float = 0.25
    scale_repeats: bool = True

    def __post_init__(self) -> None:
        _require_choice("block", self.block, kinds())
        check_number("expand_ratio", self.expand_ratio, 1, MAX_EXPAND_RATIO)
        _require_int("kernel", self.kernel, 1, MAX_KERNEL)
        if self.kernel % 2 == 0:
            raise InvalidValue(f"kernel must be odd, got {self.kernel}")
        _require_int("stride", self.stride, 1, MAX_STRIDE)
        _require_int("out_channels", self.out_channels, 1, MAX_CHANNELS)
        _require_int("repeats", self.repeats, 1, MAX_REPEATS)
        check_number("se_ratio", self.se_ratio, 0, 1)
        if not isinstance(self.scale_repeats, bool):
            raise InvalidValue(f"scale_repeats must be true or false, got {self.scale_repeats!r}")
        rule(self.block).validate(self)


@dataclass(frozen=True)
class NetworkSpec:
    """A whole network: baseline stages plus the multipliers and options that make a variant.

    ``width`` and ``depth`` multiply the baseline's channels and repeats (rounded as the TF code
    does); ``resolution`` is the input size the network is costed and built for. ``head_scaling``
    says how the final 1×1 conv follows width: ``"scale"`` (EfficientNet), ``"fixed"`` (Lite) or
    ``"up"`` (MobileNetV2: never below its baseline). ``head_channels`` = 0 means no head conv.
    ``round_limit``: width-scaled stem/stage/head channels are never rounded below this fraction of the
    exact value (0.9 in the TF EfficientNet code; 0 in its EfficientNetV2-B* family).
    """

    name: str
    stages: tuple[StageSpec, ...]
    stem_channels: int = 32
    stem_kernel: int = 3
    stem_stride: int = 2
    stem_pool: bool = False
    scale_stem: bool = True
    head_channels: int = 1280
    head_scaling: HeadScaling = "scale"
    width: float = 1.0
    depth: float = 1.0
    resolution: int = BASE_RESOLUTION
    dropout: float = 0.2
    drop_path_rate: float = 0.2
    activation: Activation = "silu"
    num_classes: int = 1000
    in_chans: int = 3
    padding: Padding = "symmetric"
    divisor: int = 8
    bn_eps: float = 1e-3
    bn_momentum: float = 0.01
    family: str = field(default="efficientnet")
    round_limit: float = 0.9

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidValue(f"name must be a non-empty string, got {self.name!r}")
        if isinstance(self.stages, (str, bytes, dict)) or not hasattr(self.stages, "__iter__"):
            raise InvalidValue(f"stages must be a non-empty sequence of StageSpec, got {type(self.stages).__name__}")
        stages = tuple(self.stages)
        if not stages or not all(isinstance(s, StageSpec) for s in stages):
            raise InvalidValue("stages must be a non-empty sequence of StageSpec")
        if len(stages) > MAX_STAGES:
            raise InvalidValue(f"a spec has at most {MAX_STAGES} stages, got {len(stages)}")
        object.__setattr__(self, "stages", stages)
        _require_int("stem_channels", self.stem_channels, 1, MAX_CHANNELS)
        _require_int("stem_kernel", self.stem_kernel, 1, MAX_KERNEL)
        _require_int("stem_stride", self.stem_stride, 1, MAX_STRIDE)
        _require_int("head_channels", self.head_channels, 0, MAX_CHANNELS)
        _require_choice("head_scaling", self.head_scaling, _HEAD_SCALINGS)
        check_number("width", self.width, 0, MAX_MULTIPLIER, low_open=True)
        check_number("depth", self.depth, 0, MAX_MULTIPLIER, low_open=True)
        _require_int("resolution", self.resolution, MIN_RESOLUTION, MAX_RESOLUTION)
        _require_rate("dropout", self.dropout)
        _require_rate("drop_path_rate", self.drop_path_rate)
        _require_choice("activation", self.activation, _ACTIVATIONS)
        _require_int("num_classes", self.num_classes, 1, MAX_CLASSES)
        _require_int("in_chans", self.in_chans, 1, MAX_IN_CHANS)
        _require_choice("padding", self.padding, _PADDINGS)
        _require_int("divisor", self.divisor, 1, MAX_CHANNELS)
        check_number("bn_eps", self.bn_eps, 0, 1, low_open=True)
        check_number("bn_momentum", self.bn_momentum, 0, 1)
        for label, value in (("stem_pool", self.stem_pool), ("scale_stem", self.scale_stem)):
            if not isinstance(value, bool):
                raise InvalidValue(f"{label} must be true or false, got {value!r}")
        if not isinstance(self.family, str):
            raise InvalidValue(f"family must be a string, got {self.family!r}")
        _require_rate("round_limit", self.round_limit)

    def replace(self, **changes: Any) -> NetworkSpec:
        """A copy with ``changes`` applied (validated); the original is untouched."""
        require_known_fields(NetworkSpec, changes, "unknown NetworkSpec field(s)")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it."""
        data = dataclasses.asdict(self)
        data["stages"] = [dataclasses.asdict(s) for s in self.stages]
        return data

    def to_json(self) -> str:
        """The spec as a JSON string (stable key order)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkSpec:
        """Rebuild a spec from :meth:`to_dict` output; unknown or missing fields are an ``InvalidValue``."""
        if not isinstance(data, dict):
            raise InvalidValue(f"a network spec must be a JSON object, got {type(data).__name__}")
        require_known_fields(cls, data, "unknown NetworkSpec field(s)")
        if "stages" not in data or "name" not in data:
            raise InvalidValue("a network spec needs at least 'name' and 'stages'")
        if not isinstance(data["stages"], list):
            kind = type(data["stages"]).__name__
            raise InvalidValue(f"a network spec's 'stages' must be a list of objects, got {kind}")
        stages = []
        for i, stage in enumerate(data["stages"]):
            if not isinstance(stage, dict):
                raise InvalidValue(f"stages[{i}] must be an object, got {type(stage).__name__}")
            require_known_fields(StageSpec, stage, f"stages[{i}] has unknown field(s)")
            try:
                stages.append(StageSpec(**stage))
            except TypeError as exc:
                raise InvalidValue(f"stages[{i}]: {exc}") from None
        return cls(**{**data, "stages": tuple(stages)})

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> NetworkSpec:
        """Read a spec JSON file (:meth:`to_json`); a missing, oversized or invalid file is one line naming it."""
        data = read_json_file(path, "spec file")
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise InvalidValue(f"spec file {path}: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> NetworkSpec:
        """Parse a spec from JSON text (at most :data:`effnet.limits.MAX_JSON_BYTES`, nested at most 16 deep)."""
        return cls.from_dict(parse_json(text, "network spec"))


@dataclass(frozen=True)
class BlockConfig:
    """One concrete block after scaling: channel counts, kernel, stride, drop-path rate."""

    block: BlockKind
    stage: int
    index: int
    in_channels: int
    mid_channels: int
    out_channels: int
    kernel: int
    stride: int
    se_channels: int
    drop_path: float

    @property
    def has_skip(self) -> bool:
        """Whether the block adds a residual, by its kind's rule (MBConv: only at stride 1 with equal channels;
        ResNet always, dwsep never)."""
        return rule(self.block).has_skip(self)

    @property
    def has_downsample(self) -> bool:
        """Whether the residual is projected (1×1 conv + BN), by its kind's rule (ResNet: when stride or channels
        change)."""
        return rule(self.block).has_downsample(self)


@dataclass(frozen=True)
class ResolvedNetwork:
    """A spec expanded to concrete channels: what the builder builds and the cost model costs."""

    spec: NetworkSpec
    stem_channels: int
    stages: tuple[tuple[BlockConfig, ...], ...]
    head_channels: int

    @property
    def features(self) -> int:
        """Channels entering the classifier."""
        return self.head_channels or self.stages[-1][-1].out_channels

    @property
    def blocks(self) -> tuple[BlockConfig, ...]:
        """All blocks in order."""
        return tuple(b for stage in self.stages for b in stage)

    def stage_strides(self) -> list[int]:
        """Cumulative stride (input pixels per output pixel) after each stage."""
        stride = self.spec.stem_stride * (2 if self.spec.stem_pool else 1)
        out = []
        for stage in self.stages:
            stride *= stage[0].stride
            out.append(stride)
        return out

    def feature_stages(self) -> list[int]:
        """Indices of the last stage at each distinct cumulative stride (``features_only`` taps)."""
        strides = self.stage_strides()
        return [i for i, s in enumerate(strides) if i == len(strides) - 1 or strides[i + 1] != s]


def resolve(spec: NetworkSpec) -> ResolvedNetwork:
    """Expand a spec into concrete blocks (rounded channels, ceil'd repeats, drop-path rates)."""
    check_type("resolve's spec", spec, NetworkSpec, "a NetworkSpec (effnet.get_spec('efficientnet_b0') names one)")
    width, div, limit = spec.width, spec.divisor, spec.round_limit
    stem = round_channels(spec.stem_channels, width, div, limit) if spec.scale_stem else spec.stem_channels
    repeats = [round_repeats(s.repeats, spec.depth) if s.scale_repeats else s.repeats for s in spec.stages]
    total = sum(repeats)
    stages: list[tuple[BlockConfig, ...]] = []
    in_ch, index = stem, 0
    for stage_index, (stage, count) in enumerate(zip(spec.stages, repeats, strict=True)):
        out_ch = round_channels(stage.out_channels, width, div, limit)
        kind = rule(stage.block)
        blocks = []
        for j in range(count):
            mid, se = kind.channels(stage, in_ch, width, div)
            blocks.append(
                BlockConfig(
                    block=stage.block,
                    stage=stage_index,
                    index=index,
                    in_channels=in_ch,
                    mid_channels=mid,
                    out_channels=out_ch,
                    kernel=stage.kernel,
                    stride=stage.stride if j == 0 else 1,
                    se_channels=se,
                    drop_path=spec.drop_path_rate * index / total,
                )
            )
            in_ch = out_ch
            index += 1
        stages.append(tuple(blocks))
    if spec.head_channels == 0:
        head = 0
    elif spec.head_scaling == "scale":
        head = round_channels(spec.head_channels, width, div, limit)
    elif spec.head_scaling == "up":
        head = round_channels(spec.head_channels, max(1.0, width), div, limit)
    else:
        head = spec.head_channels
    return ResolvedNetwork(spec=spec, stem_channels=stem, stages=tuple(stages), head_channels=head)
