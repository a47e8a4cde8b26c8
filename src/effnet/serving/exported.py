"""A file written by ``effnet export`` as an engine (``predict`` / ``eval --exported``): ``.onnx`` run by ONNX
Runtime, ``.xml`` (OpenVINO IR) by OpenVINO, at the precision the file itself records. Its input and output shapes
(:class:`Signature`) are read from the file and checked against the weights that give the preprocessing and class
names, so a file made for another model is one line, never the runtime's shape error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from effnet.errors import BadFile, InvalidValue, MissingFile
from effnet.serving.cpu_engines import openvino_run, ort_run
from effnet.serving.engines import EngineBase, Run
from effnet.serving.openvino import ir_precision, openvino_core
from effnet.serving.ort import ort_session

__all__ = ["Signature", "ExportedEngine", "load_exported"]

_ONNX_INT8_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"})


@dataclass(frozen=True)
class Signature:
    """What a model takes and gives: input channels, image side (None: any) and classes (None: unknown)."""

    in_chans: int | None
    size: int | None
    classes: int | None

    def describe(self) -> str:
        """``3-channel 224x224 images -> 1000 classes``."""
        side = f"{self.size}x{self.size}" if self.size else "any-size"
        return f"{self.in_chans or '?'}-channel {side} images -> {self.classes or '?'} classes"


def _static(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def _signature(inputs: list[Any], outputs: list[Any]) -> Signature:
    """From the input shape (N, C, H, W) and output shape (N, K) as lists of ints (dynamic dims anything else)."""
    shape_in = list(inputs) + [None] * (4 - len(inputs))
    height, width = _static(shape_in[2]), _static(shape_in[3])
    return Signature(
        _static(shape_in[1]), height if height == width else None, _static(outputs[-1]) if outputs else None
    )


class ExportedEngine(EngineBase):
    """An exported file's engine; ``backend`` is the file's path as given, ``precision`` the one the file holds:
    ``int8`` where its graph is quantized, else the IR's recorded ``bf16``, else ``fp32``."""

    __slots__ = ("_path", "_run", "signature")

    def __init__(self, path: str, run: Run, precision: str, signature: Signature | None = None) -> None:
        super().__init__(precision)
        self._path, self._run, self.signature = path, run, signature

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


def _load_onnx(file: Path) -> tuple[Run, str, Signature]:
    import onnx  # lazy: onnx is needed only to read an exported file's graph

    try:
        session = ort_session(str(file))
        run = ort_run(session, False)
        ops = {node.op_type for node in onnx.load(str(file), load_external_data=False).graph.node}
        signature = _signature(session.get_inputs()[0].shape, session.get_outputs()[0].shape)
    except Exception as exc:  # ONNX Runtime's and onnx's own errors (protobuf, unsupported op, ...)
        raise BadFile(f"--exported {file}: not a readable ONNX model ({_last_line(exc)})") from None
    return run, "int8" if ops & _ONNX_INT8_OPS else "fp32", signature


def _ir_dims(shape: Any) -> list[Any]:
    return [d.get_length() if d.is_static else None for d in shape]


def _load_ir(file: Path) -> tuple[Run, str, Signature]:
    try:
        model = openvino_core().read_model(str(file))
        signature = _signature(
            _ir_dims(model.inputs[0].get_partial_shape()), _ir_dims(model.outputs[0].get_partial_shape())
        )
    except (RuntimeError, IndexError) as exc:
        raise BadFile(f"--exported {file}: not a readable OpenVINO IR ({_last_line(exc)})") from None
    hint = ir_precision(model)
    quantized = any(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops())
    return openvino_run(model, hint, False), "int8" if quantized else hint, signature


def load_exported(
    path: str | os.PathLike[str], expect: Signature | None = None, weights: object = None
) -> ExportedEngine:
    """The engine of a file written by ``effnet export``: ``.onnx`` by ONNX Runtime, ``.xml`` (IR) by OpenVINO at
    the precision the IR records (``runtime_options`` in its rt_info). Its precision is read from the file: ``int8``
    where its graph is quantized (QDQ / FakeQuantize nodes), else bf16 or fp32.

    ``expect``: what the ``weights`` (named in the error) feed it and read from it: input channels, the
    preprocessing's image side and the classes; a file whose static input or output shape differs is a one-line
    :class:`~effnet.errors.InvalidValue` naming both."""
    file = Path(path)
    for part in (file, file.with_suffix(".bin")) if file.suffix == ".xml" else (file,):
        if part.exists() and not part.is_file():  # a FIFO would block the runtime's reader for good
            raise BadFile(f"--exported: {part} is not a regular file (a folder, FIFO or device)")
    if not file.is_file():
        raise MissingFile(f"--exported: no such file: {file}")
    if file.suffix == ".onnx":
        run, precision, signature = _load_onnx(file)
    elif file.suffix == ".xml":
        run, precision, signature = _load_ir(file)
    else:
        raise InvalidValue(f"--exported must be an .onnx or OpenVINO .xml file from effnet export; got {file}")
    if expect is not None and not _fits(signature, expect):
        raise InvalidValue(
            f"--exported {file} takes {signature.describe()}, but --weights {weights} give "
            f"{expect.describe()}: export these weights (effnet export --weights ...) or pass the weights it was "
            "made from"
        )
    return ExportedEngine(os.fspath(path), run, precision, signature)


def _fits(found: Signature, expect: Signature) -> bool:
    """Whether every dimension the file fixes equals what the weights need."""
    pairs = ((found.in_chans, expect.in_chans), (found.size, expect.size), (found.classes, expect.classes))
    return all(a is None or b is None or a == b for a, b in pairs)
