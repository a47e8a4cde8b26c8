"""The one preprocessing path: the evaluation transform and reading image files.

:func:`eval_transform` applies a :class:`~effnet.preprocessing.Preprocessing` (the torch-free metadata that travels
with weights): training validates with it, and predict, eval, export and every runtime use it. Image files: one
extension list, one scanner (:func:`find_images`, :func:`image_folder_samples`), one bad-image protocol
(:class:`ImageFiles` yields a :class:`BadSample`, :func:`collate_skip` drops it). torch/torchvision are imported
inside functions only.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image, UnidentifiedImageError

from effnet.errors import BadFile, InvalidValue, MissingFile, check_type
from effnet.preprocessing import Preprocessing

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

__all__ = [
    "IMAGE_EXTENSIONS",
    "ConvertMode",
    "eval_transform",
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


class ConvertMode:
    """PIL image -> the same image in ``mode`` (``L``: RGB to gray; ``RGB``: gray repeated to three channels)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, image: Any) -> Any:
        return image if image.mode == self.mode else image.convert(self.mode)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.mode!r})"


def _check_image_channels(preprocessing: Preprocessing) -> None:
    check_type("preprocessing", preprocessing, Preprocessing, "an effnet Preprocessing (e.g. model.preprocessing)")
    if preprocessing.in_chans not in (1, 3):
        raise InvalidValue(f"images can be fed to a model with 1 or 3 input channels, not {preprocessing.in_chans}")


def eval_transform(preprocessing: Preprocessing) -> Callable[[Any], Any]:
    """PIL image -> normalised float tensor (C, H, W): to gray/RGB by ``in_chans``, resize shorter side, center
    crop, to tensor, normalise. The one evaluation transform: training's validation, predict, eval, runtimes."""
    from torchvision import transforms as T  # lazy: the image-file helpers here stay torch-free

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
    skipped; a class folder without images is an ``InvalidValue`` naming it.
    """
    base = Path(root)
    if not base.is_dir():
        raise MissingFile(f"--data: not a directory: {base}")
    classes = sorted(e.name for e in os.scandir(base) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise MissingFile(f"{base}: no class folders (expected {base}/<class>/<image>)")
    samples: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        found = _walk_images(base / name)
        if not found:
            raise InvalidValue(f"class folder {base / name} has no images (accepted: {_extensions_hint()})")
        samples += [(p, index) for p in found]
    return samples, classes


def class_folder_name(class_name: str) -> str:
    """The folder name that stands for ``class_name`` (path separators become ``_``: ``T-shirt/top`` ->
    ``T-shirt_top``); :func:`folder_class_indices` accepts either form."""
    return class_name.replace("/", "_").replace("\\", "_")


def folder_class_indices(folders: Sequence[str], class_names: Sequence[str]) -> tuple[list[int], str]:
    """The output index each class folder stands for, and how it was decided.

    By name when the weights have class names and a folder is named like one (``class_folder_name``
    spelling accepted); then a folder that is no class name is an ``InvalidValue`` naming it and the accepted
    names. Otherwise by number when every folder is a decimal integer (``0``, ``1``, ...), else by sorted
    position (e.g. ImageNet's ``n01440764`` folders).
    """
    by_name = {n: i for i, n in enumerate(class_names)}
    by_name.update({class_folder_name(n): i for i, n in enumerate(class_names) if class_folder_name(n) not in by_name})
    if any(f in by_name for f in folders):
        unknown = next((f for f in folders if f not in by_name), None)
        if unknown is not None:
            shown = ", ".join(repr(n) for n in class_names[:12]) + (", ..." if len(class_names) > 12 else "")
            raise InvalidValue(
                f"class folder {unknown!r} is not one of the weights' {len(class_names)} class names ({shown})"
            )
        return [by_name[f] for f in folders], "class names"
    if all(f.isdecimal() for f in folders):
        return [int(f) for f in folders], "numbered folders"
    return list(range(len(folders))), "sorted folder order"


def load_image(path: str | os.PathLike[str], mode: str = "RGB") -> Any:
    """Open an image as a PIL image in ``mode``; an unreadable or non-image file is a one-line ``BadFile``."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert(mode)
    except FileNotFoundError:
        raise MissingFile(f"{path}: no such file") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, UnidentifiedImageError):
            reason = "not an image file PIL can read"
        raise BadFile(f"{path}: cannot read image ({reason})") from None


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
            raise InvalidValue(
                f"{path}:{line}: {row['file']} is listed again (first on line {seen[file]}); list each image once"
            )
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

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        transform: Callable[[Any], Any] | None = None,
        mode: str = "RGB",
        classes: Sequence[str] = (),
    ) -> None:
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
    import torch  # lazy: the image-file helpers here stay torch-free

    good = [(x, y) for x, y in batch if not isinstance(x, BadSample)]
    bad = tuple(x for x, _ in batch if isinstance(x, BadSample))
    skipped = tuple(b.path for b in bad)
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), skipped, bad)
    images = torch.stack([x for x, _ in good])
    labels = torch.tensor([y for _, y in good], dtype=torch.long)
    return Batch(images, labels, skipped, bad)
