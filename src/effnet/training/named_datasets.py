"""The named datasets on disk: Fashion-MNIST (IDX files) and CIFAR-10/100 (torchvision's batches).

They are found in ``--data-root``, ``$EFFNET_DATA``, Debian's ``/usr/share/datasets`` or torchvision's cache;
nothing is downloaded unless ``download=True``. A damaged file is one ``BadFile`` line naming it: a truncated or
corrupt gzip stream, an IDX file whose size disagrees with its header (or larger than
:data:`~effnet.limits.MAX_IDX_BYTES` decompressed), labels outside the classes, a CIFAR batch whose MD5 differs from
torchvision's. :func:`named_arrays` gives the arrays that :mod:`effnet.training.data` serves.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from torchvision import datasets as tvd

from effnet.errors import BadFile, MissingFile
from effnet.limits import MAX_IDX_BYTES

__all__ = [
    "NAMED_DATASETS",
    "DEBIAN_FASHION_MNIST",
    "FASHION_MNIST_CLASSES",
    "read_idx",
    "search_roots",
    "find_fashion_mnist",
    "named_arrays",
]

NAMED_DATASETS = ("fashion-mnist", "cifar10", "cifar100")
"""Values of ``--data`` that name a built-in dataset; anything else is an ImageFolder directory."""

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FMNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _read_bounded(path: Path) -> bytes:
    """The (decompressed) bytes of ``path``, at most :data:`~effnet.limits.MAX_IDX_BYTES`; a truncated or damaged
    gzip stream, or a longer file, is a ``BadFile`` naming it."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read(MAX_IDX_BYTES + 1)
    except (EOFError, OSError, zlib.error) as exc:
        reason = "it ends early" if isinstance(exc, EOFError) else (str(exc).splitlines() or [type(exc).__name__])[0]
        raise BadFile(f"{path} is truncated or damaged ({reason}); delete it and get the dataset again") from None
    if len(data) > MAX_IDX_BYTES:
        raise BadFile(f"{path} holds more than {MAX_IDX_BYTES:,} bytes (decompressed); not a dataset file")
    return data


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (as used by MNIST/Fashion-MNIST), gzip-compressed or not, into a numpy array; a damaged,
    truncated or oversized file is a one-line ``BadFile`` naming it."""
    path = Path(path)
    data = _read_bounded(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise BadFile(f"{path} is not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise BadFile(f"{path}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(dtypes[data[2]])
    expected = math.prod(shape) * dtype.itemsize
    body = data[4 + 4 * ndim :]
    if len(body) != expected:
        raise BadFile(f"{path}: truncated IDX file ({len(body)} bytes of data, header says {expected})")
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def search_roots(data_root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for named datasets, in order: ``data_root``, ``$EFFNET_DATA``, torchvision's caches."""
    roots: list[Path] = []
    if data_root:
        roots.append(Path(data_root).expanduser())
    if os.environ.get("EFFNET_DATA"):
        roots.append(Path(os.environ["EFFNET_DATA"]).expanduser())
    torch_home = Path(os.environ.get("TORCH_HOME", Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "torch"))
    roots += [Path("~/.cache/torchvision").expanduser(), torch_home.expanduser() / "datasets", Path("data")]
    return roots


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_fashion_mnist(data_root: str | os.PathLike[str] | None = None, download: bool = False) -> dict[str, Path]:
    """Locate the four Fashion-MNIST IDX files; raise ``MissingFile`` naming every folder searched."""
    roots = search_roots(data_root)
    n_user = sum(1 for r in (data_root, os.environ.get("EFFNET_DATA")) if r)
    candidates: list[Path] = []
    for i, root in enumerate(roots):
        if i == n_user:  # after the user's folders, before torchvision's caches
            candidates.append(DEBIAN_FASHION_MNIST)
        candidates += [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]
    for folder in candidates:
        files = {key: _find_file(folder, stem) for key, stem in _FMNIST_FILES.items()}
        if all(files.values()):
            return {k: v for k, v in files.items() if v is not None}
    if download:
        target = search_roots(data_root)[0]
        tvd.FashionMNIST(str(target), train=True, download=True)
        tvd.FashionMNIST(str(target), train=False, download=True)
        return find_fashion_mnist(data_root, download=False)
    searched = ", ".join(dict.fromkeys(str(c) for c in candidates))
    raise MissingFile(
        "Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz], ...) not found; searched "
        f"{searched}. Install Debian's dataset-fashion-mnist, set $EFFNET_DATA or pass --data-root"
    )


def _find_cifar(name: str, data_root: str | os.PathLike[str] | None) -> Path:
    folder = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name]
    roots = [r for root in search_roots(data_root) for r in (root, root / name)]
    for root in roots:
        if (root / folder).is_dir():
            return root
    searched = ", ".join(dict.fromkeys(str(r) for r in roots))
    raise MissingFile(
        f"{name} not found: no {folder}/ folder (torchvision's on-disk format) in {searched}; "
        "set $EFFNET_DATA or pass --data-root (or --download where the network allows)"
    )


def _cifar(cls: Any, root: Path, train: bool, download: bool) -> Any:
    """torchvision's CIFAR dataset in ``root``; a missing or damaged batch file (its MD5 differs from torchvision's,
    or it does not unpickle) is a ``BadFile`` naming it."""
    folder = root / cls.base_folder
    try:
        return cls(str(root), train=train, download=download)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, pickle.UnpicklingError) as exc:
        listed = [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]
        bad = next((f for f, md5 in listed if not tvd.utils.check_integrity(str(folder / f), md5)), None)
        if bad is not None:
            problem = f"{folder / bad} is missing or damaged (its MD5 differs from torchvision's)"
        else:
            problem = f"{folder}: cannot read the batches ({(str(exc).splitlines() or [type(exc).__name__])[0]})"
        raise BadFile(f"{problem}; delete it and get the dataset again (--download where the network allows)") from None


def _idx_pair(images_file: Path, labels_file: Path, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) uint8 and labels (N,) in ``0..classes-1`` from two IDX files; anything else names the file."""
    images, labels = read_idx(images_file), read_idx(labels_file)
    if images.ndim != 3 or images.dtype != np.uint8 or min(images.shape, default=0) < 1:
        raise BadFile(f"{images_file}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise BadFile(f"{labels_file}: expected {len(images)} labels (one per image), got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise BadFile(f"{labels_file}: labels must be in 0..{classes - 1}, got {labels.min()}..{labels.max()}")
    return images, labels


_IDX_CACHE: dict[tuple[Any, ...], tuple[Any, ...]] = {}
"""The last Fashion-MNIST arrays read, keyed by their files' paths, sizes and modification times: the trials of a
search worker read the files once."""


def _fashion_mnist(files: dict[str, Path]) -> tuple[Any, ...]:
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files.values())
    if key not in _IDX_CACHE:
        train_x, train_y = _idx_pair(files["train_images"], files["train_labels"], len(FASHION_MNIST_CLASSES))
        val_x, val_y = _idx_pair(files["test_images"], files["test_labels"], len(FASHION_MNIST_CLASSES))
        _IDX_CACHE.clear()
        _IDX_CACHE[key] = tuple(np.array(a) for a in (train_x, train_y, val_x, val_y))  # writable, shared
    return _IDX_CACHE[key]


def named_arrays(data: str, data_root: str | None, download: bool) -> tuple[Any, ...]:
    """``(train_x, train_y, val_x, val_y, classes, source)`` of a dataset in :data:`NAMED_DATASETS` (Fashion-MNIST
    read once per process while its files are unchanged)."""
    if data == "fashion-mnist":
        files = find_fashion_mnist(data_root, download)
        train_x, train_y, val_x, val_y = _fashion_mnist(files)
        return train_x, train_y, val_x, val_y, FASHION_MNIST_CLASSES, str(files["train_images"].parent)
    root = _find_cifar(data, data_root) if not download else Path(search_roots(data_root)[0])
    cls = tvd.CIFAR10 if data == "cifar10" else tvd.CIFAR100
    train_set, val_set = _cifar(cls, root, True, download), _cifar(cls, root, False, False)
    return (
        train_set.data,
        np.asarray(train_set.targets),
        val_set.data,
        np.asarray(val_set.targets),
        tuple(train_set.classes),
        str(root),
    )
