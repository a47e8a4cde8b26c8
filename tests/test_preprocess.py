"""The one preprocessing path: Preprocessing, the eval transform, gray <-> RGB, scanner, class folders, bad images."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from effnet.preprocessing import Preprocessing
from effnet.serving.image_files import IMAGE_EXTENSIONS, find_images, image_folder_samples
from effnet.serving.inference import count_correct, top_k
from effnet.serving.preprocess import (
    BadSample,
    ImageFiles,
    class_folder_name,
    collate_skip,
    eval_transform,
    folder_class_indices,
)


def test_resize_size_is_exact_where_float_division_is_not():
    assert 33 / 0.55 < 60  # float error: a plain floor would give 59
    assert Preprocessing(33, 0.55, mean=(0.5,), std=(0.5,), in_chans=1).resize_size == 60
    assert Preprocessing(224, 0.875).resize_size == 256
    assert Preprocessing(300, 300 / 320).resize_size == 320  # torchvision B3: crop 300 of 320
    assert Preprocessing(33, 0.56).resize_size == 58  # 58.93: floored, not rounded


@given(st.integers(8, 800), st.integers(0, 800))
def test_resize_size_inverts_crop_over_resize(crop, extra):
    resize = min(crop + extra, 2 * crop)  # crop fractions below 0.5 are refused (effnet.limits)
    assert Preprocessing(crop, crop / resize).resize_size == resize


@given(st.integers(8, 800), st.floats(0.5, 1.0))
def test_resize_size_is_the_floor_of_the_true_quotient(size, fraction):
    got = Preprocessing(size, fraction).resize_size
    assert got == math.floor(size / fraction) or (
        got == math.floor(size / fraction) + 1 and got - size / fraction < 1e-6
    )


def test_in_chans_travels_and_adapts_mean_std():
    gray = Preprocessing(32, 1.0, "bilinear", (0.3,), (0.2,), ("a", "b"), in_chans=1)
    assert Preprocessing.from_json(gray.to_json()) == gray and json.loads(gray.to_json())["in_chans"] == 1
    legacy = {k: v for k, v in gray.to_dict().items() if k != "in_chans"}  # headers written before in_chans
    assert Preprocessing.from_dict(legacy).in_chans == 1
    rgb = gray.with_in_chans(3)
    assert (rgb.in_chans, rgb.mean, rgb.std, rgb.interpolation) == (3, (0.3,) * 3, (0.2,) * 3, "bilinear")
    back = Preprocessing(mean=(0.2, 0.4, 0.6), std=(0.1, 0.2, 0.3)).with_in_chans(1)
    assert back.mean == pytest.approx((0.4,)) and back.std == pytest.approx((0.2,))
    with pytest.raises(ValueError, match=r"one value per input channel \(1\)"):
        Preprocessing(in_chans=1)
    with pytest.raises(ValueError, match=r"in_chans must be an integer in \[1, 64\]"):
        Preprocessing(in_chans=0)
    with pytest.raises(ValueError, match="1 or 3 input channels, not 4"):
        eval_transform(Preprocessing(in_chans=4, mean=(0.5,) * 4, std=(0.5,) * 4))


def test_eval_transform_converts_gray_and_rgb_by_in_chans():
    rgb_image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    gray_image = rgb_image.convert("L")
    gray = Preprocessing(32, 1.0, mean=(0.5,), std=(0.25,), in_chans=1)
    rgb = gray.with_in_chans(3)
    assert eval_transform(gray)(rgb_image).shape == (1, 32, 32)
    assert torch.equal(eval_transform(gray)(rgb_image), eval_transform(gray)(gray_image))
    as_rgb = eval_transform(rgb)(gray_image)
    assert as_rgb.shape == (3, 32, 32) and torch.equal(as_rgb[0], as_rgb[2])
    assert torch.equal(as_rgb[:1], eval_transform(gray)(gray_image))  # gray -> RGB -> gray is lossless


def _tree(root, names=("cat", "dog"), per: int = 2) -> None:
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per):
            Image.new("RGB", (12, 10), (i * 40, 0, 0)).save(root / name / f"{i}.png")


def test_one_scanner_and_extension_list(tmp_path):
    _tree(tmp_path / "data")
    (tmp_path / "data" / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "data" / "dog" / "deep").mkdir()
    Image.new("L", (9, 9)).save(tmp_path / "data" / "dog" / "deep" / "x.JPG")
    (tmp_path / "data" / ".hidden").mkdir()
    samples, classes = image_folder_samples(tmp_path / "data")
    assert classes == ["cat", "dog"] and [i for _, i in samples] == [0, 0, 1, 1, 1]
    assert samples[2][0].name == "0.png" and samples[4][0].name == "x.JPG"
    files, problems = find_images([tmp_path / "data", tmp_path / "missing"])
    assert [p for p, _ in samples] == files and problems == [f"{tmp_path / 'missing'}: no such file or directory"]
    assert ".gif" in IMAGE_EXTENSIONS and ".txt" not in IMAGE_EXTENSIONS
    (tmp_path / "data" / "empty").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*empty has no images"):
        image_folder_samples(tmp_path / "data")
    (tmp_path / "flat").mkdir()
    with pytest.raises(FileNotFoundError, match="no class folders"):
        image_folder_samples(tmp_path / "flat")


def test_folder_class_indices_by_name_number_or_order():
    names = ("T-shirt/top", "Trouser", "Bag")
    assert class_folder_name("T-shirt/top") == "T-shirt_top"
    assert folder_class_indices(["Bag", "T-shirt_top", "Trouser"], names) == ([2, 0, 1], "class names")
    assert folder_class_indices(["Bag", "T-shirt/top"], names)[0] == [2, 0]
    assert folder_class_indices(["0", "10", "2"], names) == ([0, 10, 2], "numbered folders")
    assert folder_class_indices(["n015", "n002"], names) == ([0, 1], "sorted folder order")
    assert folder_class_indices(["b", "a"], ()) == ([0, 1], "sorted folder order")
    with pytest.raises(ValueError, match=r"class folder 'Bagz' is not one of the weights' 3 class names \('T-shirt"):
        folder_class_indices(["Bag", "Bagz"], names)


@given(
    st.lists(
        st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=8),
        min_size=1,
        max_size=12,
        unique=True,
    )
)
def test_class_named_folders_map_back_to_their_index(names):
    folders = sorted({class_folder_name(n) for n in names})
    if len(folders) < len(names):
        return  # two names share a folder spelling: not a folder layout
    indices, how = folder_class_indices(folders, names)
    assert how == "class names"
    assert [class_folder_name(names[i]) for i in indices] == folders
    unknown = "?" + max(folders, key=len) + "?"
    if unknown not in names:
        with pytest.raises(ValueError, match="is not one of the weights'"):
            folder_class_indices([*folders, unknown], names)


def test_one_bad_image_protocol(tmp_path):
    _tree(tmp_path)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    samples, _ = image_folder_samples(tmp_path)
    dataset = ImageFiles(samples, eval_transform(Preprocessing(8, 1.0)))
    items = [dataset[i] for i in range(len(dataset))]
    bad = [x for x, _ in items if isinstance(x, BadSample)]
    assert len(bad) == 1 and bad[0].path.endswith("broken.png") and "cannot read image" in bad[0].error
    batch = collate_skip(items)
    assert batch.images.shape == (4, 3, 8, 8) and batch.labels.tolist() == [0, 0, 1, 1]
    assert batch.skipped == (bad[0].path,) and batch.bad == tuple(bad)
    empty = collate_skip([(bad[0], 1)])
    assert empty.images.numel() == 0 and len(empty.labels) == 0 and empty.skipped == (bad[0].path,)


@given(st.integers(1, 8), st.integers(1, 12), st.integers(1, 7), st.integers(0, 2**31))
def test_top_k_matches_sorting(rows, classes, k, seed):
    logits = torch.randn(rows, classes, generator=torch.Generator().manual_seed(seed))
    labels = torch.randint(0, classes, (rows,), generator=torch.Generator().manual_seed(seed + 1))
    probs, indices = top_k(logits, k)
    assert indices.shape == (rows, min(k, classes))
    order = logits.argsort(dim=-1, descending=True)[:, : min(k, classes)]
    assert torch.equal(indices, order)
    assert torch.allclose(probs, logits.softmax(-1).gather(-1, order))
    expected5 = sum(int(labels[r] in order[r].tolist()) for r in range(rows))
    assert count_correct(logits, labels, k) == (int((order[:, 0] == labels).sum()), expected5)
