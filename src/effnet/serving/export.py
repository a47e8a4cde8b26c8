"""Export a model to ONNX (dynamic batch axis), OpenVINO IR or TorchScript, verified before it is kept; or as the
next version in a Triton / OpenVINO Model Server repository (:mod:`effnet.serving.model_repository`).

The file is written to a temp path beside the target, loaded back (onnxruntime / OpenVINO / ``torch.jit.load``), run
on a batch of a different size than the export example, and compared with the eager model; at fp32 only when the max
absolute difference is within ``atol`` is it renamed onto the target. ONNX is written by effnet's one exporter
(:mod:`effnet.serving.onnx_writer`, ``torch.onnx.export(..., dynamo=False)``); OpenVINO IR (``.xml`` + ``.bin``,
fp32 weights) is converted from that ONNX graph; TorchScript uses ``torch.jit.script`` (falling back to
``torch.jit.trace``).

Reduced precisions (:data:`effnet.config.serving.EXPORT_PRECISIONS`): ``int8`` writes the model quantized on the
calibration images (ONNX: ONNX Runtime QDQ; IR: NNCF) and verifies it on those images; ``bf16`` writes the fp32 IR
with OpenVINO's inference precision set to bf16 in its ``runtime_options``. A reduced-precision file is checked for
shape and finite outputs; its max difference and top-1 agreement with PyTorch are reported (``atol`` binds fp32
only: accuracy at a reduced precision is what ``effnet eval --exported`` measures).

:func:`export_model` validates every option once, with :mod:`effnet.config.serving`'s checks; the per-format
functions it calls take their arguments as given.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effnet.config.serving import (
    DEFAULT_ATOL,
    DEFAULT_OPSET,
    REPOSITORY_FORMATS,
    check_atol,
    check_export_precision,
    check_input_size,
    check_opset,
    export_files,
)
from effnet.errors import InvalidValue, WriteFailed, check_type
from effnet.io import atomic_path, make_folder, refuse_link, write_error
from effnet.models.fold import fold_batchnorm
from effnet.serving.hardware import require_native_bf16
from effnet.serving.model_repository import export_repository
from effnet.serving.onnx_writer import onnx_bytes
from effnet.serving.openvino import (
    ir_precision,
    openvino_config,
    openvino_core,
    openvino_model,
    openvino_package,
    record_precision,
)
from effnet.serving.ort import ort_session
from effnet.serving.quantize import quantize_onnx

__all__ = ["ExportResult", "export_model", "export_onnx", "export_openvino", "export_torchscript"]


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
    precision: str = "fp32"
    top1_agreement: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "path": self.path,
            "format": self.format,
            "precision": self.precision,
            "input_shape": list(self.input_shape),
            "verify_shape": list(self.verify_shape),
            "max_abs_diff": self.max_abs_diff,
            "atol": self.atol,
            "top1_agreement": self.top1_agreement,
            "method": self.method,
        }


def _inputs(model: nn.Module, input_size: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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


def _compare(
    expected: torch.Tensor, got: torch.Tensor, atol: float, path: Path, label: str, precision: str = "fp32"
) -> float:
    """Max abs difference of ``got`` from ``expected``; ``InvalidValue`` (file not kept) when it is out of bounds."""
    if tuple(got.shape) != tuple(expected.shape):
        raise InvalidValue(f"{path}: {label} output shape {tuple(got.shape)} != PyTorch {tuple(expected.shape)}")
    diff = float((got.float() - expected.float()).abs().max())
    if precision != "fp32":
        if not torch.isfinite(got).all():
            raise InvalidValue(f"{path}: {label} {precision} output is not finite; file not written")
        return diff
    if not diff <= atol:
        raise InvalidValue(f"{path}: {label} output differs from PyTorch by {diff:.3g} > {atol:g}; file not written")
    return diff


def _agreement(expected: torch.Tensor, got: torch.Tensor) -> float:
    return float((expected.argmax(-1) == got.argmax(-1)).float().mean())


def _verify_inputs(
    model: nn.Module, input_size: int | None, seed: int, precision: str, samples: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Export example, check batch and PyTorch's output on it (int8: the calibration images are the check)."""
    example, check, expected = _inputs(model, input_size, seed)
    if precision == "int8":
        if samples is None:
            raise InvalidValue("--precision int8 needs calibration images: --calibration DIR")
        check = samples
        with torch.no_grad():
            expected = model.eval()(check)
    return example, check, expected


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    input_size: int | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
    precision: str = "fp32",
    samples: torch.Tensor | None = None,
) -> ExportResult:
    """Write ``model`` as ONNX (input ``input``, output ``logits``, dynamic batch) and verify it in onnxruntime;
    ``precision="int8"`` writes it quantized by ONNX Runtime on ``samples`` (preprocessed calibration images)."""
    import onnx  # lazy: onnx is needed only to check a written file

    target = Path(path)
    example, check, expected = _verify_inputs(model, input_size, seed, precision, samples)
    data = onnx_bytes(model, example, opset=opset)
    if precision == "int8":
        data = quantize_onnx(data, check)
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
        onnx.checker.check_model(str(tmp))
        (got,) = ort_session(str(tmp)).run(None, {"input": check.numpy()})
        got = torch.from_numpy(got)
        diff = _compare(expected, got, atol, target, "onnxruntime", precision)
    return ExportResult(
        str(target),
        "onnx",
        tuple(example.shape),
        tuple(check.shape),
        diff,
        atol,
        f"torch.onnx.export(dynamo=False, opset={opset})" + (" + ORT quantize_static" if precision == "int8" else ""),
        precision,
        _agreement(expected, got),
    )


def _save_ir(ov_model: Any, target: Path, check: torch.Tensor) -> torch.Tensor:
    """Save ``ov_model`` as ``target`` (.xml) + .bin via a temp folder beside it, run the saved copy on ``check``,
    and return its output; the two files are renamed into place only by the caller's success (:func:`_install_ir`).
    A write that fails is one :class:`~effnet.errors.WriteFailed` line naming ``target``."""
    for file in (target, target.with_suffix(".bin")):
        refuse_link(file)
    make_folder(target.parent)
    try:
        with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
            xml = Path(tmp) / target.name
            try:
                openvino_package().save_model(ov_model, str(xml), compress_to_fp16=False)
            except RuntimeError as exc:  # OpenVINO's C++ writer: a full disk, or a folder it cannot write
                raise write_error(target, exc) from None
            saved = openvino_core().read_model(str(xml))
            saved.reshape(list(check.shape))
            config = openvino_config(ir_precision(saved))
            got = openvino_core().compile_model(saved, "CPU", config)({0: check.numpy()})[0]
            _install_ir(xml, target)
    except OSError as exc:
        if isinstance(exc, WriteFailed):
            raise
        raise write_error(target, exc) from None
    return torch.from_numpy(got.copy())


def _install_ir(staged: Path, target: Path) -> None:
    """Rename the staged ``.bin``, then the ``.xml``, onto ``target``'s (each fsynced first): an ``.xml`` is never
    left pointing at missing weights, and when the ``.xml`` cannot be renamed the previous ``.bin`` is put back."""
    weights, backup = target.with_suffix(".bin"), staged.with_name(".previous.bin")
    for file in (staged.with_suffix(".bin"), staged):
        with open(file, "rb+") as handle:
            os.fsync(handle.fileno())
    kept = weights.exists()
    if kept:
        try:
            os.link(weights, backup)
        except OSError:  # a file system without hard links
            shutil.copyfile(weights, backup)
    os.replace(staged.with_suffix(".bin"), weights)
    try:
        os.replace(staged, target)
    except OSError:
        with contextlib.suppress(OSError):
            if kept:
                os.replace(backup, weights)
            else:
                weights.unlink()
        raise


def export_openvino(
    model: nn.Module,
    path: str | os.PathLike[str],
    input_size: int | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
    precision: str = "fp32",
    samples: torch.Tensor | None = None,
) -> ExportResult:
    """Write ``model`` as OpenVINO IR (``path`` .xml + .bin, dynamic batch, fp32 weights) and verify it in OpenVINO;
    bf16 records OpenVINO's bf16 inference precision in the IR, int8 is NNCF-quantized on ``samples``."""
    target = Path(path)
    export_files("openvino", target)
    example, check, expected = _verify_inputs(model, input_size, seed, precision, samples)
    ov_model, _ = openvino_model(fold_batchnorm(model), example, precision, check if precision == "int8" else None)
    record_precision(ov_model, precision)
    got = _save_ir(ov_model, target, check)
    diff = _compare(expected, got, atol, target, "OpenVINO", precision)
    method = "torch.onnx.export -> openvino.convert_model" + (" + nncf.quantize" if precision == "int8" else "")
    return ExportResult(
        str(target),
        "openvino",
        tuple(example.shape),
        tuple(check.shape),
        diff,
        atol,
        method,
        precision,
        _agreement(expected, got),
    )


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
    model: nn.Module,
    path: str | os.PathLike[str],
    fmt: str,
    input_size: int | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
    precision: str = "fp32",
    samples: torch.Tensor | None = None,
) -> ExportResult:
    """Export in ``fmt`` (``onnx``, ``openvino``, ``torchscript``, or a ``triton`` / ``ovms`` repository folder) at
    ``precision``; ``samples``: preprocessed
    calibration images for int8. Every option is validated before any work (bounds: :mod:`effnet.config.serving`)."""
    check_type("model", model, nn.Module, "a torch nn.Module (an effnet model)")
    check_type("path", path, (str, os.PathLike), "a file path")
    export_files(fmt, path)  # the format's own suffix; its companions are the caller's check_output
    check_export_precision(fmt, precision)
    if input_size is not None:
        check_input_size(input_size)
    check_atol(atol)
    check_opset(opset)
    if precision == "bf16":
        require_native_bf16("cpu")
    if fmt in REPOSITORY_FORMATS:
        write = export_onnx if fmt == "triton" else export_openvino
        options = {"opset": opset, "atol": atol, "precision": precision, "samples": samples}
        return export_repository(model, path, fmt, write, input_size, **options)
    if fmt == "onnx":
        return export_onnx(model, path, input_size, opset=opset, atol=atol, precision=precision, samples=samples)
    if fmt == "openvino":
        return export_openvino(model, path, input_size, opset=opset, atol=atol, precision=precision, samples=samples)
    return export_torchscript(model, path, input_size, atol=atol)
