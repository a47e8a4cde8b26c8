"""Datasets and transforms: IDX reading, dataset search, subsets, ImageFolder with bad inputs, transforms."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from effnet.config.augment import Augment
from effnet.preprocessing import Preprocessing
from effnet.serving.preprocess import BadSample, ResizeBound, collate_skip, eval_transform
from effnet.training import data as D
from effnet.training import named_datasets as N

FMNIST = N.DEBIAN_FASHION_MNIST
needs_fmnist = pytest.mark.skipif(
    not (FMNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST (Debian package dataset-fashion-mnist) not installed at {FMNIST}",
)


def _write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def _fake_fmnist(folder, n: int = 20, compress: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    for prefix, count in (("train", n), ("t10k", n // 2)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (count, 28, 28)), compress)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(count) % 10, compress)


def test_read_idx_plain_gzip_and_truncated(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a", arr, compress=False)
    _write_idx(tmp_path / "a.gz", arr, compress=True)
    assert np.array_equal(N.read_idx(tmp_path / "a"), arr)
    assert np.array_equal(N.read_idx(tmp_path / "a.gz"), arr)
    (tmp_path / "bad").write_bytes((tmp_path / "a").read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        N.read_idx(tmp_path / "bad")
    (tmp_path / "junk").write_bytes(b"\x89PNG....")
    with pytest.raises(ValueError, match="not an IDX file"):
        N.read_idx(tmp_path / "junk")


def test_fashion_mnist_search_order_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(N, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    monkeypatch.delenv("EFFNET_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST IDX files .* not found; searched"):
        N.find_fashion_mnist()
    _fake_fmnist(tmp_path / "debian")
    assert N.find_fashion_mnist()["train_images"].parent == tmp_path / "debian"
    _fake_fmnist(tmp_path / "env" / "fashion-mnist", compress=False)
    monkeypatch.setenv("EFFNET_DATA", str(tmp_path / "env"))
    assert N.find_fashion_mnist()["train_images"] == tmp_path / "env" / "fashion-mnist" / "train-images-idx3-ubyte"
    _fake_fmnist(tmp_path / "root" / "FashionMNIST" / "raw")  # torchvision's layout under --data-root
    assert N.find_fashion_mnist(tmp_path / "root")["test_labels"].parent == tmp_path / "root" / "FashionMNIST" / "raw"
    bundle = D.load_datasets("fashion-mnist", resolution=32, data_root=str(tmp_path / "root"), train_limit=7)
    assert (len(bundle.train), len(bundle.val), bundle.num_classes, bundle.in_chans) == (7, 10, 10, 1)
    x, y = bundle.train[0]
    assert x.shape == (1, 32, 32) and 0 <= y < 10
    rgb = D.load_datasets("fashion-mnist", resolution=24, data_root=str(tmp_path / "root"), in_chans=3)
    assert rgb.val[0][0].shape == (3, 24, 24) and len(rgb.mean) == 3


def test_limit_indices_deterministic_and_nested():
    a, b = D.limit_indices(1000, 100, seed=0), D.limit_indices(1000, 100, seed=0)
    assert a == b and len(set(a)) == 100 and a == sorted(a)
    assert set(D.limit_indices(1000, 50, seed=0)) <= set(a)
    assert D.limit_indices(1000, 100, seed=1) != a
    assert D.limit_indices(10, None) is None and D.limit_indices(10, 10) is None
    with pytest.raises(ValueError, match=r"^limit must be >= 1, got 0$"):
        D.limit_indices(10, 0)


@needs_fmnist
def test_real_fashion_mnist_stats_and_shapes():
    bundle = D.load_datasets("fashion-mnist", resolution=32, train_limit=1000, augment=Augment("autoaugment"))
    assert len(bundle.train) == 1000 and len(bundle.val) == 10000
    assert bundle.mean[0] == pytest.approx(0.2860, abs=1e-3) and bundle.std[0] == pytest.approx(0.3530, abs=1e-3)
    x, _ = bundle.train[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32


def _image_tree(root, classes=("cat", "dog"), per_class: int = 3) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_image_folder_corrupt_jpeg_is_skipped_and_reported(tmp_path):
    _image_tree(tmp_path)
    (tmp_path / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    bundle = D.load_datasets(str(tmp_path), resolution=16, augment=Augment("none"))
    assert bundle.classes == ("cat", "dog") and bundle.num_classes == 2 and len(bundle.train) == 7
    items = [bundle.train[i] for i in range(len(bundle.train))]
    bad = [x for x, _ in items if isinstance(x, BadSample)]
    assert len(bad) == 1 and bad[0].path.endswith("broken.jpg")
    batch = collate_skip(items)
    assert batch.images.shape == (6, 3, 16, 16) and len(batch.labels) == 6
    assert batch.skipped == (bad[0].path,)
    empty = collate_skip([(bad[0], 1)])
    assert empty.images.numel() == 0 and len(empty.skipped) == 1


def test_image_folder_bad_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        D.load_datasets(str(tmp_path / "nope"), resolution=16)
    (tmp_path / "flat").mkdir()
    with pytest.raises(FileNotFoundError, match="train/ and val/"):
        D.load_datasets(str(tmp_path / "flat"), resolution=16)
    _image_tree(tmp_path / "tree")
    (tmp_path / "tree" / "train" / "empty_class").mkdir()
    (tmp_path / "tree" / "train" / "empty_class" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"class folder .*empty_class has no images"):
        D.load_datasets(str(tmp_path / "tree"), resolution=16)
    with pytest.raises(FileNotFoundError, match="not found"):
        D.load_datasets("cifar10", resolution=32, data_root=str(tmp_path))


def test_transforms_are_torchvision_and_follow_crop_fraction():
    from torchvision import transforms as T

    gray, rgb = Preprocessing(32, 1.0, mean=(0.5,), std=(0.5,), in_chans=1), Preprocessing(32, 1.0)
    train = D.train_transform(gray, augment=Augment("autoaugment"))
    kinds = [type(t) for t in train.transforms]
    assert T.RandomResizedCrop in kinds and T.AutoAugment in kinds and T.RandomHorizontalFlip in kinds
    rrc = next(t for t in train.transforms if isinstance(t, T.RandomResizedCrop))
    assert rrc.interpolation == T.InterpolationMode.BICUBIC and rrc.scale == (0.08, 1.0)
    rand = Augment("randaugment", randaugment_n=3, randaugment_m=5)
    ra = D.train_transform(rgb, augment=rand)
    ra_t = next(t for t in ra.transforms if isinstance(t, T.RandAugment))
    assert (ra_t.num_ops, ra_t.magnitude) == (3, 5)
    assert D.eval_transform is eval_transform  # training validates with serving's one transform
    ev = eval_transform(Preprocessing(224, 0.875))
    assert next(t for t in ev.transforms if isinstance(t, T.Resize)).size == 256
    img = Image.fromarray(np.zeros((300, 400), dtype=np.uint8))  # grayscale repeated to RGB
    assert ev(img).shape == (3, 224, 224)
    assert train(img).shape == (1, 32, 32)
    with pytest.raises(ValueError, match="augment must be one of"):
        Augment("mixup")
    with pytest.raises(ValueError, match="crop scale minimum must be in"):
        Augment(crop_scale_min=0.0)
    with pytest.raises(ValueError, match="horizontal flip probability must be in"):
        Augment(hflip=1.5)
    fixed = D.train_transform(gray.replace(input_size=8), augment=Augment("none", random_crop=False, hflip=0.0))
    assert [type(t) for t in fixed.transforms][1:4] == [ResizeBound, T.Resize, T.CenterCrop] and torch.equal(
        fixed(img), fixed(img)
    )
