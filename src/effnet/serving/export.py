"""Export a model to ONNX (dynamic batch axis) or TorchScript, verified against PyTorch before it is kept.

The file is written to a temp path beside the target, loaded back (onnxruntime / ``torch.jit.load``), run on a
random batch of a different size than the export example, and compared with the eager model; only when the max
absolute difference is within ``atol`` is it renamed onto the target. ONNX uses the TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``), which needs no extra package; TorchScript uses ``torch.jit.script``
(falling back to ``torch.jit.trace``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from effnet.io import atomic_path

__all__ = ["FORMATS", "ExportResult", "export_model", "export_onnx", "export_torchscript", "write_onnx"]

FORMATS = ("onnx", "torchscript")
DEFAULT_OPSET = 17


@dataclass(frozen=True)
class ExportResult:
    """What was written and how closely it reproduces the PyTorch model on random input."""

    path: str
    format: str
    input_shape: tuple[int, ...]
    verify_shape: tuple[int, ...]
    max_abs_diff: float
    atol: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"path": self.path, "format": self.format, "input_shape": list(self.input_shape),
                "verify_shape": list(self.verify_shape), "max_abs_diff": self.max_abs_diff, "atol": self.atol,
                "method": self.method}  # fmt: skip


def _inputs(
    model: nn.Module, input_size: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch-1 export example, a batch-3 check input and the eval-mode model's output on it."""
    spec = getattr(model, "spec", None)
    size = input_size or getattr(getattr(model, "preprocessing", None), "input_size", None)
    size = size or (spec.resolution if spec is not None else 224)
    channels = spec.in_chans if spec is not None else 3
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(1, channels, size, size, generator=generator)
    check = torch.randn(3, channels, size, size, generator=generator)
    with torch.no_grad():
        expected = model.eval()(check)
    return example, check, expected


def _compare(expected: torch.Tensor, got: torch.Tensor, atol: float, path: Path, label: str) -> float:
    if tuple(got.shape) != tuple(expected.shape):
        raise ValueError(f"{path}: {label} output shape {tuple(got.shape)} != PyTorch {tuple(expected.shape)}")
    diff = float((got.float() - expected.float()).abs().max())
    if not diff <= atol:
        raise ValueError(f"{path}: {label} output differs from PyTorch by {diff:.3g} > {atol:g}; file not written")
    return diff


def write_onnx(model: nn.Module, example: torch.Tensor, destination: str | os.PathLike[str] | IO[bytes],
               output_names: Sequence[str] = ("logits",), opset: int = DEFAULT_OPSET) -> None:  # fmt: skip
    """``torch.onnx.export`` as effnet uses it: legacy exporter, input ``input``, batch axis dynamic everywhere."""
    axes = {name: {0: "batch"} for name in ["input", *output_names]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
        torch.onnx.export(model, (example,), destination, dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=list(output_names), dynamic_axes=axes)  # fmt: skip


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    input_size: int | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    atol: float = 1e-4,
    seed: int = 0,
) -> ExportResult:
    """Write ``model`` as ONNX (input ``input``, output ``logits``, dynamic batch) and verify it in onnxruntime."""
    import onnx
    import onnxruntime as ort

    target = Path(path)
    example, check, expected = _inputs(model, input_size, seed)
    with atomic_path(target) as tmp:
        write_onnx(model, example, str(tmp), opset=opset)
        onnx.checker.check_model(str(tmp))
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"input": check.numpy()})
        diff = _compare(expected, torch.from_numpy(got), atol, target, "onnxruntime")
    return ExportResult(str(target), "onnx", tuple(example.shape), tuple(check.shape), diff, atol,
                        f"torch.onnx.export(dynamo=False, opset={opset})")  # fmt: skip


def export_torchscript(
    model: nn.Module,
    path: str | os.PathLike[str],
    input_size: int | None = None,
    *,
    atol: float = 1e-4,
    seed: int = 0,
) -> ExportResult:
    """Write ``model`` as TorchScript (scripted, else traced) and verify the reloaded module."""
    target = Path(path)
    example, check, expected = _inputs(model, input_size, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream but still the TorchScript path
        try:
            scripted = torch.jit.script(model)
            method = "torch.jit.script"
        except Exception:  # scripting unsupported constructs: trace instead (fixed control flow)
            with torch.no_grad():
                scripted = torch.jit.trace(model, example)
            method = "torch.jit.trace"
        with atomic_path(target) as tmp:
            torch.jit.save(scripted, str(tmp))
            loaded = torch.jit.load(str(tmp), map_location="cpu")
            with torch.no_grad():
                got = loaded(check)
            diff = _compare(expected, got, atol, target, "TorchScript")
    return ExportResult(str(target), "torchscript", tuple(example.shape), tuple(check.shape), diff, atol, method)


def export_model(
    model: nn.Module, path: str | os.PathLike[str], fmt: str, input_size: int | None = None, **options: Any
) -> ExportResult:
    """Export in ``fmt`` (``onnx`` or ``torchscript``); see :func:`export_onnx` / :func:`export_torchscript`."""
    if fmt == "onnx":
        return export_onnx(model, path, input_size, **options)
    if fmt == "torchscript":
        options.pop("opset", None)
        return export_torchscript(model, path, input_size, **options)
    raise ValueError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
