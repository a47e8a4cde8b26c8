"""Image files: finding them in folders and reading one, bounded and without blocking.

The one extension list (:data:`IMAGE_EXTENSIONS`), the one scanner of folders (:func:`find_images` for predict and
calibration, :func:`image_folder_samples` for ImageFolder trees: training and ``effnet eval``) and the one reader
(:func:`load_image`). Bounds (:mod:`effnet.limits`): a walk visits each real folder once (a symlink loop ends by
itself) and lists each real file once, at most ``MAX_WALK_DEPTH`` levels deep and ``MAX_WALK_ENTRIES`` entries; only
regular files are opened, without blocking (a FIFO named ``x.jpg`` is reported as unreadable, never waited on); an
image's size and aspect ratio are checked from its header before it is decoded (``MAX_IMAGE_PIXELS``,
``MAX_IMAGE_ASPECT``). 16-bit, 32-bit integer and float images are scaled to the 8-bit range (or refused), never
clipped (:func:`to_eight_bit`). Torch-free.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from effnet.errors import BadFile, InvalidValue, MissingFile
from effnet.limits import MAX_IMAGE_ASPECT, MAX_IMAGE_PIXELS, MAX_WALK_DEPTH, MAX_WALK_ENTRIES

__all__ = [
    "IMAGE_EXTENSIONS",
    "is_image_file",
    "find_images",
    "image_folder_samples",
    "load_image",
    "to_eight_bit",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def to_eight_bit(image: Any, name: str = "image") -> Any:
    """``image`` with 8-bit channels: 16-bit gray (``I;16*``, or ``I`` with values in 0..65535) divided by 257 and
    float (``F``) in [0, 1] multiplied by 255, rounded, as image libraries scale them; other values are a
    ``BadFile`` naming ``name`` (PIL's own conversion would clip them to white). Other modes are returned as is."""
    if image.mode not in (*_SIXTEEN_BIT, "I", "F"):
        return image
    pixels = np.asarray(image)
    if image.mode == "F":
        finite = bool(np.isfinite(pixels).all())
        if pixels.size and not (finite and pixels.min() >= 0 and pixels.max() <= 1):
            got = f"{pixels.min():g}..{pixels.max():g}" if finite else "NaN or infinite values"
            raise BadFile(
                f"{name}: float pixels must be finite and in [0, 1] (got {got}); save it as an 8- or 16-bit image"
            )
        return Image.fromarray(np.rint(pixels.astype(np.float64) * 255).astype(np.uint8), "L")
    wide = pixels.astype(np.int64)
    if wide.size and (wide.min() < 0 or wide.max() > 65535):
        raise BadFile(
            f"{name}: 32-bit integer pixels must be in 0..65535 (16-bit; got {wide.min()}..{wide.max()}); save it "
            "as an 8- or 16-bit image"
        )
    return Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L")


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive); the one extension test."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


class _Walk:
    """One bounded walk over folders of images: each real folder once, each real file once (sorted paths kept)."""

    def __init__(self) -> None:
        self.folders: set[tuple[int, int]] = set()
        self.files: set[tuple[int, int]] = set()
        self.entries = 0
        self.problems: list[str] = []

    def images(self, root: Path) -> list[Path]:
        """Image files under ``root`` (recursive, symlinked folders followed, hidden ones skipped), sorted."""
        found: list[Path] = []
        stack = [(root, 0)]
        while stack:
            folder, depth = stack.pop()
            try:
                info = folder.stat()
                with os.scandir(folder) as listing:
                    entries = sorted(listing, key=lambda e: e.name)
            except OSError as exc:
                self.problems.append(f"{folder}: cannot read folder ({exc.strerror or exc})")
                continue
            if (info.st_dev, info.st_ino) in self.folders:
                continue  # reached again through a symlink: walked once already
            self.folders.add((info.st_dev, info.st_ino))
            self._count(len(entries), root)
            for entry in entries:
                if not self._is_folder(entry):
                    if is_image_file(entry.name) and self._first(entry, info.st_dev):
                        found.append(Path(entry.path))
                elif not entry.name.startswith("."):
                    if depth + 1 > MAX_WALK_DEPTH:
                        raise InvalidValue(
                            f"{root}: folders nest deeper than {MAX_WALK_DEPTH} levels ({entry.path}); give a "
                            "shallower folder"
                        )
                    stack.append((Path(entry.path), depth + 1))
        return sorted(found)

    def visited(self, folder: Path) -> bool:
        """Whether ``folder`` was walked already (given twice, or reached before through a link)."""
        try:
            info = folder.stat()
        except OSError:
            return False
        return (info.st_dev, info.st_ino) in self.folders

    def first_file(self, path: Path) -> bool:
        """Whether the file ``path`` names (links followed) is not listed yet; it is listed from now on."""
        try:
            info = path.stat()
        except OSError:
            return True  # missing or dangling: reading it reports it
        key = (info.st_dev, info.st_ino)
        if key in self.files:
            return False
        self.files.add(key)
        return True

    def _count(self, entries: int, root: Path) -> None:
        self.entries += entries
        if self.entries > MAX_WALK_ENTRIES:
            raise InvalidValue(f"{root}: more than {MAX_WALK_ENTRIES:,} files and folders; give a smaller folder")

    @staticmethod
    def _is_folder(entry: os.DirEntry[str]) -> bool:
        try:
            return entry.is_dir()
        except OSError:
            return False

    def _first(self, entry: os.DirEntry[str], device: int) -> bool:
        """Whether ``entry`` is a real file not listed yet (a link to a listed file, or a dangling one, is kept as
        is: reading it reports it)."""
        try:
            if entry.is_symlink():
                info = entry.stat()
                key = (info.st_dev, info.st_ino)
            else:
                key = (device, entry.inode())
        except OSError:
            return True
        if key in self.files:
            return False
        self.files.add(key)
        return True


def _extensions_hint() -> str:
    return ", ".join(IMAGE_EXTENSIONS)


def find_images(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[str]]:
    """Expand files and directories (walked recursively, image extensions only, sorted) into image paths.

    Returns ``(files, problems)``: files given explicitly are kept whatever their extension (reading
    them decides); a missing path, an unreadable folder or a directory with no images is reported in ``problems``.
    Each real file is listed once (the first path that reaches it).
    """
    walk = _Walk()
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            if walk.visited(path):
                continue
            problems = len(walk.problems)
            found = walk.images(path)
            if not found and len(walk.problems) == problems:
                walk.problems.append(f"{path}: directory contains no image files ({_extensions_hint()})")
            files.extend(found)
        elif path.exists() or path.is_symlink():
            if walk.first_file(path):
                files.append(path)  # a FIFO or device is refused, without blocking, when it is read
        else:
            walk.problems.append(f"{path}: no such file or directory")
    return files, walk.problems


def image_folder_samples(root: str | os.PathLike[str]) -> tuple[list[tuple[Path, int]], list[str]]:
    """An ImageFolder tree (``root/<class>/<image>``): samples with class indices by sorted folder name.

    The one scanner of class folders (training's ImageFolder data and ``effnet eval``). Hidden folders are
    skipped; a class folder without images, or one that cannot be read (vanished, no permission), is a one-line
    error naming it. Each real file is one sample (a file reached twice through links counts once).
    """
    base = Path(root)
    if not base.is_dir():
        raise MissingFile(f"--data: not a directory: {base}")
    try:
        with os.scandir(base) as listing:
            classes = sorted(e.name for e in listing if _Walk._is_folder(e) and not e.name.startswith("."))
    except OSError as exc:
        raise BadFile(f"{base}: cannot read folder ({exc.strerror or exc})") from None
    if not classes:
        raise MissingFile(f"{base}: no class folders (expected {base}/<class>/<image>)")
    walk = _Walk()
    samples: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        found = walk.images(base / name)
        if walk.problems:
            raise BadFile(walk.problems[0])
        if not found:
            raise InvalidValue(f"class folder {base / name} has no images (accepted: {_extensions_hint()})")
        samples += [(p, index) for p in found]
    return samples, classes


def _open_regular(path: str | os.PathLike[str] | BinaryIO) -> Any:
    """A binary file object of ``path``, opened without blocking; a FIFO, socket, device or folder is a ``BadFile``.
    An open binary stream (``effnet serve``'s upload) is used as it is."""
    if not isinstance(path, (str, os.PathLike)):
        return contextlib.nullcontext(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise MissingFile(f"{path}: no such file") from None
    except OSError as exc:
        raise BadFile(f"{path}: cannot read image ({exc.strerror or exc})") from None
    handle = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        handle.close()
        raise BadFile(f"{path}: cannot read image (not a regular file: a folder, FIFO, socket or device)")
    return handle


def _check_shape(size: tuple[int, int], path: str | os.PathLike[str]) -> None:
    width, height = size
    if min(width, height) < 1:
        raise BadFile(f"{path}: cannot read image (it is {width}x{height} px)")
    if width * height > MAX_IMAGE_PIXELS or max(width, height) > MAX_IMAGE_ASPECT * min(width, height):
        raise BadFile(
            f"{path}: an image of {width}x{height} px is refused; at most {MAX_IMAGE_PIXELS:,} px and a side ratio "
            f"of {MAX_IMAGE_ASPECT}:1 are accepted"
        )


def load_image(path: str | os.PathLike[str] | BinaryIO, mode: str = "RGB") -> Any:
    """Open an image (a file, or an open binary stream) as a PIL image in ``mode``; an unreadable or non-image file
    is a one-line ``BadFile``.

    Only regular files are opened (never blocking on a FIFO); the size and aspect ratio are checked from the header
    before decoding (:data:`~effnet.limits.MAX_IMAGE_PIXELS`, :data:`~effnet.limits.MAX_IMAGE_ASPECT`); 16-bit,
    32-bit integer and float pixels are scaled to 8 bits (:func:`to_eight_bit`).
    """
    with _open_regular(path) as handle:
        try:
            with Image.open(handle) as image:
                _check_shape(image.size, path)
                image.load()
                return to_eight_bit(image, str(path)).convert(mode)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
            if isinstance(exc, BadFile):
                raise
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if isinstance(exc, UnidentifiedImageError):
                reason = "not an image file PIL can read"
            raise BadFile(f"{path}: cannot read image ({reason})") from None
