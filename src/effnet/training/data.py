"""Datasets and transforms for training: Fashion-MNIST (IDX files), CIFAR-10/100, ImageFolder trees.

The named datasets are found and read on disk by :mod:`effnet.training.named_datasets`. Every dataset comes with
the run's :class:`~effnet.preprocessing.Preprocessing` (size, crop fraction, mean/std, input channels, class names):
validation uses serving's :func:`~effnet.serving.preprocess.eval_transform` on it, the weights carry it. Training
transforms are torchvision's random-resized-crop + flip + AutoAugment (ImageNet policy) or RandAugment. The array
sets (Fashion-MNIST, CIFAR) also carry the same transforms on whole uint8 batches (:mod:`effnet.training.batched`),
which the loaders use where they exist (validation always; training without AutoAugment/RandAugment). Gray data is
fed as one channel (``in_chans=1``) or repeated to three. ImageFolder trees are read with serving's scanner and
bad-image protocol: an unreadable image yields a :class:`~effnet.serving.preprocess.BadSample`,
:func:`~effnet.serving.preprocess.collate_skip` drops it and reports its path so the trainer can count it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import transforms as T

from effnet.config.augment import Augment  # torch-free: the settings' one source
from effnet.errors import BadFile, InvalidValue, MissingFile, WrongType
from effnet.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from effnet.serving.image_files import image_folder_samples
from effnet.serving.preprocess import ConvertMode, ImageFiles, ResizeBound, eval_transform
from effnet.training.batched import BatchTransform, batch_eval_transform, batch_train_transform
from effnet.training.named_datasets import NAMED_DATASETS, named_arrays

__all__ = [
    "DataBundle",
    "ArrayDataset",
    "train_transform",
    "limit_indices",
    "load_datasets",
    "restage",
]

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
    """In-memory uint8 images (N, H, W) or (N, H, W, C) with integer labels, served as PIL images one at a time, or
    whole batches at a time by :class:`~effnet.training.batched.ArrayBatches` when ``batch_transform`` is set
    (``pixels``: the same memory as a uint8 tensor)."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        transform: Callable[[Image.Image], Any] | None = None,
        classes: Sequence[str] = (),
        batch_transform: BatchTransform | None = None,
    ) -> None:
        if len(images) != len(labels):
            raise InvalidValue(f"{len(images)} images but {len(labels)} labels")
        images = np.asarray(images)
        self.images = images if images.flags.writeable else images.copy()  # torch tensors want writable memory
        self.pixels = torch.from_numpy(self.images)
        self.batch_transform = batch_transform if self.images.dtype == np.uint8 else None
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


_STATS: list[tuple[np.ndarray, tuple[tuple[float, ...], tuple[float, ...]]]] = []
"""The last array whose statistics were computed, and them: a search's trials read the same cached array."""


def _channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, H, W) or (N, H, W, C), in [0, 1] units (exact, via histograms)."""
    if _STATS and _STATS[0][0] is images:
        return _STATS[0][1]
    pixels = torch.from_numpy(images if images.flags.writeable else images.copy())
    channels = pixels.reshape(-1, 1) if images.ndim == 3 else pixels.reshape(-1, images.shape[-1])
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(channels.shape[1]):
        counts = torch.bincount(channels[:, c].contiguous(), minlength=256).numpy().astype(np.float64)
        total = counts.sum()
        mean = float((counts * levels).sum() / total)
        means.append(mean)
        stds.append(float(np.sqrt((counts * (levels - mean) ** 2).sum() / total)))
    stats = (tuple(means), tuple(stds))
    _STATS[:] = [(images, stats)]
    return stats


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
        resize = preprocessing.resize_size
        steps += [ResizeBound(resize), T.Resize(resize, interpolation=interpolation), T.CenterCrop(size)]
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
        train_x, train_y, val_x, val_y, classes, source = named_arrays(data, data_root, download)
        native = 1 if train_x.ndim == 3 else int(train_x.shape[-1])
        mean, std = _channel_stats(train_x)
        pre = Preprocessing(resolution, crop_pct, "bicubic", mean, std, classes, native)
        pre = pre.with_in_chans(in_chans or native)
        batched = batch_train_transform(pre, augment)
        train: Any = ArrayDataset(train_x, train_y, train_transform(pre, augment), classes, batched)
        val: Any = ArrayDataset(val_x, val_y, eval_transform(pre), classes, batch_eval_transform(pre))
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
    pre = data.preprocessing.replace(input_size=resolution)
    transform = train_transform(pre, augment)
    dataset = data.train
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    if not hasattr(base, "transform"):
        raise WrongType(f"cannot change the transform of a {type(base).__name__} training set")
    fresh = copy.copy(base)  # shares the images/paths, not the transform
    fresh.transform = transform
    if isinstance(fresh, ArrayDataset) and fresh.images.dtype == np.uint8:
        fresh.batch_transform = batch_train_transform(pre, augment)
    return Subset(fresh, dataset.indices) if isinstance(dataset, Subset) else fresh
