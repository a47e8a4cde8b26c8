"""Training-time augmentation settings (torch-free): the policy, crop and flip of :class:`Augment`.

:class:`~effnet.config.training.TrainConfig` takes its augmentation flags' defaults, help and ranges from here, and
the data pipeline (:mod:`effnet.training.data`) builds its transform from an :class:`Augment`.
"""

from __future__ import annotations

from dataclasses import dataclass

from effnet.config.fields import Range, check_fields, setting

__all__ = ["AUGMENTS", "Augment"]

AUGMENTS = ("autoaugment", "randaugment", "none")
"""Augmentation policies (``autoaugment`` is the ImageNet policy of the paper)."""


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation: the paper's random-resized crop, flip and AutoAugment, or what is asked for.

    ``policy`` is one of :data:`AUGMENTS`; ``randaugment_n``/``randaugment_m`` apply to ``randaugment``.
    ``Augment("none", random_crop=False, hflip=0.0)`` is deterministic (for tests comparing runs sample by sample).
    """

    policy: str = setting("autoaugment", "policy after crop/flip", "augment", choices=AUGMENTS, flag="--augment")
    randaugment_n: int = setting(2, "RandAugment number of ops", "augment", limits=Range(0, 16))
    randaugment_m: int = setting(9, "RandAugment magnitude", "augment", limits=Range(0, 30))
    crop_scale_min: float = setting(
        0.08, "random-resized-crop minimum area", "augment", limits=Range(0, 1, low_open=True)
    )
    hflip: float = setting(0.5, "horizontal flip probability", "augment", limits=Range(0, 1))
    random_crop: bool = setting(True, "random-resized-crop (false: resize + center crop)", "augment")

    def __post_init__(self) -> None:
        check_fields(self, lambda f: _AUGMENT_LABELS.get(f.name, f.name))


_AUGMENT_LABELS = {"policy": "augment", "crop_scale_min": "crop scale minimum", "hflip": "horizontal flip probability"}
