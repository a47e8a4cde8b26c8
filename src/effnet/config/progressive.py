"""Progressive learning's stages (EfficientNetV2, Tan & Le 2021, section 4.2, Algorithm 1), torch-free.

:func:`progressive_stages` turns the ``--progressive`` settings of a :class:`~effnet.config.training.TrainConfig`
into a pure schedule of :class:`Stage` records; the trainer (:mod:`effnet.training.trainer`) only applies them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from effnet.architectures import get_spec
from effnet.config.training import DEFAULT_MODEL, TrainConfig, progressive_ranges
from effnet.errors import InvalidValue
from effnet.limits import MIN_RESOLUTION

__all__ = [
    "MIN_RESOLUTION_FRACTION",
    "Stage",
    "default_min_resolution",
    "progressive_stages",
    "stage_for_epoch",
]

MIN_RESOLUTION_FRACTION = 128 / 300
"""Default first-stage size as a fraction of the final one: EfficientNetV2-S trains from 128 to 300 px (Table 6)."""


@dataclass(frozen=True)
class Stage:
    """One stage of progressive learning: epochs ``first_epoch``..``last_epoch`` (1-based, inclusive) train at
    image size ``resolution`` with classifier dropout ``dropout``, RandAugment magnitude ``randaugment_m`` and
    mixup alpha ``mixup_alpha`` (0: no mixup)."""

    first_epoch: int
    last_epoch: int
    resolution: int
    dropout: float
    randaugment_m: int
    mixup_alpha: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return dataclasses.asdict(self)


def _round8(value: float) -> int:
    return int(math.floor(value / 8 + 0.5)) * 8


def default_min_resolution(final: int) -> int:
    """The first-stage size when ``--min-resolution`` is unset: :data:`MIN_RESOLUTION_FRACTION` of ``final``,
    rounded to a multiple of 8, at least :data:`~effnet.limits.MIN_RESOLUTION` and at most ``final``."""
    return min(final, max(MIN_RESOLUTION, _round8(final * MIN_RESOLUTION_FRACTION)))


def _lerp(low: float, high: float, t: float) -> float:
    """``low`` + (``high`` - ``low``) ``t``: exactly ``high`` at ``t`` = 1, never outside [low, high]."""
    if t >= 1:
        return high
    value = low + (high - low) * t
    return min(max(value, min(low, high)), max(low, high))


def progressive_stages(config: TrainConfig, resolution: int | None = None) -> tuple[Stage, ...]:
    """The stages of ``--progressive K`` (empty when K <= 1), as Algorithm 1 of EfficientNetV2 defines them.

    The epochs are split into K near-equal consecutive stages covering each epoch once; in stage ``i`` (0-based)
    every value is ``first + (last - first) * i / (K - 1)``: the image size from ``--min-resolution`` (S0) to the
    final size ``resolution`` (default: ``--resolution``, else ``--model``'s), rounded to the nearest multiple of 8
    between the two ends (the ends are exact), and dropout, RandAugment magnitude (rounded to an integer) and
    mixup alpha over their ``--*-range``. Raises :class:`~effnet.errors.InvalidValue` for S0 > final size.
    """
    k, epochs = config.progressive, config.epochs
    if k <= 1:
        return ()
    if resolution is None and config.resolution is None and config.spec_file:
        raise InvalidValue("progressive_stages needs the final resolution of the --spec network (pass resolution=)")
    final = resolution or config.resolution or get_spec(config.model or DEFAULT_MODEL).resolution
    first = config.min_resolution or default_min_resolution(final)
    if first > final:
        raise InvalidValue(f"--min-resolution {first} is larger than the final resolution {final}")
    ranges = progressive_ranges(config)
    stages = []
    for i in range(k):
        t = i / (k - 1)
        size = first if i == 0 else final if i == k - 1 else min(max(_round8(_lerp(first, final, t)), first), final)
        stages.append(
            Stage(
                first_epoch=i * epochs // k + 1,
                last_epoch=(i + 1) * epochs // k,
                resolution=size,
                dropout=_lerp(*ranges["dropout_range"], t),
                randaugment_m=round(_lerp(*ranges["randaugment_range"], t)),
                mixup_alpha=_lerp(*ranges["mixup_range"], t),
            )
        )
    return tuple(stages)


def stage_for_epoch(stages: tuple[Stage, ...], epoch: int) -> Stage | None:
    """The stage that trains 1-based ``epoch`` (None when ``stages`` is empty, i.e. progressive learning is off)."""
    for stage in stages:
        if stage.first_epoch <= epoch <= stage.last_epoch:
            return stage
    if stages:
        raise InvalidValue(f"epoch {epoch} is outside the progressive stages (1..{stages[-1].last_epoch})")
    return None
