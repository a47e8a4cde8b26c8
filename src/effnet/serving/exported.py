"""A file written by ``effnet export`` as an engine (``predict`` / ``eval --exported``): ``.onnx`` run by ONNX
Runtime, ``.xml`` (OpenVINO IR) by OpenVINO, at the precision the file itself records.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from effnet.errors import BadFile, InvalidValue, MissingFile
from effnet.serving.cpu_engines import openvino_run, ort_run
from effnet.serving.engines import EngineBase, Run
from effnet.serving.openvino import ir_precision, openvino_core
from effnet.serving.ort import ort_session

__all__ = ["ExportedEngine", "load_exported"]

_ONNX_INT8_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"})


class ExportedEngine(EngineBase):
    """An exported file's engine; ``backend`` is the file's path as given, ``precision`` the one the file holds:
    ``int8`` where its graph is quantized, else the IR's recorded ``bf16``, else ``fp32``."""

    __slots__ = ("_path", "_run")

    def __init__(self, path: str, run: Run, precision: str) -> None:
        super().__init__(precision)
        self._path, self._run = path, run

    @property
    def backend(self) -> str:
        """The file's path, as given."""
        return self._path

    def __call__(self, x: torch.Tensor) -> Any:
        return self._run(x)


def _last_line(exc: BaseException) -> str:
    """The last non-empty line of a foreign library's message (OpenVINO's start with C++ source locations)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def _load_onnx(file: Path) -> tuple[Run, str]:
    import onnx  # lazy: onnx is needed only to read an exported file's graph

    try:
        run = ort_run(ort_session(str(file)), False)
        ops = {node.op_type for node in onnx.load(str(file), load_external_data=False).graph.node}
    except Exception as exc:  # ONNX Runtime's and onnx's own errors (protobuf, unsupported op, ...)
        raise BadFile(f"--exported {file}: not a readable ONNX model ({_last_line(exc)})") from None
    return run, "int8" if ops & _ONNX_INT8_OPS else "fp32"


def _load_ir(file: Path) -> tuple[Run, str]:
    try:
        model = openvino_core().read_model(str(file))
    except RuntimeError as exc:
        raise BadFile(f"--exported {file}: not a readable OpenVINO IR ({_last_line(exc)})") from None
    hint = ir_precision(model)
    quantized = any(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops())
    return openvino_run(model, hint, False), "int8" if quantized else hint


def load_exported(path: str | os.PathLike[str]) -> ExportedEngine:
    """The engine of a file written by ``effnet export``: ``.onnx`` by ONNX Runtime, ``.xml`` (IR) by OpenVINO at
    the precision the IR records (``runtime_options`` in its rt_info). Its precision is read from the file: ``int8``
    where its graph is quantized (QDQ / FakeQuantize nodes), else bf16 or fp32."""
    file = Path(path)
    for part in (file, file.with_suffix(".bin")) if file.suffix == ".xml" else (file,):
        if part.exists() and not part.is_file():  # a FIFO would block the runtime's reader for good
            raise BadFile(f"--exported: {part} is not a regular file (a folder, FIFO or device)")
    if not file.is_file():
        raise MissingFile(f"--exported: no such file: {file}")
    if file.suffix == ".onnx":
        run, precision = _load_onnx(file)
    elif file.suffix == ".xml":
        run, precision = _load_ir(file)
    else:
        raise InvalidValue(f"--exported must be an .onnx or OpenVINO .xml file from effnet export; got {file}")
    return ExportedEngine(os.fspath(path), run, precision)
