"""The journey of issue #10 as a test: what ``effnet train`` writes, predict / eval / export / scale / train use.

Fashion-MNIST (1 input channel) and a 3-channel ImageFolder: train -> predict on PNG files (gray and RGB) ->
eval on class-named folders and on a labels CSV of the same images (equal) -> export ONNX (verified) ->
``effnet scale --output-spec`` -> ``effnet train --spec`` -> predict. Tiny models, one epoch, 32 px.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from effnet.cli import main
from effnet.serving.preprocess import class_folder_name

SIZE = ["--width", "0.25", "--depth", "0.25", "--resolution", "32"]
RUN = [
    "--epochs",
    "1",
    "--batch-size",
    "32",
    "--train-limit",
    "200",
    "--val-limit",
    "64",
    "--threads",
    "1",
    "--workers",
    "0",
    "--augment",
    "none",
]
SHAPES = ("red dot", "green bar", "blue ring")


def _run(capsys, *argv: str) -> str:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, (argv, captured.err[-2000:])
    assert "Traceback" not in captured.err
    return captured.out


def _write_images(root: Path, images: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> Path:
    """Class-named folders (half the files gray PNGs, half RGB) and a labels CSV (file,index) of the same files."""
    rows = ["file,index"]
    for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / "folders" / class_folder_name(names[int(label)])
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(pixels)
        (image.convert("RGB") if i % 2 else image.convert("L")).save(folder / f"{i}.png")
        rows.append(f"folders/{folder.name}/{i}.png,{int(label)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "folders"


def _predict(capsys, weights: Path, names: tuple[str, ...], *paths: Path, runtime: str = "eager") -> list[dict]:
    out = _run(
        capsys, "predict", *map(str, paths), "--weights", str(weights), "--json", "--top-k", "3", "--runtime", runtime
    )
    predictions = json.loads(out)["predictions"]
    for p in predictions:
        assert [t["label"] for t in p["top"]] == [names[t["index"]] for t in p["top"]], p  # the weights' names
    return predictions


def _eval(capsys, weights: Path, *args: str) -> dict:
    out = _run(
        capsys,
        "eval",
        *args,
        "--weights",
        str(weights),
        "--json",
        "--no-progress",
        "--workers",
        "0",
        "--runtime",
        "eager",
    )
    return json.loads(out.strip().splitlines()[-1])


def _journey(capsys, tmp_path: Path, data: str, files: Path, names: tuple[str, ...], in_chans: int) -> None:
    run = tmp_path / "run"
    _run(capsys, "train", "--data", data, *SIZE, *RUN, "--output", str(run))
    weights = run / "best.safetensors"
    header = json.loads(
        json.loads(weights.read_bytes()[8 : 8 + int.from_bytes(weights.read_bytes()[:8], "little")])["__metadata__"][
            "effnet.preprocessing"
        ]
    )
    assert header["in_chans"] == in_chans and tuple(header["class_names"]) == names
    assert header["interpolation"] == "bicubic" and header["input_size"] == 32

    folders = files / "folders"
    predictions = _predict(capsys, weights, names, folders, runtime="default")
    assert len(predictions) == len(list(folders.rglob("*.png")))
    gray, rgb = tmp_path / "gray.png", tmp_path / "rgb.png"  # the same picture as 1 and 3 channels
    picture = Image.open(next(folders.rglob("*.png")))
    picture.convert("L").save(gray)
    picture.convert("L").convert("RGB").save(rgb)
    both = _predict(capsys, weights, names, gray, rgb)
    assert both[0]["top"][0]["index"] == both[1]["top"][0]["index"]

    by_folder = _eval(capsys, weights, "--data", str(folders))
    by_csv = _eval(capsys, weights, "--data", str(files), "--labels", str(files / "labels.csv"))
    assert by_folder["layout"] == "ImageFolder, class names" and by_csv["layout"].startswith("labels CSV")
    keys = ("images", "correct1", "correct5", "top1", "top5")
    assert {k: by_folder[k] for k in keys} == {k: by_csv[k] for k in keys}

    onnx = tmp_path / "model.onnx"
    exported = json.loads(
        _run(capsys, "export", "--weights", str(weights), "--format", "onnx", "--output", str(onnx), "--json")
    )
    assert onnx.is_file() and exported["input_shape"][1] == in_chans and exported["max_abs_diff"] <= exported["atol"]

    spec = tmp_path / "spec.json"
    _run(
        capsys,
        "scale",
        *SIZE,
        "--phi-max",
        "1",
        "--num-classes",
        str(len(names)),
        "--max-params",
        "1e9",
        "--output-spec",
        str(spec),
    )
    scaled_run = tmp_path / "scaled"
    _run(capsys, "train", "--data", data, "--spec", str(spec), *RUN, "--output", str(scaled_run))
    scaled = _predict(capsys, scaled_run / "best.safetensors", names, folders)
    assert len(scaled) == len(predictions)


@pytest.mark.slow
def test_journey_fashion_mnist_one_channel(tmp_path, capsys):
    from effnet.training.named_datasets import FASHION_MNIST_CLASSES, find_fashion_mnist, read_idx

    try:
        found = find_fashion_mnist()
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    images, labels = read_idx(found["test_images"])[:40], read_idx(found["test_labels"])[:40]
    _write_images(tmp_path / "files", images, labels, FASHION_MNIST_CLASSES)
    _journey(capsys, tmp_path, "fashion-mnist", tmp_path / "files", FASHION_MNIST_CLASSES, 1)


def _shapes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy 32x32 RGB pictures, class k brightest in colour channel k."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(SHAPES)
    images = rng.integers(0, 120, (n, 32, 32, 3))
    images[np.arange(n), :, :, labels] += 130
    return images.astype(np.uint8), labels


@pytest.mark.slow
def test_journey_rgb_image_folder(tmp_path, capsys):
    names = tuple(sorted(SHAPES))  # ImageFolder classes are its sorted folder names
    tree = tmp_path / "tree"
    for split, n, seed in (("train", 60, 0), ("val", 24, 1)):
        images, labels = _shapes(n, seed)
        for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
            folder = tree / split / SHAPES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    images, labels = _shapes(24, 2)
    _write_images(tmp_path / "files", images, np.array([names.index(SHAPES[k]) for k in labels]), names)
    _journey(capsys, tmp_path, str(tree), tmp_path / "files", names, 3)
