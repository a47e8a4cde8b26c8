"""The one preprocessing path: what travels with weights, the evaluation transform, reading image files.

A :class:`Preprocessing` says how the weights expect images: convert to gray or RGB by ``in_chans``, resize
the shorter side to ``input_size / crop_fraction``, center-crop ``input_size``, scale to [0, 1], normalise
with ``mean``/``std``; ``class_names`` say what the outputs mean. Training writes it into every weights file
and validates with :func:`eval_transform`, the same transform predict, eval and export use.
:func:`default_preprocessing` gives each weight source's published defaults (torchvision's per-model
resize/crop sizes read from its weight enums, timm's ``pretrained_cfg``, Lite/AdvProp's mean = std = 0.5).
Image files: one extension list, one scanner (:func:`find_images`, :func:`image_folder_samples`), one
bad-image protocol (:class:`ImageFiles` yields a :class:`BadSample`, :func:`collate_skip` drops it).
torch/torchvision are imported inside functions only.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

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
    "ConvertMode",
    "eval_transform",
    "default_preprocessing",
    "imagenet_class_names",
    "is_image_file",
    "find_images",
    "image_folder_samples",
    "class_folder_name",
    "folder_class_indices",
    "load_image",
    "read_labels_csv",
    "BadSample",
    "Batch",
    "ImageFiles",
    "collate_skip",
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
            raise InvalidValue(f"mean and std need one value per input channel ({self.in_chans}), got {mean} and "
                               f"{std} (Preprocessing.with_in_chans adapts them)")  # fmt: skip
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
        """Rebuild from :meth:`to_dict` output; unknown fields are a ``ValueError``.

        Headers written before ``in_chans`` existed get it from the number of mean values.
        """
        if not isinstance(data, dict):
            raise ValueError(f"preprocessing must be a JSON object, got {type(data).__name__}")
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


class ConvertMode:
    """PIL image -> the same image in ``mode`` (``L``: RGB to gray; ``RGB``: gray repeated to three channels)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, image: Any) -> Any:
        return image if image.mode == self.mode else image.convert(self.mode)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.mode!r})"


def _check_image_channels(preprocessing: Preprocessing) -> None:
    if preprocessing.in_chans not in (1, 3):
        raise ValueError(f"images can be fed to a model with 1 or 3 input channels, not {preprocessing.in_chans}")


def eval_transform(preprocessing: Preprocessing) -> Callable[[Any], Any]:
    """PIL image -> normalised float tensor (C, H, W): to gray/RGB by ``in_chans``, resize shorter side, center
    crop, to tensor, normalise. The one evaluation transform: training's validation, predict, eval, runtimes."""
    from torchvision import transforms as T

    _check_image_channels(preprocessing)
    mode = T.InterpolationMode(preprocessing.interpolation)
    return T.Compose(
        [
            ConvertMode(preprocessing.image_mode),
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
    in_chans: int = 3,
) -> Preprocessing:
    """The published eval preprocessing for weights of ``source`` for model ``name``.

    ``torchvision``: its weight enum's crop/resize/interpolation, ImageNet mean/std. ``timm``/``tf``:
    timm's ``pretrained_cfg`` for ``timm_name`` when timm is installed. Others: ``resolution`` at crop
    fraction 0.875, bicubic. ``inception_norm`` (Lite, AdvProp) sets mean = std = 0.5. ImageNet class
    names are attached when the model has 1000 outputs; mean/std follow ``in_chans``.
    """
    return _published_preprocessing(source, name, resolution, num_classes, inception_norm, timm_name).with_in_chans(
        in_chans
    )


def _published_preprocessing(source: str, name: str, resolution: int, num_classes: int, inception_norm: bool,
                             timm_name: str | None) -> Preprocessing:  # fmt: skip
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


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive); the one extension test."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _walk_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, symlinked folders followed, hidden ones skipped), sorted."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath) / f for f in filenames if is_image_file(f)]
    return sorted(found)


def _extensions_hint() -> str:
    return ", ".join(IMAGE_EXTENSIONS)


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
            found = _walk_images(path)
            if not found:
                problems.append(f"{path}: directory contains no image files ({_extensions_hint()})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{path}: no such file or directory")
    return files, problems


def image_folder_samples(root: str | os.PathLike[str]) -> tuple[list[tuple[Path, int]], list[str]]:
    """An ImageFolder tree (``root/<class>/<image>``): samples with class indices by sorted folder name.

    The one scanner of class folders (training's ImageFolder data and ``effnet eval``). Hidden folders are
    skipped; a class folder without images is a ``ValueError`` naming it.
    """
    base = Path(root)
    if not base.is_dir():
        raise NotADirectoryError(f"--data: not a directory: {base}")
    classes = sorted(e.name for e in os.scandir(base) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"{base}: no class folders (expected {base}/<class>/<image>)")
    samples: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        found = _walk_images(base / name)
        if not found:
            raise ValueError(f"class folder {base / name} has no images (accepted: {_extensions_hint()})")
        samples += [(p, index) for p in found]
    return samples, classes


def class_folder_name(class_name: str) -> str:
    """The folder name that stands for ``class_name`` (path separators become ``_``: ``T-shirt/top`` ->
    ``T-shirt_top``); :func:`folder_class_indices` accepts either form."""
    return class_name.replace("/", "_").replace("\\", "_")


def folder_class_indices(folders: Sequence[str], class_names: Sequence[str]) -> tuple[list[int], str]:
    """The output index each class folder stands for, and how it was decided.

    By name when the weights have class names and a folder is named like one (``class_folder_name``
    spelling accepted); then a folder that is no class name is a ``ValueError`` naming it and the accepted
    names. Otherwise by number when every folder is a decimal integer (``0``, ``1``, ...), else by sorted
    position (e.g. ImageNet's ``n01440764`` folders).
    """
    by_name = {n: i for i, n in enumerate(class_names)}
    by_name.update({class_folder_name(n): i for i, n in enumerate(class_names) if class_folder_name(n) not in by_name})
    if any(f in by_name for f in folders):
        unknown = next((f for f in folders if f not in by_name), None)
        if unknown is not None:
            shown = ", ".join(repr(n) for n in class_names[:12]) + (", ..." if len(class_names) > 12 else "")
            raise ValueError(f"class folder {unknown!r} is not one of the weights' {len(class_names)} class names "
                             f"({shown})")  # fmt: skip
        return [by_name[f] for f in folders], "class names"
    if all(f.isdecimal() for f in folders):
        return [int(f) for f in folders], "numbered folders"
    return list(range(len(folders))), "sorted folder order"


def load_image(path: str | os.PathLike[str], mode: str = "RGB") -> Any:
    """Open an image as a PIL image in ``mode``; an unreadable or non-image file is a one-line ``ValueError``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.convert(mode)
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


# --------------------------------------------------------------------------------------------
# Labelled image files as a dataset: the one bad-image protocol
# --------------------------------------------------------------------------------------------


class BadSample(NamedTuple):
    """Returned by :class:`ImageFiles` in place of an image that could not be read."""

    path: str
    error: str


class Batch(NamedTuple):
    """A collated batch: images, labels, the paths of samples dropped as unreadable, and why."""

    images: Any
    labels: Any
    skipped: tuple[str, ...]
    bad: tuple[BadSample, ...] = ()


class ImageFiles:
    """Map-style dataset of ``(image path, label)`` samples: ``(transform(image), label)``, or ``(BadSample,
    label)`` for a file that cannot be read or transformed. Training's ImageFolder data and ``effnet eval``."""

    def __init__(self, samples: Sequence[tuple[Path, int]], transform: Callable[[Any], Any] | None = None,
                 mode: str = "RGB", classes: Sequence[str] = ()) -> None:  # fmt: skip
        self.samples = [(Path(p), int(y)) for p, y in samples]
        self.targets = [y for _, y in self.samples]
        self.transform, self.mode, self.classes = transform, mode, list(classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        try:
            image = load_image(path, self.mode)
            return (self.transform(image) if self.transform is not None else image), target
        except (OSError, ValueError, SyntaxError) as exc:
            return BadSample(str(path), str(exc) if str(path) in str(exc) else f"{path}: {exc}"), target


def collate_skip(batch: Sequence[tuple[Any, int]]) -> Batch:
    """Stack a batch, dropping :class:`BadSample` entries and reporting them (an all-bad batch has no images)."""
    import torch

    good = [(x, y) for x, y in batch if not isinstance(x, BadSample)]
    bad = tuple(x for x, _ in batch if isinstance(x, BadSample))
    skipped = tuple(b.path for b in bad)
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), skipped, bad)
    images = torch.stack([x for x, _ in good])
    labels = torch.tensor([y for _, y in good], dtype=torch.long)
    return Batch(images, labels, skipped, bad)
