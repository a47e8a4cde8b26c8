"""The DataLoaders of a run: a shuffled, per-rank training loader that can start part-way into an epoch, and an
exact (unpadded) per-rank split of the validation set, decoded once at set-up when it is an in-memory array set
small enough to keep (:class:`DecodedBatches`), since its transform is the same every epoch.

An in-memory array set whose transform has a batch form is read by :class:`~effnet.training.batched.ArrayBatches`
(one index and a few tensor operations per batch, in the main process); other data by a DataLoader and its worker
pool (``--workers``), one sample at a time."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

from effnet.config.training import TrainConfig
from effnet.errors import InvalidValue
from effnet.machine import bound_count, usable_cpus
from effnet.serving.preprocess import Batch, collate_skip
from effnet.training.batched import ArrayBatches
from effnet.training.data import ArrayDataset, DataBundle

__all__ = ["DECODED_VAL_BYTES", "EpochSampler", "Shard", "DecodedBatches", "Loaders", "build_loaders"]

DECODED_VAL_BYTES = 256 << 20
"""Largest validation share (float32 images) kept decoded in memory for the whole run (:class:`DecodedBatches`):
Fashion-MNIST's 10,000 test images at 32 px take 41 MB, CIFAR's at 224 px 6 GB (decoded every epoch instead)."""


class EpochSampler(Sampler[int]):
    """A ``DistributedSampler`` whose epoch can be entered part-way (skipping samples already trained on)."""

    def __init__(self, base: DistributedSampler) -> None:
        self.base = base
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Shuffle for ``epoch`` and leave out its first ``skip`` samples."""
        self.base.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.base)[self.skip :])

    def __len__(self) -> int:
        return len(self.base) - self.skip


class Shard(Sampler[int]):
    """Every ``world``-th index from ``rank``: an exact split of the validation set (no padding)."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class DecodedBatches:
    """The batches of ``loader`` decoded once and kept as tensors: iterating gives the same :class:`Batch` es, in the
    same order, without decoding again (the evaluation transform is deterministic). Skipped files are reported in
    the first batch."""

    def __init__(self, loader: Iterable[Batch]) -> None:
        batches = list(loader)
        self.images = torch.cat([b.images for b in batches if len(b.labels)]) if batches else torch.empty(0)
        self.labels = torch.cat([b.labels for b in batches]) if batches else torch.empty(0, dtype=torch.long)
        self.skipped = tuple(p for b in batches for p in b.skipped)
        self.sizes = [len(b.labels) for b in batches]

    def __iter__(self) -> Iterator[Batch]:
        start = 0
        for i, size in enumerate(self.sizes):
            skipped = self.skipped if i == 0 else ()
            yield Batch(self.images[start : start + size], self.labels[start : start + size], skipped)
            start += size

    def __len__(self) -> int:
        return len(self.sizes)


def _decodable(data: DataBundle, n: int) -> bool:
    """Whether ``n`` validation images of ``data`` are in-memory arrays small enough to keep decoded."""
    base = data.val.dataset if isinstance(data.val, Subset) else data.val
    if not isinstance(base, ArrayDataset):
        return False
    pre = data.preprocessing
    return n * pre.in_chans * pre.input_size**2 * 4 <= DECODED_VAL_BYTES


def _array_base(dataset: Dataset) -> ArrayDataset | None:
    """The array set under ``dataset`` when it has a batch transform (read by :class:`ArrayBatches`), else None."""
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    return base if isinstance(base, ArrayDataset) and base.batch_transform is not None else None


def _loader(
    dataset: Dataset,
    sampler: Sampler[int],
    batch_size: int,
    drop_last: bool,
    device: torch.device | None = None,
    **common: Any,
) -> DataLoader | ArrayBatches:
    """:class:`ArrayBatches` over an array set with a batch transform (transformed on ``device`` when it is a GPU),
    else a DataLoader with ``common``."""
    base = _array_base(dataset)
    if base is not None and base.batch_transform is not None:
        return ArrayBatches(dataset, sampler, batch_size, base.batch_transform, drop_last=drop_last, device=device)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **common)


@dataclass(frozen=True)
class Loaders:
    """Training and validation loaders of one process, the training sampler and the optimizer steps per epoch."""

    train: DataLoader | ArrayBatches
    val: Iterable[Batch]
    sampler: EpochSampler
    steps_per_epoch: int
    generator: torch.Generator
    common: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The DataLoader settings of the training loader (generator, workers, pinning, collation)."""
    device: torch.device | None = None
    """Where array batches are transformed (a GPU; None: the CPU)."""

    def with_train_dataset(self, dataset: Dataset) -> Loaders:
        """These loaders with the training loader reading ``dataset`` (same length and order: the same sampler,
        generator, batch size and worker settings), e.g. a progressive-learning stage's transform."""
        size = len(self.train.dataset)
        if len(dataset) != size:
            raise InvalidValue(f"a restaged training set must keep its {size} images, got {len(dataset)}")
        train = _loader(dataset, self.sampler, self.train.batch_size or 1, True, self.device, **self.common)
        return dataclasses.replace(self, train=train)


def build_loaders(data: DataBundle, config: TrainConfig, device: torch.device, *, rank: int, world: int) -> Loaders:
    """Loaders for this process's share of ``config.batch_size`` (the global batch, divisible by ``world``)."""
    if config.batch_size % world:
        raise InvalidValue(f"--batch-size {config.batch_size} (global) is not divisible by {world} processes")
    local_batch = config.batch_size // world
    base = DistributedSampler(data.train, num_replicas=world, rank=rank, shuffle=True, seed=config.seed, drop_last=True)
    steps = len(base) // local_batch
    if steps < 1:
        raise InvalidValue(
            f"the training set ({len(data.train)} images) is smaller than --batch-size "
            f"{config.batch_size}; lower --batch-size or raise --train-limit"
        )
    gpu = device.type == "cuda"
    cpus = usable_cpus()
    workers = config.workers if config.workers is not None else (min(8, cpus) if gpu else 0)
    workers = bound_count("--workers", workers, cpus, f"{cpus} usable CPU cores")  # each worker is a process
    pin = config.pin_memory if config.pin_memory is not None else gpu
    common: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": pin,
        "collate_fn": collate_skip,
        "persistent_workers": False,
    }
    generator = torch.Generator().manual_seed(config.seed + rank)
    sampler = EpochSampler(base)
    train = _loader(data.train, sampler, local_batch, True, device, generator=generator, **common)
    shard = Shard(len(data.val), rank, world)
    loader = _loader(data.val, shard, max(local_batch, 64), False, device, **common)
    val: Iterable[Batch] = DecodedBatches(loader) if _decodable(data, len(shard)) else loader
    return Loaders(train, val, sampler, steps, generator, {"generator": generator, **common}, device)
