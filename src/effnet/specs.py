"""Architecture as data: frozen specs for stages and networks, and the named baselines.

A :class:`NetworkSpec` describes a network completely (baseline stages, width/depth multipliers,
input size, head, regularisation, padding, classes). :func:`scale` is a pure spec-to-spec function;
:func:`resolve` expands a spec into concrete per-block channel counts, which both the cost model
(:mod:`effnet.cost`) and the module builder (:mod:`effnet.models.efficientnet`) read. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from effnet.errors import InvalidValue, WrongType
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
from effnet.scaling import (
    BASE_RESOLUTION,
    OFFICIAL_EFFICIENTNET,
    OFFICIAL_LITE,
    PAPER_ALPHA,
    PAPER_BETA,
    PAPER_GAMMA,
    compound,
    round_channels,
    round_repeats,
)

__all__ = [
    "BlockKind",
    "Activation",
    "Padding",
    "HeadScaling",
    "StageSpec",
    "NetworkSpec",
    "BlockConfig",
    "ResolvedNetwork",
    "scale",
    "resolve",
    "efficientnet_b0_stages",
    "get_spec",
    "list_models",
    "compound_spec",
    "BASELINES",
    "EFFICIENTNET_V2_RESOLUTIONS",
    "train_resolution",
    "require_known_fields",
]

BlockKind = Literal["mbconv", "fused_mbconv", "bottleneck", "dwsep"]
Activation = Literal["silu", "relu", "relu6"]
Padding = Literal["symmetric", "tf_same"]
HeadScaling = Literal["scale", "fixed", "up"]

_BLOCKS = ("mbconv", "fused_mbconv", "bottleneck", "dwsep")
_ACTIVATIONS = ("silu", "relu", "relu6")
_PADDINGS = ("symmetric", "tf_same")
_HEAD_SCALINGS = ("scale", "fixed", "up")


def require_known_fields(cls: type, keys: Iterable[str], message: str) -> None:
    """``ValueError("<message>: a, b")`` naming the ``keys`` that are not fields of the dataclass ``cls``."""
    unknown = sorted(set(keys) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"{message}: {', '.join(unknown)}")


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

    ``block``: ``"mbconv"`` (inverted bottleneck: 1×1 expand, k×k depthwise, squeeze-excite, 1×1
    project), ``"fused_mbconv"`` (EfficientNetV2: one k×k expand conv, squeeze-excite, 1×1 project; with
    ``expand_ratio`` 1 a single k×k conv to ``out_channels``) or ``"bottleneck"`` (ResNet: 1×1 reduce,
    k×k conv, 1×1 expand) or ``"dwsep"`` (MobileNetV1's depthwise-separable conv: k×k depthwise conv-BN-act,
    optional squeeze-excite, 1×1 pointwise conv-BN-act, no residual; ``expand_ratio`` must be 1).
    ``expand_ratio`` is the (Fused-)MBConv expansion of its input channels, or the ResNet ratio of output to
    inner channels.
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
        _require_choice("block", self.block, _BLOCKS)
        check_number("expand_ratio", self.expand_ratio, 1, MAX_EXPAND_RATIO)
        if self.block == "dwsep" and self.expand_ratio != 1:
            raise InvalidValue(f"expand_ratio of a dwsep stage must be 1 (it does not expand), got {self.expand_ratio}")
        _require_int("kernel", self.kernel, 1, MAX_KERNEL)
        if self.kernel % 2 == 0:
            raise InvalidValue(f"kernel must be odd, got {self.kernel}")
        _require_int("stride", self.stride, 1, MAX_STRIDE)
        _require_int("out_channels", self.out_channels, 1, MAX_CHANNELS)
        _require_int("repeats", self.repeats, 1, MAX_REPEATS)
        check_number("se_ratio", self.se_ratio, 0, 1)
        if not isinstance(self.scale_repeats, bool):
            raise InvalidValue(f"scale_repeats must be true or false, got {self.scale_repeats!r}")


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
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
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
        """Rebuild a spec from :meth:`to_dict` output; unknown or missing fields are a ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"a network spec must be a JSON object, got {type(data).__name__}")
        require_known_fields(cls, data, "unknown NetworkSpec field(s)")
        if "stages" not in data or "name" not in data:
            raise ValueError("a network spec needs at least 'name' and 'stages'")
        if not isinstance(data["stages"], list):
            kind = type(data["stages"]).__name__
            raise InvalidValue(f"a network spec's 'stages' must be a list of objects, got {kind}")
        stages = []
        for i, stage in enumerate(data["stages"]):
            if not isinstance(stage, dict):
                raise ValueError(f"stages[{i}] must be an object, got {type(stage).__name__}")
            require_known_fields(StageSpec, stage, f"stages[{i}] has unknown field(s)")
            try:
                stages.append(StageSpec(**stage))
            except TypeError as exc:
                raise ValueError(f"stages[{i}]: {exc}") from None
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


def scale(
    spec: NetworkSpec,
    depth: float = 1.0,
    width: float = 1.0,
    resolution: int | None = None,
    *,
    name: str | None = None,
) -> NetworkSpec:
    """Scale a spec's depth and width by the given factors and optionally set its resolution.

    Pure: returns a new spec. Factors multiply the spec's existing multipliers, and rounding is
    always applied once against the baseline stages, so ``scale(scale(s, 1.1), 1.1)`` equals
    ``scale(s, 1.21)``. ``spec`` may also be a registered model name. The scaled multipliers must stay finite
    and within ``(0, MAX_MULTIPLIER]`` (:mod:`effnet.limits`), else a one-line ``ValueError``.
    """
    spec = get_spec(spec)
    for label, value in (("depth", depth), ("width", width)):
        check_number(label, value, 0, MAX_MULTIPLIER, low_open=True)
    changes: dict[str, Any] = {"depth": spec.depth * depth, "width": spec.width * width}
    if resolution is not None:
        changes["resolution"] = resolution
    if name is not None:
        changes["name"] = name
    return spec.replace(**changes)


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
        """MBConv adds its input only at stride 1 with equal channels (ResNet always adds, dwsep never)."""
        if self.block == "bottleneck":
            return True
        if self.block == "dwsep":
            return False
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def has_downsample(self) -> bool:
        """ResNet projects the shortcut (1×1 conv + BN) when stride or channels change."""
        return self.block == "bottleneck" and (self.stride != 1 or self.in_channels != self.out_channels)


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
    width, div, limit = spec.width, spec.divisor, spec.round_limit
    stem = round_channels(spec.stem_channels, width, div, limit) if spec.scale_stem else spec.stem_channels
    repeats = [round_repeats(s.repeats, spec.depth) if s.scale_repeats else s.repeats for s in spec.stages]
    total = sum(repeats)
    stages: list[tuple[BlockConfig, ...]] = []
    in_ch, index = stem, 0
    for stage_index, (stage, count) in enumerate(zip(spec.stages, repeats, strict=True)):
        out_ch = round_channels(stage.out_channels, width, div, limit)
        blocks = []
        for j in range(count):
            if stage.block in ("mbconv", "fused_mbconv", "dwsep"):
                mid = round_channels(in_ch, stage.expand_ratio, div) if stage.expand_ratio != 1 else in_ch
                se = max(1, int(in_ch * stage.se_ratio)) if stage.se_ratio > 0 else 0
            else:
                mid = round_channels(stage.out_channels / stage.expand_ratio, width, div)
                se = 0
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


# --------------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------------


def efficientnet_b0_stages(se_ratio: float = 0.25) -> tuple[StageSpec, ...]:
    """The seven MBConv stages of EfficientNet-B0 (expand, kernel, stride, out, repeats)."""
    rows = (
        (1, 3, 1, 16, 1),
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 2),
        (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4),
        (6, 3, 1, 320, 1),
    )
    return tuple(
        StageSpec("mbconv", expand_ratio=e, kernel=k, stride=s, out_channels=c, repeats=n, se_ratio=se_ratio)
        for e, k, s, c, n in rows
    )


def _efficientnet(variant: str) -> NetworkSpec:
    row = OFFICIAL_EFFICIENTNET[variant]
    return NetworkSpec(
        name=f"efficientnet_{variant}",
        stages=efficientnet_b0_stages(),
        width=row.width,
        depth=row.depth,
        resolution=row.resolution,
        dropout=row.dropout,
    )


def _lite(variant: str) -> NetworkSpec:
    row = OFFICIAL_LITE[variant]
    stages = list(efficientnet_b0_stages(se_ratio=0.0))
    stages[0] = dataclasses.replace(stages[0], scale_repeats=False)
    stages[-1] = dataclasses.replace(stages[-1], scale_repeats=False)
    return NetworkSpec(
        name=f"efficientnet_{variant}",
        stages=tuple(stages),
        scale_stem=False,
        head_scaling="fixed",
        width=row.width,
        depth=row.depth,
        resolution=row.resolution,
        dropout=row.dropout,
        activation="relu6",
        family="efficientnet_lite",
    )


def _mobilenetv2() -> NetworkSpec:
    rows = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
    return NetworkSpec(
        name="mobilenetv2",
        stages=tuple(
            StageSpec("mbconv", expand_ratio=t, kernel=3, stride=s, out_channels=c, repeats=n, se_ratio=0.0)
            for t, c, n, s in rows
        ),
        head_scaling="up",
        activation="relu6",
        drop_path_rate=0.0,
        bn_eps=1e-5,
        bn_momentum=0.1,
        family="mobilenetv2",
    )


def _mobilenetv1() -> NetworkSpec:
    """Howard et al. (2017) MobileNetV1 1.0: a 3×3 stem and 13 depthwise-separable blocks, no head conv.

    The first block (32 → 64 channels at the stem's stride) is part of the stem for depth scaling
    (``scale_repeats=False``, as Lite keeps its first stage): only the four strided stages grow with ``d``.
    """
    rows = ((64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 6, 2), (1024, 2, 2))
    return NetworkSpec(
        name="mobilenetv1",
        stages=tuple(
            StageSpec(
                "dwsep",
                expand_ratio=1,
                kernel=3,
                stride=s,
                out_channels=c,
                repeats=n,
                se_ratio=0.0,
                scale_repeats=i > 0,
            )
            for i, (c, n, s) in enumerate(rows)
        ),
        head_channels=0,
        activation="relu",
        dropout=0.0,
        drop_path_rate=0.0,
        bn_eps=1e-5,
        bn_momentum=0.1,
        family="mobilenetv1",
    )


def _resnet50() -> NetworkSpec:
    rows = ((256, 3, 1), (512, 4, 2), (1024, 6, 2), (2048, 3, 2))
    return NetworkSpec(
        name="resnet50",
        stages=tuple(
            StageSpec("bottleneck", expand_ratio=4, kernel=3, stride=s, out_channels=c, repeats=n, se_ratio=0.0)
            for c, n, s in rows
        ),
        stem_channels=64,
        stem_kernel=7,
        stem_pool=True,
        head_channels=0,
        activation="relu",
        dropout=0.0,
        drop_path_rate=0.0,
        bn_eps=1e-5,
        bn_momentum=0.1,
        family="resnet",
    )


# EfficientNetV2 (Tan & Le, ICML 2021): rows are (block, expand, kernel, stride, out, repeats, se ratio) as in
# torchvision's ``efficientnet_v2_*`` and timm's ``_gen_efficientnetv2_*`` (the official ``effnetv2_configs.py``).
_F: BlockKind = "fused_mbconv"
_M: BlockKind = "mbconv"
_V2_STAGES: dict[str, tuple[int, tuple[tuple[BlockKind, int, int, int, int, int, float], ...]]] = {
    "s": (
        24,
        (
            (_F, 1, 3, 1, 24, 2, 0.0),
            (_F, 4, 3, 2, 48, 4, 0.0),
            (_F, 4, 3, 2, 64, 4, 0.0),
            (_M, 4, 3, 2, 128, 6, 0.25),
            (_M, 6, 3, 1, 160, 9, 0.25),
            (_M, 6, 3, 2, 256, 15, 0.25),
        ),
    ),
    "m": (
        24,
        (
            (_F, 1, 3, 1, 24, 3, 0.0),
            (_F, 4, 3, 2, 48, 5, 0.0),
            (_F, 4, 3, 2, 80, 5, 0.0),
            (_M, 4, 3, 2, 160, 7, 0.25),
            (_M, 6, 3, 1, 176, 14, 0.25),
            (_M, 6, 3, 2, 304, 18, 0.25),
            (_M, 6, 3, 1, 512, 5, 0.25),
        ),
    ),
    "l": (
        32,
        (
            (_F, 1, 3, 1, 32, 4, 0.0),
            (_F, 4, 3, 2, 64, 7, 0.0),
            (_F, 4, 3, 2, 96, 7, 0.0),
            (_M, 4, 3, 2, 192, 10, 0.25),
            (_M, 6, 3, 1, 224, 19, 0.25),
            (_M, 6, 3, 2, 384, 25, 0.25),
            (_M, 6, 3, 1, 640, 7, 0.25),
        ),
    ),
    "xl": (
        32,
        (
            (_F, 1, 3, 1, 32, 4, 0.0),
            (_F, 4, 3, 2, 64, 8, 0.0),
            (_F, 4, 3, 2, 96, 8, 0.0),
            (_M, 4, 3, 2, 192, 16, 0.25),
            (_M, 6, 3, 1, 256, 24, 0.25),
            (_M, 6, 3, 2, 512, 32, 0.25),
            (_M, 6, 3, 1, 640, 8, 0.25),
        ),
    ),
    "base": (
        32,
        (
            (_F, 1, 3, 1, 16, 1, 0.0),
            (_F, 4, 3, 2, 32, 2, 0.0),
            (_F, 4, 3, 2, 48, 2, 0.0),
            (_M, 4, 3, 2, 96, 3, 0.25),
            (_M, 6, 3, 1, 112, 5, 0.25),
            (_M, 6, 3, 2, 192, 8, 0.25),
        ),
    ),
}

_V2_VARIANTS: dict[str, tuple[str, float, float, float]] = {
    "s": ("s", 1.0, 1.0, 0.2),
    "m": ("m", 1.0, 1.0, 0.3),
    "l": ("l", 1.0, 1.0, 0.4),
    "xl": ("xl", 1.0, 1.0, 0.4),
    "b0": ("base", 1.0, 1.0, 0.2),
    "b1": ("base", 1.0, 1.1, 0.2),
    "b2": ("base", 1.1, 1.2, 0.3),
    "b3": ("base", 1.2, 1.4, 0.3),
}
"""variant -> (stage table, width, depth, dropout); B0-B3 are width/depth multiples of the V2 base network."""

EFFICIENTNET_V2_RESOLUTIONS: dict[str, tuple[int, int]] = {
    "efficientnet_v2_s": (300, 384),
    "efficientnet_v2_m": (384, 480),
    "efficientnet_v2_l": (384, 480),
    "efficientnet_v2_xl": (384, 512),
    "efficientnet_v2_b0": (192, 224),
    "efficientnet_v2_b1": (192, 240),
    "efficientnet_v2_b2": (208, 260),
    "efficientnet_v2_b3": (240, 300),
}
"""(train, eval) input sizes of the published EfficientNetV2 weights (timm's ``input_size`` and
``test_input_size`` of ``tf_efficientnetv2_*``); a V2 spec's ``resolution`` is the eval size."""


def train_resolution(spec: NetworkSpec) -> int:
    """The input size a published model was trained at (V2: below its eval size), else ``spec.resolution``."""
    sizes = EFFICIENTNET_V2_RESOLUTIONS.get(spec.name)
    return sizes[0] if sizes else spec.resolution


def _efficientnet_v2(variant: str) -> NetworkSpec:
    table, width, depth, dropout = _V2_VARIANTS[variant]
    stem, rows = _V2_STAGES[table]
    name = f"efficientnet_v2_{variant}"
    return NetworkSpec(
        name=name,
        stages=tuple(
            StageSpec(b, expand_ratio=e, kernel=k, stride=st, out_channels=c, repeats=n, se_ratio=se)
            for b, e, k, st, c, n, se in rows
        ),
        stem_channels=stem,
        width=width,
        depth=depth,
        resolution=EFFICIENTNET_V2_RESOLUTIONS[name][1],
        dropout=dropout,
        bn_momentum=0.1,
        family="efficientnet_v2",
        round_limit=0.0 if table == "base" else 0.9,
    )


def _registry() -> dict[str, NetworkSpec]:
    specs = {f"efficientnet_{v}": _efficientnet(v) for v in OFFICIAL_EFFICIENTNET}
    specs.update({f"efficientnet_{v}": _lite(v) for v in OFFICIAL_LITE})
    specs["mobilenetv2"] = _mobilenetv2()
    specs["mobilenetv1"] = _mobilenetv1()
    specs["resnet50"] = _resnet50()
    specs.update({f"efficientnet_v2_{v}": _efficientnet_v2(v) for v in _V2_VARIANTS})
    return specs


_SPECS = _registry()  # immutable: every value is a frozen dataclass
BASELINES = ("efficientnet_b0", "efficientnet_lite0", "mobilenetv1", "mobilenetv2", "resnet50", "efficientnet_v2_s")
"""Names usable as the baseline of a compound-scaled family or search."""


def list_models(pattern: str | None = None) -> list[str]:
    """Names accepted by :func:`get_spec` and ``effnet.create_model``, optionally filtered by substring."""
    names = list(_SPECS)
    return [n for n in names if pattern is None or pattern in n]


def get_spec(name: str | NetworkSpec) -> NetworkSpec:
    """The published spec for ``name``; unknown names raise ``ValueError`` with the closest names."""
    if isinstance(name, NetworkSpec):
        return name
    if not isinstance(name, str):
        raise WrongType(
            f"a model must be a NetworkSpec or a model name (see effnet.list_models()), got {type(name).__name__}"
        )
    if name in _SPECS:
        return _SPECS[name]
    close = difflib.get_close_matches(str(name), list(_SPECS), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown model name {name!r}{hint} (see effnet.list_models())")


def compound_spec(
    phi: float,
    alpha: float = PAPER_ALPHA,
    beta: float = PAPER_BETA,
    gamma: float = PAPER_GAMMA,
    baseline: str | NetworkSpec = "efficientnet_b0",
    *,
    target: float | None = None,
    tol: float = 0.1,
) -> NetworkSpec:
    """The exact compound rule: the baseline scaled by ``d = α^φ``, ``w = β^φ``, ``r = γ^φ``."""
    base = get_spec(baseline)
    coeffs = compound(phi, alpha, beta, gamma, target=target, tol=tol)
    resolution = max(8, int(round(base.resolution * coeffs.resolution_scale)))
    phi_text = f"{phi:g}"
    return scale(
        base,
        depth=coeffs.depth,
        width=coeffs.width,
        resolution=resolution,
        name=f"{base.name}_phi{phi_text}_a{alpha:g}_b{beta:g}_g{gamma:g}",
    )
