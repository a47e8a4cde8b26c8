"""Whole-batch transforms of the array datasets against the per-sample PIL path, and which loader a run gets."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from effnet.config.augment import Augment
from effnet.config.training import TrainConfig
from effnet.preprocessing import Preprocessing
from effnet.serving.preprocess import eval_transform
from effnet.training import data as D
from effnet.training.batched import ArrayBatches, batch_eval_transform, batch_train_transform, batchable
from effnet.training.loaders import EpochSampler, build_loaders

RNG = np.random.default_rng(0)
GRAY = RNG.integers(0, 256, (24, 28, 28), dtype=np.uint8)
RGB = RNG.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
STD = 0.2


def _pre(resolution: int, crop: float, native: int, in_chans: int) -> Preprocessing:
    pre = Preprocessing(resolution, crop, "bicubic", (0.3,) * native, (STD,) * native, tuple("abcdefghij"), native)
    return pre.with_in_chans(in_chans)


def _both(images: np.ndarray, pre: Preprocessing) -> tuple[torch.Tensor, torch.Tensor]:
    per_sample = eval_transform(pre)
    ref = torch.stack([per_sample(Image.fromarray(x)) for x in images])
    return ref, batch_eval_transform(pre)(torch.from_numpy(images))


@pytest.mark.parametrize(
    ("images", "resolution", "in_chans"),
    [(GRAY, 28, 1), (GRAY, 28, 3), (RGB, 32, 3), (RGB, 32, 1), (RGB, 24, 1)],
)
def test_eval_batches_bit_identical_without_a_resize(images, resolution, in_chans):
    # same size (resize skipped, as PIL skips it), gray -> RGB, RGB -> L (PIL's fixed-point luma), center crop,
    # to float, normalise: the same operations, bit for bit
    native = 1 if images.ndim == 3 else 3
    crop = 1.0 if resolution == images.shape[1] else resolution / images.shape[1]
    ref, got = _both(images, _pre(resolution, crop, native, in_chans))
    assert got.shape == ref.shape == (len(images), in_chans, resolution, resolution)
    assert torch.equal(got, ref)


@pytest.mark.parametrize(("images", "resolution", "crop"), [(GRAY, 32, 1.0), (GRAY, 37, 1.0), (RGB, 224, 0.875)])
def test_eval_batches_with_a_resize_within_two_levels_of_pil(images, resolution, crop):
    # torch's antialiased bicubic on uint8 vs PIL's: the documented difference (docs/speed.md)
    native = 1 if images.ndim == 3 else 3
    ref, got = _both(images, _pre(resolution, crop, native, native))
    levels = (got - ref).abs() * STD * 255
    assert levels.max().item() <= 2.0 + 1e-3
    assert (levels < 1e-3).float().mean().item() >= 0.98


def test_train_batches_crop_flip_and_draws():
    pre = _pre(32, 1.0, 1, 1).replace(mean=(0.0,), std=(1 / 255,))
    images = torch.from_numpy(GRAY)
    # a crop scale of 1 on a square image: every crop is the whole image, i.e. a plain bicubic resize
    whole = batch_train_transform(pre, Augment("none", crop_scale_min=1.0, hflip=0.0))
    plain = torch.nn.functional.interpolate(images.unsqueeze(1).float(), size=(32, 32), mode="bicubic")
    assert (whole(images) - plain.round().clamp(0, 255)).abs().max().item() < 1e-3
    flipped = batch_train_transform(pre, Augment("none", crop_scale_min=1.0, hflip=1.0))
    assert torch.equal(flipped(images), whole(images).flip(-1))
    random = batch_train_transform(pre, Augment("none"))
    torch.manual_seed(3)
    first = random(images)
    torch.manual_seed(3)
    assert torch.equal(random(images), first)  # the draws come from torch's global RNG (checkpointed)
    assert not torch.equal(random(images), first)
    fixed = batch_train_transform(pre, Augment("none", random_crop=False, hflip=0.0))
    assert torch.equal(fixed(images), batch_eval_transform(pre)(images))
    assert batch_train_transform(pre, Augment("autoaugment")) is None and not batchable(Augment("randaugment"))


def _bundle(tmp_path, augment: Augment) -> D.DataBundle:
    rng = np.random.default_rng(1)
    for prefix, count in (("train", 40), ("t10k", 20)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        header = bytes([0, 0, 0x08, 3]) + b"".join(int(s).to_bytes(4, "big") for s in images.shape)
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        labels = (np.arange(count) % 10).astype(np.uint8)
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(
            bytes([0, 0, 0x08, 1]) + count.to_bytes(4, "big") + labels.tobytes()
        )
    return D.load_datasets(
        "fashion-mnist", resolution=16, data_root=str(tmp_path), augment=augment, train_limit=30, val_limit=12
    )


def test_array_sets_get_batch_loaders_and_policies_keep_the_per_sample_path(tmp_path):
    config = TrainConfig(data="fashion-mnist", batch_size=8, workers=0, seed=1)
    fast = build_loaders(_bundle(tmp_path, Augment("none")), config, torch.device("cpu"), rank=0, world=1)
    assert isinstance(fast.train, ArrayBatches) and len(fast.train) == 3
    slow = build_loaders(_bundle(tmp_path, Augment("autoaugment")), config, torch.device("cpu"), rank=0, world=1)
    assert isinstance(slow.train, DataLoader)
    assert [len(b.labels) for b in fast.val] == [12]  # validation is batched whatever the training policy
    assert torch.equal(next(iter(fast.val)).images, next(iter(slow.val)).images)
    folders = tmp_path / "folders"
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            (folders / split / name).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(GRAY[i]).save(folders / split / name / f"{i}.png")
    tree = D.load_datasets(str(folders), resolution=16, augment=Augment("none"))
    with_pool = build_loaders(tree, TrainConfig(batch_size=4, workers=2), torch.device("cpu"), rank=0, world=1)
    assert isinstance(with_pool.train, DataLoader) and with_pool.train.num_workers == 2  # ImageFolder: its pool


def test_array_batches_follow_the_sampler_and_subset(tmp_path):
    bundle = _bundle(tmp_path, Augment("none", random_crop=False, hflip=0.0))
    config = TrainConfig(data="fashion-mnist", batch_size=8, workers=0, seed=1)
    loaders = build_loaders(bundle, config, torch.device("cpu"), rank=0, world=1)
    sampler = loaders.sampler
    assert isinstance(sampler, EpochSampler)
    sampler.set_epoch(2, skip=8)
    order = list(sampler)
    batches = list(loaders.train)
    assert len(batches) == 2  # 30 - 8 = 22 left: two full batches, the short one dropped
    base, indices = bundle.train.dataset, bundle.train.indices
    for i, batch in enumerate(batches):
        chosen = [indices[j] for j in order[8 * i : 8 * i + 8]]
        assert batch.labels.tolist() == [base.targets[j] for j in chosen]
        per_sample = torch.stack([base[j][0] for j in chosen])  # random_crop off, no flip: eval geometry
        levels = (batch.images - per_sample).abs() * bundle.std[0] * 255
        assert levels.max().item() <= 2.0 + 1e-3  # 28 -> 16 px: torch's resize vs PIL's


def test_fashion_mnist_files_read_once_while_unchanged(tmp_path):
    from effnet.training import named_datasets as N

    first = _bundle(tmp_path, Augment("none"))
    again = N.named_arrays("fashion-mnist", str(tmp_path), False)
    assert again[0] is first.train.dataset.images  # the cached array, shared (no copy) by the dataset
    path = tmp_path / "train-images-idx3-ubyte"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    before = path.stat().st_mtime_ns
    path.write_bytes(bytes(data))  # same size, new contents and a later modification time
    os.utime(path, ns=(before + 10**9, before + 10**9))
    changed = N.named_arrays("fashion-mnist", str(tmp_path), False)[0]
    assert changed is not again[0] and changed[-1, -1, -1] == again[0][-1, -1, -1] ^ 0xFF


def test_the_main_jobs_trials_take_the_batch_path(tmp_path):
    from effnet.config.search import SearchConfig
    from effnet.config.training import resolve_recipe
    from effnet.search.worker import train_config

    trial = resolve_recipe(train_config(SearchConfig(), 0, tmp_path / "trial"))
    assert trial.data == "fashion-mnist" and batchable(trial.augmentation())
    assert not batchable(resolve_recipe(TrainConfig(data="fashion-mnist", augment="autoaugment")).augmentation())
