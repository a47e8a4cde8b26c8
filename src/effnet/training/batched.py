"""Whole-batch transforms for in-memory uint8 image arrays (Fashion-MNIST, CIFAR, any :class:`ArrayDataset`).

An array dataset's batch is one index into a uint8 tensor and a few tensor operations: no PIL image, no per-sample
Python call. :func:`batch_eval_transform` is serving's evaluation transform on a batch (to gray/RGB by ``in_chans``,
resize the shorter side, center crop, to float, normalise); :func:`batch_train_transform` is the training transform
(random-resized crop and flip drawn per image, or the evaluation geometry and flip) for the augmentations that act
per image on a batch: policy ``none``. AutoAugment and RandAugment (one policy draw per image) keep the per-sample
path of :mod:`effnet.training.data`.

Differences from the per-sample PIL path (``docs/speed.md``): a resize that changes the size is torch's antialiased
bicubic/bilinear on uint8 (rounded back to uint8 like PIL's; within 2 levels of PIL's, most pixels equal); the
random-resized crop samples each crop box with grid_sample (no antialiasing when a crop is shrunk). Gray/RGB
conversion, center crop, the unchanged-size resize, to-float and normalisation are the same operations, bit for
bit. The random draws come from torch's global CPU RNG in the main process, which checkpoints hold, so a resumed
run draws the same crops and flips.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import torch
from torch.nn import functional as F
from torchvision.transforms.v2 import functional as TF

from effnet.config.augment import Augment
from effnet.preprocessing import Preprocessing
from effnet.serving.preprocess import Batch, ResizeBound

__all__ = ["BatchTransform", "batchable", "batch_eval_transform", "batch_train_transform", "ArrayBatches"]

_RATIO = (3.0 / 4.0, 4.0 / 3.0)  # torchvision's RandomResizedCrop aspect-ratio range
_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries per image before its center-crop fallback
_MODES = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest"}


def batchable(augment: Augment) -> bool:
    """Whether ``augment`` has a whole-batch form (:func:`batch_train_transform`): no AutoAugment/RandAugment."""
    return augment.policy == "none"


def _channels(images: torch.Tensor, in_chans: int) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) -> uint8 (N, in_chans or 1, H, W): PIL's ``convert``, bit for bit (RGB to
    ``L`` is ITU-R 601-2 luma in PIL's fixed point). Gray fed as RGB stays one channel here (:func:`_expand`)."""
    if images.ndim == 3:
        return images.unsqueeze(1)
    chw = images.permute(0, 3, 1, 2)
    if chw.shape[1] == 1 or in_chans == 3:
        return chw
    rgb = chw.to(torch.int32)
    luma = (rgb[:, 0] * 19595 + rgb[:, 1] * 38470 + rgb[:, 2] * 7471 + 0x8000) >> 16
    return luma.to(torch.uint8).unsqueeze(1)


def _expand(images: torch.Tensor, in_chans: int) -> torch.Tensor:
    return images.expand(-1, in_chans, -1, -1) if images.shape[1] != in_chans else images


class BatchTransform:
    """uint8 images (N, H, W) or (N, H, W, C) -> normalised float32 (N, in_chans, size, size), as the per-sample
    transform of ``preprocessing`` would give (module docstring: where it differs). ``augment`` None: evaluation."""

    def __init__(self, preprocessing: Preprocessing, augment: Augment | None = None) -> None:
        self.preprocessing = preprocessing
        self.augment = augment
        self.mode = _MODES.get(preprocessing.interpolation, "bilinear")
        self.mean = torch.tensor(preprocessing.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(preprocessing.std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        pre, augment = self.preprocessing, self.augment
        x = _channels(images, pre.in_chans)
        if augment is not None and augment.random_crop:
            x = self._random_crop(x, augment)
        else:
            x = self._eval_geometry(x)
            if augment is not None and augment.hflip > 0:
                flip = (torch.rand(len(x)) < augment.hflip).view(-1, 1, 1, 1).to(x.device)
                x = torch.where(flip, x.flip(-1), x)
        x = _expand(x, pre.in_chans).to(torch.float32).div(255)
        return x.sub_(self.mean.to(x.device)).div_(self.std.to(x.device))

    def _eval_geometry(self, x: torch.Tensor) -> torch.Tensor:
        """Resize the shorter side to ``resize_size`` (skipped when it already is, as PIL does) and center crop."""
        pre = self.preprocessing
        height, width = x.shape[-2:]
        ResizeBound(pre.resize_size)(SimpleNamespace(size=(width, height)))  # the per-sample path's bound
        if min(height, width) != pre.resize_size:
            mode = TF.InterpolationMode(pre.interpolation)
            x = TF.resize(x, [pre.resize_size], interpolation=mode, antialias=True)
        return TF.center_crop(x, [pre.input_size])

    def _random_crop(self, x: torch.Tensor, augment: Augment) -> torch.Tensor:
        """torchvision's RandomResizedCrop drawn per image (scale, aspect ratio, position; 10 tries then its
        center-crop fallback) and the flip, sampled in one ``grid_sample`` call."""
        n, height, width = len(x), x.shape[-2], x.shape[-1]
        area = float(height * width)
        scale = torch.empty(n, _ATTEMPTS).uniform_(augment.crop_scale_min, 1.0) * area
        ratio = torch.exp(torch.empty(n, _ATTEMPTS).uniform_(math.log(_RATIO[0]), math.log(_RATIO[1])))
        w = torch.sqrt(scale * ratio).round()
        h = torch.sqrt(scale / ratio).round()
        ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = ok.to(torch.uint8).argmax(1, keepdim=True)
        fw, fh = _fallback_box(height, width)
        found = ok.any(1)
        w = torch.where(found, w.gather(1, first).squeeze(1), torch.tensor(float(fw)))
        h = torch.where(found, h.gather(1, first).squeeze(1), torch.tensor(float(fh)))
        top = torch.where(found, (torch.rand(n) * (height - h + 1)).floor(), ((height - h) / 2).floor())
        left = torch.where(found, (torch.rand(n) * (width - w + 1)).floor(), ((width - w) / 2).floor())
        sign = torch.ones(n)
        if augment.hflip > 0:
            sign = torch.where(torch.rand(n) < augment.hflip, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = sign * w / width
        theta[:, 0, 2] = (2 * left + w) / width - 1
        theta[:, 1, 1] = h / height
        theta[:, 1, 2] = (2 * top + h) / height - 1
        size = self.preprocessing.input_size
        grid = F.affine_grid(theta.to(x.device), [n, x.shape[1], size, size], align_corners=False)
        out = F.grid_sample(x.to(torch.float32), grid, mode=self.mode, padding_mode="border", align_corners=False)
        return out.round_().clamp_(0, 255).to(torch.uint8)


def _fallback_box(height: int, width: int) -> tuple[int, int]:
    """RandomResizedCrop's box when no try fits: the whole image, its aspect ratio clamped to the range."""
    in_ratio = width / height
    if in_ratio < _RATIO[0]:
        return width, int(round(width / _RATIO[0]))
    if in_ratio > _RATIO[1]:
        return int(round(height * _RATIO[1])), height
    return width, height


def batch_eval_transform(preprocessing: Preprocessing) -> BatchTransform:
    """Serving's :func:`~effnet.serving.preprocess.eval_transform` on a batch of uint8 images."""
    return BatchTransform(preprocessing)


def batch_train_transform(preprocessing: Preprocessing, augment: Augment) -> BatchTransform | None:
    """The training transform of ``augment`` on a batch of uint8 images, or None where it has no batch form
    (:func:`batchable`)."""
    return BatchTransform(preprocessing, augment) if batchable(augment) else None


class ArrayBatches:
    """A DataLoader over an in-memory uint8 array set (an :class:`~effnet.training.data.ArrayDataset` or a
    ``Subset`` of one) whose batches are one index and one :class:`BatchTransform` each, in the main process.

    ``sampler`` gives dataset indices in order (re-read each epoch, like a DataLoader's); the last short batch is
    dropped with ``drop_last``. Batches are :class:`~effnet.serving.preprocess.Batch` es with nothing skipped.
    With a CUDA ``device`` the uint8 batch is copied there and transformed on it (the random draws stay on the CPU
    RNG); the labels stay on the CPU.
    """

    def __init__(
        self,
        dataset: Any,
        sampler: Iterable[int],
        batch_size: int,
        transform: BatchTransform,
        *,
        drop_last: bool = False,
        device: torch.device | None = None,
    ) -> None:
        base = getattr(dataset, "dataset", dataset)
        indices: Sequence[int] | None = getattr(dataset, "indices", None)
        self.dataset, self.sampler, self.batch_size, self.drop_last = dataset, sampler, batch_size, drop_last
        self.transform = transform
        self.device = device if device is not None and device.type == "cuda" else None
        self.pixels: torch.Tensor = base.pixels
        self.labels = torch.as_tensor(base.targets, dtype=torch.long)
        self.index_map = None if indices is None else torch.as_tensor(list(indices), dtype=torch.long)

    def __iter__(self) -> Iterator[Batch]:
        order = torch.as_tensor(list(self.sampler), dtype=torch.long)
        if self.index_map is not None:
            order = self.index_map[order]
        end = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        for start in range(0, end, self.batch_size):
            index = order[start : start + self.batch_size]
            images = self.pixels[index]
            if self.device is not None:
                images = images.to(self.device, non_blocking=True)
            yield Batch(self.transform(images), self.labels[index], ())

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
