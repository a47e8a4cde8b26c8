"""The compound scaling rule as pure functions.

EfficientNet (Tan & Le, 2019) scales depth ``d = α^φ``, width ``w = β^φ`` and resolution ``r = γ^φ``
with ``α·β²·γ² ≈ 2`` so that FLOPs grow about ``2^φ``. This module holds that rule, the official
hand-rounded coefficient tables, the channel/depth rounding used by every published EfficientNet,
the (α, β, γ) search grid by the formula (:mod:`effnet.search.equal_cost` has it at equal exact cost), and
the "fast" rule of Dollár et al. (2021). Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from effnet.errors import InvalidValue
from effnet.limits import MAX_MULTIPLIER, MAX_PHI, check_number

__all__ = [
    "PAPER_ALPHA",
    "PAPER_BETA",
    "PAPER_GAMMA",
    "BASE_RESOLUTION",
    "ScalingRow",
    "OFFICIAL_EFFICIENTNET",
    "OFFICIAL_LITE",
    "CompoundScaling",
    "compound",
    "flops_factor",
    "fast_scaling",
    "round_channels",
    "round_repeats",
    "grid_values",
    "grid",
    "single_dimension_points",
]

PAPER_ALPHA = 1.2
"""Depth coefficient α found by the paper's grid search at φ = 1."""
PAPER_BETA = 1.1
"""Width coefficient β found by the paper's grid search at φ = 1."""
PAPER_GAMMA = 1.15
"""Resolution coefficient γ found by the paper's grid search at φ = 1."""
BASE_RESOLUTION = 224
"""Input resolution of the EfficientNet-B0 baseline."""


@dataclass(frozen=True)
class ScalingRow:
    """One row of an official coefficient table: width and depth multipliers, input size, dropout."""

    width: float
    depth: float
    resolution: int
    dropout: float


OFFICIAL_EFFICIENTNET: dict[str, ScalingRow] = {
    "b0": ScalingRow(1.0, 1.0, 224, 0.2),
    "b1": ScalingRow(1.0, 1.1, 240, 0.2),
    "b2": ScalingRow(1.1, 1.2, 260, 0.3),
    "b3": ScalingRow(1.2, 1.4, 300, 0.3),
    "b4": ScalingRow(1.4, 1.8, 380, 0.4),
    "b5": ScalingRow(1.6, 2.2, 456, 0.4),
    "b6": ScalingRow(1.8, 2.6, 528, 0.5),
    "b7": ScalingRow(2.0, 3.1, 600, 0.5),
    "b8": ScalingRow(2.2, 3.6, 672, 0.5),
    "l2": ScalingRow(4.3, 5.3, 800, 0.5),
}
"""The official hand-rounded EfficientNet table (``efficientnet_builder.py`` in the TF code).

The published B1–B7 coefficients are *not* exact powers of (α, β, γ): φ = 1 with the paper's
α = 1.2, β = 1.1, γ = 1.15 predicts (depth 1.2, width 1.1, resolution 258), which is close to B2, not
B1. effnet offers both this table (``create_model``) and exact ``α^φ`` models (``compound_model``).
"""

OFFICIAL_LITE: dict[str, ScalingRow] = {
    "lite0": ScalingRow(1.0, 1.0, 224, 0.2),
    "lite1": ScalingRow(1.0, 1.1, 240, 0.2),
    "lite2": ScalingRow(1.1, 1.2, 260, 0.3),
    "lite3": ScalingRow(1.2, 1.4, 280, 0.3),
    "lite4": ScalingRow(1.4, 1.8, 300, 0.3),
}
"""The official EfficientNet-Lite table (``efficientnet_lite_builder.py`` in the TF code)."""


def _check_coefficient(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidValue(f"{name} must be a finite number in [1, {MAX_MULTIPLIER:g}], got {value!r}")
    if value < 1.0:
        raise InvalidValue(f"{name} must be >= 1 (scaling never shrinks the baseline), got {value}")
    if value > MAX_MULTIPLIER:
        raise InvalidValue(f"{name} must be a finite number in [1, {MAX_MULTIPLIER:g}], got {value!r}")


@dataclass(frozen=True)
class CompoundScaling:
    """The multipliers one compound coefficient φ gives: ``d = α^φ``, ``w = β^φ``, ``r = γ^φ``."""

    alpha: float
    beta: float
    gamma: float
    phi: float
    depth: float
    width: float
    resolution_scale: float

    @property
    def flops_factor(self) -> float:
        """Predicted FLOPs growth ``(α·β²·γ²)^φ`` (ignores rounding of channels, repeats and pixels)."""
        return flops_factor(self.alpha, self.beta, self.gamma) ** self.phi

    def resolution(self, base: int = BASE_RESOLUTION) -> int:
        """Input size for a baseline of ``base`` pixels, rounded to the nearest integer."""
        return int(round(base * self.resolution_scale))


def flops_factor(alpha: float, beta: float, gamma: float) -> float:
    """The FLOPs growth per unit of φ: ``α·β²·γ²`` (the paper constrains it to ≈ 2); each a finite number in
    ``(0, MAX_MULTIPLIER]``."""
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        check_number(name, value, 0, MAX_MULTIPLIER, low_open=True)
    return alpha * beta**2 * gamma**2


def compound(
    phi: float,
    alpha: float = PAPER_ALPHA,
    beta: float = PAPER_BETA,
    gamma: float = PAPER_GAMMA,
    *,
    target: float | None = None,
    tol: float = 0.1,
) -> CompoundScaling:
    """Depth, width and resolution multipliers for compound coefficient ``phi``.

    With ``target`` given, ``α·β²·γ²`` must lie within ``tol`` of it (the paper uses target 2).
    Raises ``InvalidValue`` (a ``ValueError``) for φ outside ``[0, MAX_PHI]`` (:data:`effnet.limits.MAX_PHI` = 20),
    a coefficient outside ``[1, MAX_MULTIPLIER]``, or a FLOPs factor outside the tolerance.
    """
    check_number("phi", phi, 0, MAX_PHI)
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        _check_coefficient(name, value)
    if target is not None:
        factor = flops_factor(alpha, beta, gamma)
        if abs(factor - target) > tol:
            raise InvalidValue(
                f"alpha*beta^2*gamma^2 = {factor:.4f} is not within tol={tol} of target={target}; "
                "choose coefficients with alpha*beta^2*gamma^2 in "
                f"[{target - tol:g}, {target + tol:g}]"
            )
    return CompoundScaling(alpha, beta, gamma, float(phi), alpha**phi, beta**phi, gamma**phi)


def fast_scaling(flops_scale: float, width_share: float = 0.8) -> tuple[float, float, float]:
    """Dollár et al. (2021) "fast compound scaling": (depth, width, resolution) multipliers.

    To grow FLOPs by ``flops_scale`` = s, width takes the share ``width_share`` = a of the FLOPs
    growth and depth and resolution take ``(1 - a) / 2`` each: ``d = s^((1-a)/2)``,
    ``w = s^(a/2)``, ``r = s^((1-a)/4)`` (FLOPs grow as ``d·w²·r²``).
    """
    check_number("flops_scale", flops_scale, 1, math.inf)
    check_number("width_share", width_share, 0, 1)
    rest = (1.0 - width_share) / 2.0
    return flops_scale**rest, flops_scale ** (width_share / 2.0), flops_scale ** (rest / 2.0)


def round_channels(channels: float, width: float = 1.0, divisor: int = 8, round_limit: float = 0.9) -> int:
    """Channels ``channels × width`` rounded to a multiple of ``divisor``, never below ``round_limit`` of it.

    This is ``round_filters`` of the TF code and ``_make_divisible`` of torchvision (``round_limit`` 0.9);
    the TF EfficientNetV2-B* family rounds with no lower limit (``round_limit`` 0, timm's V2 base).
    """
    if divisor < 1:
        raise InvalidValue(f"divisor must be >= 1, got {divisor}")
    value = channels * width
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float = 1.0) -> int:
    """Blocks in a stage after depth scaling: ``ceil(depth × repeats)``."""
    return int(math.ceil(depth * repeats))


def grid_values(start: float, stop: float, step: float) -> list[float]:
    """``start, start + step, …`` up to ``stop`` (inclusive within rounding), each rounded to 10 decimals: the values
    one coefficient takes on a search grid."""
    if step <= 0 or not math.isfinite(step):
        raise InvalidValue(f"step must be a positive number, got {step!r}")
    if start < 1 or stop < start:
        raise InvalidValue(f"need 1 <= low <= high, got low={start}, high={stop}")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    return [round(start + i * step, 10) for i in range(count)]


def grid(
    target: float = 2.0,
    tol: float = 0.1,
    step: float = 0.05,
    low: float = 1.0,
    high: float = 2.0,
) -> list[tuple[float, float, float]]:
    """Every (α, β, γ) on a regular grid with ``|α·β²·γ² − target| ≤ tol``, sorted.

    Each coefficient runs over ``low, low + step, …, high``. Raises ``InvalidValue`` (a ``ValueError``) when
    the grid has no point inside the tolerance.
    """
    if tol < 0:
        raise InvalidValue(f"tol must be >= 0, got {tol}")
    values = grid_values(low, high, step)
    points = [
        (a, b, g) for a in values for b in values for g in values if abs(flops_factor(a, b, g) - target) <= tol + 1e-12
    ]
    if not points:
        raise InvalidValue(
            f"no (alpha, beta, gamma) on the grid step={step} in [{low}, {high}] has "
            f"|alpha*beta^2*gamma^2 - {target}| <= {tol}; widen tol or refine step"
        )
    return points


def single_dimension_points(target: float = 2.0) -> list[tuple[float, float, float]]:
    """Depth-only, width-only and resolution-only (α, β, γ) with ``α·β²·γ² = target`` exactly."""
    if target < 1:
        raise InvalidValue(f"target must be >= 1, got {target}")
    root = math.sqrt(target)
    return [(target, 1.0, 1.0), (1.0, root, 1.0), (1.0, 1.0, root)]
