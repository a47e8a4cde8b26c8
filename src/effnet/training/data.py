"""Datasets and transforms for training: Fashion-MNIST (IDX files), CIFAR-10/100, ImageFolder trees.

Datasets are found on disk (``--data-root``, ``$EFFNET_DATA``, Debian's ``/usr/share/datasets``, torchvision's
cache); nothing is downloaded unless ``download=True``. Every dataset comes with the run's
:class:`~effnet.preprocessing.Preprocessing` (size, crop fraction, mean/std, input channels, class names):
validation uses serving's :func:`~effnet.serving.preprocess.eval_transform` on it, the weights carry it. Training
transforms are torchvision's random-resized-crop + flip + AutoAugment (ImageNet policy) or RandAugment. Gray data is
fed as one channel (``in_chans=1``) or repeated to three. ImageFolder trees are read with serving's scanner and
bad-image protocol: an unreadable image yields a :class:`~effnet.serving.preprocess.BadSample`,
:func:`~effnet.serving.preprocess.collate_skip` drops it and reports its path so the trainer can count it.
"""

from __future__ import annotations

import copy
import gzip
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import datasets as tvd
from torchvision import transforms as T

from effnet.config.augment import Augment  # torch-free: the settings' one source
from effnet.errors import BadFile, InvalidValue, MissingFile, WrongType
from effnet.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from effnet.serving.preprocess import (
    ConvertMode,
    ImageFiles,
    eval_transform,
    image_folder_samples,
)

__all__ = [
    "NAMED_DATASETS",
    "DataBundle",
    "ArrayDataset",
    "read_idx",
    "find_fashion_mnist",
    "search_roots",
    "train_transform",
    "limit_indices",
    "load_datasets",
    "restage",
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
_VAL_NAMES = ("val", "validation", "test")


@dataclass(frozen=True)
class DataBundle:
    """Train and validation datasets, and the preprocessing that validation uses and the exported weights carry."""

    name: str
    train: Dataset
    val: Dataset
    preprocessing: Preprocessing
    source: str

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in label order."""
        return self.preprocessing.class_names

    @property
    def num_classes(self) -> int:
        """Number of classes (outputs of the model)."""
        return len(self.preprocessing.class_names)

    @property
    def in_chans(self) -> int:
        """Channels the model is fed."""
        return self.preprocessing.in_chans

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel normalisation mean."""
        return self.preprocessing.mean

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel normalisation std."""
        return self.preprocessing.std


class ArrayDataset(Dataset):
    """In-memory uint8 images (N, H, W) or (N, H, W, C) with integer labels, served as PIL images."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        transform: Callable[[Image.Image], Any] | None = None,
        classes: Sequence[str] = (),
    ) -> None:
        if len(images) != len(labels):
            raise InvalidValue(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.targets = [int(t) for t in labels]
        self.transform = transform
        self.classes = list(classes)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = Image.fromarray(self.images[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (as used by MNIST/Fashion-MNIST), gzip-compressed or not, into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise BadFile(f"{path} is not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise BadFile(f"{path}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(dtypes[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
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


def _channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, H, W) or (N, H, W, C), in [0, 1] units (exact, via histograms)."""
    channels = images.reshape(-1, 1) if images.ndim == 3 else images.reshape(-1, images.shape[-1])
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(channels.shape[1]):
        counts = np.bincount(channels[:, c], minlength=256).astype(np.float64)
        total = counts.sum()
        mean = float((counts * levels).sum() / total)
        means.append(mean)
        stds.append(float(np.sqrt((counts * (levels - mean) ** 2).sum() / total)))
    return tuple(means), tuple(stds)


def train_transform(preprocessing: Preprocessing, augment: Augment = Augment()) -> T.Compose:
    """The paper's training transform for ``preprocessing``'s size, channels and mean/std: random-resized-crop
    (``preprocessing.interpolation``; without it, the evaluation's resize + center crop), flip,
    AutoAugment/RandAugment, normalize."""
    interpolation = T.InterpolationMode(preprocessing.interpolation)
    size = preprocessing.input_size
    steps: list[Any] = [ConvertMode(preprocessing.image_mode)]
    if augment.random_crop:
        steps.append(T.RandomResizedCrop(size, scale=(augment.crop_scale_min, 1.0), interpolation=interpolation))
    else:  # validation's own geometry: the network trains on what it is evaluated on
        steps += [T.Resize(preprocessing.resize_size, interpolation=interpolation), T.CenterCrop(size)]
    if augment.hflip > 0:
        steps.append(T.RandomHorizontalFlip(augment.hflip))
    if augment.policy == "autoaugment":
        steps.append(T.AutoAugment(T.AutoAugmentPolicy.IMAGENET, interpolation=T.InterpolationMode.BILINEAR))
    elif augment.policy == "randaugment":
        steps.append(T.RandAugment(augment.randaugment_n, augment.randaugment_m))
    steps += [T.ToTensor(), T.Normalize(preprocessing.mean, preprocessing.std)]
    return T.Compose(steps)


def limit_indices(n: int, limit: int | None, seed: int = 0) -> list[int] | None:
    """A deterministic random subset of ``limit`` of ``n`` indices (sorted), or None for all.

    The subset depends only on ``n``, ``limit`` and ``seed``; a smaller limit gives a subset of a larger one.
    """
    if limit is None or limit >= n:
        return None
    if limit < 1:
        raise InvalidValue(f"limit must be >= 1, got {limit}")
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(n, generator=generator)[:limit].tolist())


def _image_folder_split(root: Path) -> tuple[Path, Path]:
    if not root.exists():
        raise MissingFile(
            f"--data {root}: no such directory (expected {', '.join(NAMED_DATASETS)} or a folder holding "
            "train/ and val/ class folders)"
        )
    if not root.is_dir():
        raise BadFile(f"--data {root} is not a directory")
    train = root / "train"
    val = next((root / n for n in _VAL_NAMES if (root / n).is_dir()), None)
    if not train.is_dir() or val is None:
        raise MissingFile(f"--data {root}: expected subfolders train/ and val/ (or validation/, test/)")
    return train, val


def _subset(dataset: Any, limit: int | None, seed: int) -> Any:
    indices = limit_indices(len(dataset), limit, seed)
    return dataset if indices is None else Subset(dataset, indices)


def _named_arrays(data: str, data_root: str | None, download: bool) -> tuple[Any, ...]:
    """``(train_x, train_y, val_x, val_y, classes, source)`` of a dataset in :data:`NAMED_DATASETS`."""
    if data == "fashion-mnist":
        files = find_fashion_mnist(data_root, download)
        train_x, train_y = read_idx(files["train_images"]), read_idx(files["train_labels"])
        val_x, val_y = read_idx(files["test_images"]), read_idx(files["test_labels"])
        return train_x, train_y, val_x, val_y, FASHION_MNIST_CLASSES, str(files["train_images"].parent)
    root = _find_cifar(data, data_root) if not download else Path(search_roots(data_root)[0])
    cls = tvd.CIFAR10 if data == "cifar10" else tvd.CIFAR100
    train_set, val_set = cls(str(root), train=True, download=download), cls(str(root), train=False)
    return (
        train_set.data,
        np.asarray(train_set.targets),
        val_set.data,
        np.asarray(val_set.targets),
        tuple(train_set.classes),
        str(root),
    )


def _image_folders(root: Path) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]], list[str]]:
    """Train and validation samples of an ImageFolder root (serving's scanner), with the class names."""
    train_dir, val_dir = _image_folder_split(root)
    train_samples, classes = image_folder_samples(train_dir)
    if len(classes) < 2:
        raise InvalidValue(f"{train_dir} has one class folder ({classes[0]}); a classifier needs at least 2")
    val_samples, val_classes = image_folder_samples(val_dir)
    if val_classes != classes:
        raise InvalidValue(f"{val_dir} has classes {val_classes[:5]}... but {train_dir} has {classes[:5]}...")
    return train_samples, val_samples, classes


def load_datasets(
    data: str,
    *,
    resolution: int,
    in_chans: int | None = None,
    data_root: str | None = None,
    train_limit: int | None = None,
    val_limit: int | None = None,
    limit_seed: int = 0,
    augment: Augment = Augment(),
    crop_pct: float = 0.875,
    download: bool = False,
) -> DataBundle:
    """Build the train/val datasets for ``data`` (a name in :data:`NAMED_DATASETS` or an ImageFolder root).

    ``in_chans`` None keeps the data's own channels (1 for Fashion-MNIST, 3 otherwise). Normalisation uses the
    training set's per-channel mean/std for the array datasets and ImageNet's for folders. Validation uses
    serving's ``eval_transform`` of the bundle's ``preprocessing`` (bicubic, ``crop_pct``).
    """
    if in_chans not in (None, 1, 3):
        raise InvalidValue(f"in_chans must be 1 or 3 for image data, got {in_chans}")
    if data in NAMED_DATASETS:
        train_x, train_y, val_x, val_y, classes, source = _named_arrays(data, data_root, download)
        native = 1 if train_x.ndim == 3 else int(train_x.shape[-1])
        mean, std = _channel_stats(train_x)
        pre = Preprocessing(resolution, crop_pct, "bicubic", mean, std, classes, native)
        pre = pre.with_in_chans(in_chans or native)
        train: Any = ArrayDataset(train_x, train_y, train_transform(pre, augment), classes)
        val: Any = ArrayDataset(val_x, val_y, eval_transform(pre), classes)
    else:
        root = Path(data).expanduser()
        train_samples, val_samples, names = _image_folders(root)
        pre = Preprocessing(resolution, crop_pct, "bicubic", IMAGENET_MEAN, IMAGENET_STD, names)
        pre = pre.with_in_chans(in_chans or 3)
        train = ImageFiles(train_samples, train_transform(pre, augment), pre.image_mode, names)
        val = ImageFiles(val_samples, eval_transform(pre), pre.image_mode, names)
        source = str(root.resolve())
    return DataBundle(
        str(data), _subset(train, train_limit, limit_seed), _subset(val, val_limit, limit_seed), pre, source
    )


def restage(data: DataBundle, resolution: int, augment: Augment) -> Dataset:
    """``data``'s training set (same images, same subset) with the training transform at ``resolution`` and
    ``augment``: what a stage of progressive learning trains on. ``data`` itself is left unchanged."""
    transform = train_transform(data.preprocessing.replace(input_size=resolution), augment)
    dataset = data.train
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    if not hasattr(base, "transform"):
        raise WrongType(f"cannot change the transform of a {type(base).__name__} training set")
    fresh = copy.copy(base)  # shares the images/paths, not the transform
    fresh.transform = transform
    return Subset(fresh, dataset.indices) if isinstance(dataset, Subset) else fresh
