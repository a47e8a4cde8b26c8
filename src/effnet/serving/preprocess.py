"""The one preprocessing path: the evaluation transform, class folders and labels, the bad-image protocol.

:func:`eval_transform` applies a :class:`~effnet.preprocessing.Preprocessing` (the torch-free metadata that travels
with weights): training validates with it, and predict, eval, export and every runtime use it. Image files are found
and read by :mod:`effnet.serving.image_files`; here: what class folders and labels CSVs mean, and one bad-image
protocol (:class:`ImageFiles` yields a :class:`BadSample`, :func:`collate_skip` drops it). The resize is bounded
(:class:`ResizeBound`: ``MAX_RESIZED_PIXELS``) before it allocates. torch/torchvision are imported inside functions
only.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from effnet.errors import BadFile, InvalidValue, MissingFile, check_type
from effnet.limits import MAX_RESIZED_PIXELS
from effnet.preprocessing import Preprocessing
from effnet.serving.image_files import load_image, to_eight_bit

__all__ = [
    "ConvertMode",
    "ResizeBound",
    "eval_transform",
    "class_folder_name",
    "folder_class_indices",
    "read_labels_csv",
    "BadSample",
    "Batch",
    "ImageFiles",
    "collate_skip",
]


class ConvertMode:
    """PIL image -> the same image in ``mode`` (``L``: RGB to gray; ``RGB``: gray repeated to three channels), 16-bit,
    32-bit integer and float images scaled to 8 bits first (:func:`to_eight_bit`)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, image: Any) -> Any:
        image = to_eight_bit(image)
        return image if image.mode == self.mode else image.convert(self.mode)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.mode!r})"


class ResizeBound:
    """Refuse (``BadFile``) an image whose shorter side resized to ``size`` would exceed ``MAX_RESIZED_PIXELS``;
    the image passes through unchanged otherwise (the step before a resize)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Any) -> Any:
        width, height = image.size
        short, long = min(width, height), max(width, height)
        resized = self.size * -(-self.size * long // max(short, 1))
        if short < 1 or resized > MAX_RESIZED_PIXELS:
            raise BadFile(
                f"an image of {width}x{height} px resized to {self.size} px on its short side would have {resized:,} "
                f"px; at most {MAX_RESIZED_PIXELS:,} are accepted"
            )
        return image

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.size})"


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
            ResizeBound(preprocessing.resize_size),
            T.Resize(preprocessing.resize_size, interpolation=mode),
            T.CenterCrop(preprocessing.input_size),
            T.ToTensor(),
            T.Normalize(preprocessing.mean, preprocessing.std),
        ]
    )


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


def read_labels_csv(csv_path: str | os.PathLike[str]) -> list[tuple[Path, int]]:
    """``(image path, class index)`` rows of a CSV with columns ``file`` and ``index`` (extra columns ignored).

    ``file`` is relative to the CSV's folder (or absolute). A file listed twice, a non-text (binary) CSV or a
    malformed row is a one-line error naming the CSV and the row.
    """
    path = Path(csv_path)
    if path.exists() and not path.is_file():
        raise BadFile(f"labels CSV {path} is not a regular file (a folder, FIFO or device); expected a CSV file")
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
