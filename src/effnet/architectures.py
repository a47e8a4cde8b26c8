"""The named published networks as specs, and the functions that take a network by spec or by name.

EfficientNet B0-B8 and L2 (Tan & Le, 2019), EfficientNet-Lite0-4, EfficientNetV2 S/M/L/XL and B0-B3 (Tan & Le,
2021), MobileNetV1 (Howard et al., 2017), MobileNetV2 (Sandler et al., 2018) and ResNet-50 (v1.5), each a frozen
:class:`~effnet.specs.NetworkSpec`. :func:`get_spec` looks a name up, :func:`scale` scales a spec or a named
network, :func:`compound_spec` applies the compound rule. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from effnet.blocks.base import BlockKind
from effnet.errors import InvalidValue, WrongType, check_type
from effnet.limits import MAX_MULTIPLIER, check_number
from effnet.scaling import (
    OFFICIAL_EFFICIENTNET,
    OFFICIAL_LITE,
    PAPER_ALPHA,
    PAPER_BETA,
    PAPER_GAMMA,
    compound,
)
from effnet.specs import NetworkSpec, StageSpec

__all__ = [
    "efficientnet_b0_stages",
    "get_spec",
    "list_models",
    "scale",
    "compound_spec",
    "BASELINES",
    "EFFICIENTNET_V2_RESOLUTIONS",
    "train_resolution",
]


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
    check_type("pattern", pattern, (str, type(None)), "a substring of model names or None")
    names = list(_SPECS)
    return [n for n in names if pattern is None or pattern in n]


def get_spec(name: str | NetworkSpec) -> NetworkSpec:
    """The published spec for ``name``; an unknown name is an ``InvalidValue`` naming the closest names."""
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
    raise InvalidValue(f"unknown model name {name!r}{hint} (see effnet.list_models())")


def scale(
    spec: str | NetworkSpec,
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
    and within ``(0, MAX_MULTIPLIER]`` (:mod:`effnet.limits`), else a one-line ``InvalidValue``.
    """
    base = get_spec(spec)
    for label, value in (("depth", depth), ("width", width)):
        check_number(label, value, 0, MAX_MULTIPLIER, low_open=True)
    changes: dict[str, Any] = {"depth": base.depth * depth, "width": base.width * width}
    if resolution is not None:
        changes["resolution"] = resolution
    if name is not None:
        changes["name"] = name
    return base.replace(**changes)


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
