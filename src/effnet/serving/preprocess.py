"""Preprocessing that travels with weights, and reading image files for ``predict`` / ``eval``.

A :class:`Preprocessing` says how the weights expect images: resize the shorter side to
``input_size / crop_fraction``, center-crop ``input_size``, scale to [0, 1], normalise with
``mean``/``std``. :func:`eval_transform` builds that pipeline with torchvision transforms.
:func:`default_preprocessing` gives each weight source's published defaults (torchvision's per-model
resize/crop sizes read from its weight enums, timm's ``pretrained_cfg``, Lite/AdvProp's mean = std = 0.5).
torch/torchvision are imported inside functions only.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effnet.errors import BadFile, InvalidValue, MissingFile
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
    "IMAGE_EXTENSIONS",
    "eval_transform",
    "default_preprocessing",
    "imagenet_class_names",
    "find_images",
    "load_image",
    "read_labels_csv",
    "image_folder_samples",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
"""Lite, AdvProp and other TF ports trained on inputs scaled to [-1, 1]."""
INCEPTION_STD = (0.5, 0.5, 0.5)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
DEFAULT_CROP_FRACTION = 0.875


@dataclass(frozen=True)
class Preprocessing:
    """How the weights expect an image: resize, center crop, normalise; and what the outputs mean.

    ``input_size``: side of the square crop fed to the network. ``crop_fraction``: crop / resized
    shorter side (0.875 = resize 256, crop 224). ``class_names``: one name per output, or empty.
    """

    input_size: int = 224
    crop_fraction: float = DEFAULT_CROP_FRACTION
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Bounds (:mod:`effnet.limits`): input_size in [8, 2048], crop_fraction in [0.5, 1], finite mean/std."""
        check_int("input_size", self.input_size, MIN_RESOLUTION, MAX_RESOLUTION)
        check_number("crop_fraction", self.crop_fraction, MIN_CROP_FRACTION, 1.0)
        if self.interpolation not in INTERPOLATIONS:
            raise InvalidValue(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {self.interpolation!r}")
        mean, std = _channel_values("mean", self.mean, 0.0), _channel_values("std", self.std, 1e-6)
        if len(mean) != len(std):
            raise InvalidValue(f"mean and std must have one value per channel each, got {len(mean)} and {len(std)}")
        if isinstance(self.class_names, (str, bytes)) or not isinstance(self.class_names, (list, tuple)):
            raise InvalidValue(f"class_names must be a list of names, one per class, got {self.class_names!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "crop_fraction", float(self.crop_fraction))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    @property
    def resize_size(self) -> int:
        """Shorter side after resizing, before the center crop."""
        return int(math.floor(self.input_size / self.crop_fraction + 1e-6))

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
        """Rebuild from :meth:`to_dict` output; unknown fields are a ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"preprocessing must be a JSON object, got {type(data).__name__}")
        require_known_fields(cls, data, "unknown preprocessing field(s)")
        values = dict(data)
        for key in ("mean", "std", "class_names"):
            if key in values:
                if not isinstance(values[key], list):
                    raise InvalidValue(f"preprocessing {key} must be a list, got {type(values[key]).__name__}")
                values[key] = tuple(values[key])
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


def eval_transform(preprocessing: Preprocessing) -> Callable[[Any], Any]:
    """PIL image -> normalised float tensor (C, H, W): resize shorter side, center crop, to tensor, normalise."""
    from torchvision import transforms as T

    mode = T.InterpolationMode(preprocessing.interpolation)
    return T.Compose(
        [
            T.Resize(preprocessing.resize_size, interpolation=mode),
            T.CenterCrop(preprocessing.input_size),
            T.ToTensor(),
            T.Normalize(preprocessing.mean, preprocessing.std),
        ]
    )


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in output order, from torchvision's weight metadata (offline)."""
    from torchvision.models import EfficientNet_B0_Weights

    return tuple(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


def _torchvision_sizes(name: str) -> tuple[int, int, str] | None:
    """(crop, resize, interpolation) of torchvision's first ImageNet weights for ``name``, if it has any."""
    from torchvision import models

    variant = name.removeprefix("efficientnet_").upper()  # efficientnet_b3 -> B3, efficientnet_v2_s -> V2_S
    enum = getattr(models, f"EfficientNet_{variant}_Weights", None)
    if enum is None or not name.startswith(("efficientnet_b", "efficientnet_v2_")):
        return None
    transforms = enum.IMAGENET1K_V1.transforms
    kwargs = transforms.keywords
    interpolation = kwargs.get("interpolation")
    return int(kwargs["crop_size"]), int(kwargs["resize_size"]), getattr(interpolation, "value", "bilinear")


def _timm_cfg(timm_name: str) -> dict[str, Any] | None:
    try:
        from timm.models import get_pretrained_cfg
    except ImportError:
        return None
    try:
        cfg = get_pretrained_cfg(timm_name)
    except (RuntimeError, ValueError, KeyError):
        return None
    return None if cfg is None else cfg.to_dict()


def default_preprocessing(
    source: str,
    name: str,
    resolution: int,
    num_classes: int = 1000,
    *,
    inception_norm: bool = False,
    timm_name: str | None = None,
) -> Preprocessing:
    """The published eval preprocessing for weights of ``source`` for model ``name``.

    ``torchvision``: its weight enum's crop/resize/interpolation, ImageNet mean/std. ``timm``/``tf``:
    timm's ``pretrained_cfg`` for ``timm_name`` when timm is installed. Others: ``resolution`` at crop
    fraction 0.875, bicubic. ``inception_norm`` (Lite, AdvProp) sets mean = std = 0.5. ImageNet class
    names are attached when the model has 1000 outputs.
    """
    classes = imagenet_class_names() if num_classes == 1000 else ()
    mean, std = (INCEPTION_MEAN, INCEPTION_STD) if inception_norm else (IMAGENET_MEAN, IMAGENET_STD)
    if source == "torchvision":
        sizes = _torchvision_sizes(name)
        if sizes is not None:
            crop, resize, interp = sizes
            return Preprocessing(crop, crop / resize, interp, mean, std, classes)
    if source in ("timm", "tf") and timm_name:
        cfg = _timm_cfg(timm_name)
        if cfg is not None:
            return Preprocessing(
                int(cfg["input_size"][-1]),
                float(cfg["crop_pct"]),
                str(cfg.get("interpolation", "bicubic")),
                tuple(cfg["mean"]),
                tuple(cfg["std"]),
                classes,
            )
    return Preprocessing(resolution, DEFAULT_CROP_FRACTION, "bicubic", mean, std, classes)


# --------------------------------------------------------------------------------------------
# Image files
# --------------------------------------------------------------------------------------------


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def find_images(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[str]]:
    """Expand files and directories (walked recursively, image extensions only, sorted) into image paths.

    Returns ``(files, problems)``: files given explicitly are kept whatever their extension (reading
    them decides); a missing path or a directory with no images is reported in ``problems``.
    """
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _is_image_name(p))
            if not found:
                problems.append(f"{path}: directory contains no image files ({', '.join(IMAGE_EXTENSIONS[:4])}, ...)")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{path}: no such file or directory")
    return files, problems


def load_image(path: str | os.PathLike[str]) -> Any:
    """Open an image as RGB PIL image; an unreadable or non-image file is a one-line ``ValueError``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, UnidentifiedImageError):
            reason = "not an image file PIL can read"
        raise ValueError(f"{path}: cannot read image ({reason})") from None


def read_labels_csv(csv_path: str | os.PathLike[str]) -> list[tuple[Path, int]]:
    """``(image path, class index)`` rows of a CSV with columns ``file`` and ``index`` (extra columns ignored).

    ``file`` is relative to the CSV's folder (or absolute). A file listed twice, a non-text (binary) CSV or a
    malformed row is a one-line error naming the CSV and the row.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise MissingFile(f"labels CSV not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return _labels_rows(path, csv.DictReader(handle))
    except UnicodeDecodeError:
        raise BadFile(f"{path}: not a UTF-8 text CSV (it holds binary bytes); expected columns file,index") from None
    except csv.Error as exc:
        raise BadFile(f"{path}: not a readable CSV ({exc}); expected columns file,index") from None


def _labels_rows(path: Path, reader: csv.DictReader) -> list[tuple[Path, int]]:
    fields = reader.fieldnames or []
    if "file" not in fields or "index" not in fields:
        raise InvalidValue(f"{path}: labels CSV needs a header with columns 'file' and 'index'; got {fields}")
    rows: list[tuple[Path, int]] = []
    seen: dict[Path, int] = {}
    for line, row in enumerate(reader, start=2):
        try:
            index = int(row["index"])
        except (TypeError, ValueError):
            raise InvalidValue(f"{path}:{line}: index must be an integer, got {row['index']!r}") from None
        if not row["file"]:
            raise InvalidValue(f"{path}:{line}: empty file name")
        file = path.parent / row["file"]
        if file in seen:
            raise InvalidValue(f"{path}:{line}: {row['file']} is listed again (first on line {seen[file]}); "
                               "list each image once")  # fmt: skip
        seen[file] = line
        rows.append((file, index))
    if not rows:
        raise InvalidValue(f"{path}: labels CSV has no rows")
    return rows


def image_folder_samples(root: str | os.PathLike[str]) -> tuple[list[tuple[Path, int]], list[str]]:
    """An ImageFolder tree (``root/<class>/<image>``): samples with class indices by sorted folder name."""
    base = Path(root)
    if not base.is_dir():
        raise NotADirectoryError(f"--data: not a directory: {base}")
    classes = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    samples = [
        (p, index)
        for index, name in enumerate(classes)
        for p in sorted((base / name).rglob("*"))
        if p.is_file() and _is_image_name(p)
    ]
    if not samples:
        raise ValueError(f"{base}: no images found in class sub-folders (expected DIR/<class>/<image>)")
    return samples, classes

