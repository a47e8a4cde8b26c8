"""What travels with weights about their inputs: :class:`Preprocessing` (torch-free data, like a spec).

A :class:`Preprocessing` says how the weights expect images: convert to gray or RGB by ``in_chans``, resize the
shorter side to ``input_size / crop_fraction``, center-crop ``input_size``, scale to [0, 1], normalise with
``mean``/``std``; ``class_names`` say what the outputs mean. Training writes it into every weights file; the one
transform that applies it is :func:`effnet.serving.preprocess.eval_transform`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from effnet.errors import InvalidValue
from effnet.limits import (
    MAX_IN_CHANS,
    MAX_RESOLUTION,
    MIN_CROP_FRACTION,
    MIN_RESOLUTION,
    check_int,
    check_number,
    parse_json,
)
from effnet.specs import require_known_fields

__all__ = [
    "Preprocessing",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INCEPTION_MEAN",
    "INCEPTION_STD",
    "INTERPOLATIONS",
    "DEFAULT_CROP_FRACTION",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
"""Lite, AdvProp and other TF ports trained on inputs scaled to [-1, 1]."""
INCEPTION_STD = (0.5, 0.5, 0.5)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
DEFAULT_CROP_FRACTION = 0.875


@dataclass(frozen=True)
class Preprocessing:
    """How the weights expect an image: channels, resize, center crop, normalise; and what the outputs mean.

    ``input_size``: side of the square crop fed to the network. ``crop_fraction``: crop / resized
    shorter side (0.875 = resize 256, crop 224). ``mean``/``std``: one value per input channel.
    ``class_names``: one name per output, or empty. ``in_chans``: 1 (images are converted to gray) or
    3 (to RGB); other counts are kept for the API but cannot be fed from image files.
    """

    input_size: int = 224
    crop_fraction: float = DEFAULT_CROP_FRACTION
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    class_names: tuple[str, ...] = ()
    in_chans: int = 3

    def __post_init__(self) -> None:
        """Bounds (:mod:`effnet.limits`): input_size in [8, 2048], crop_fraction in [0.5, 1], finite mean/std."""
        check_int("input_size", self.input_size, MIN_RESOLUTION, MAX_RESOLUTION)
        check_number("crop_fraction", self.crop_fraction, MIN_CROP_FRACTION, 1.0)
        if self.interpolation not in INTERPOLATIONS:
            raise InvalidValue(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {self.interpolation!r}")
        check_int("in_chans", self.in_chans, 1, MAX_IN_CHANS)
        mean, std = _channel_values("mean", self.mean, 0.0), _channel_values("std", self.std, 1e-6)
        if len(mean) != self.in_chans or len(std) != self.in_chans:
            raise InvalidValue(
                f"mean and std need one value per input channel ({self.in_chans}), got {mean} and "
                f"{std} (Preprocessing.with_in_chans adapts them)"
            )
        if isinstance(self.class_names, (str, bytes)) or not isinstance(self.class_names, (list, tuple)):
            raise InvalidValue(f"class_names must be a list of names, one per class, got {self.class_names!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "crop_fraction", float(self.crop_fraction))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    @property
    def resize_size(self) -> int:
        """Shorter side after resizing, before the center crop: ``floor(input_size / crop_fraction)``.

        The quotient is taken as exact when within 1e-6 of an integer, so that 33 px at crop 0.55 resizes to
        60 (not 59 from float error) and ``crop / resize`` fractions give back ``resize`` exactly.
        """
        return int(math.floor(self.input_size / self.crop_fraction + 1e-6))

    @property
    def image_mode(self) -> str:
        """PIL mode images are converted to before the transform: ``L`` for 1 channel, else ``RGB``."""
        return "L" if self.in_chans == 1 else "RGB"

    def with_in_chans(self, in_chans: int) -> Preprocessing:
        """A copy for ``in_chans`` input channels: colour mean/std averaged to one, one value repeated to all."""
        if in_chans == self.in_chans:
            return self
        mean, std = self.mean, self.std
        if len(mean) != 1:
            mean, std = (math.fsum(mean) / len(mean),), (math.fsum(std) / len(std),)
        return self.replace(in_chans=in_chans, mean=mean * in_chans, std=std * in_chans)

    def replace(self, **changes: Any) -> Preprocessing:
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it."""
        data = dataclasses.asdict(self)
        data["mean"], data["std"], data["class_names"] = list(self.mean), list(self.std), list(self.class_names)
        return data

    def to_json(self) -> str:
        """The preprocessing as JSON text."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Rebuild from :meth:`to_dict` output; unknown fields are an ``InvalidValue`` (a ``ValueError``).

        Headers written before ``in_chans`` existed get it from the number of mean values.
        """
        if not isinstance(data, dict):
            raise InvalidValue(f"preprocessing must be a JSON object, got {type(data).__name__}")
        require_known_fields(cls, data, "unknown preprocessing field(s)")
        values = dict(data)
        for key in ("mean", "std", "class_names"):
            if key in values:
                if not isinstance(values[key], list):
                    raise InvalidValue(f"preprocessing {key} must be a list, got {type(values[key]).__name__}")
                values[key] = tuple(values[key])
        if "in_chans" not in values and "mean" in values:
            values["in_chans"] = len(values["mean"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> Preprocessing:
        """Parse :meth:`to_json` output (bounded in size and nesting: :func:`effnet.limits.parse_json`)."""
        return cls.from_dict(parse_json(text, "preprocessing"))


def _channel_values(name: str, values: Any, low: float) -> tuple[float, ...]:
    """``values`` as 1 to MAX_IN_CHANS finite floats in [low, 1e3] (mean: [0, 1e3], std: (0, 1e3])."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise InvalidValue(f"{name} must be a list of numbers, one per input channel, got {values!r}")
    if not 1 <= len(values) <= MAX_IN_CHANS:
        raise InvalidValue(f"{name} must have 1 to {MAX_IN_CHANS} values (one per channel), got {len(values)}")
    return tuple(check_number(f"{name} value", v, low, 1e3) for v in values)
