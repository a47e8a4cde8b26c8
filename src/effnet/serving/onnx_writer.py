"""effnet's one ONNX exporter: the TorchScript-based ``torch.onnx.export`` with a dynamic batch axis.

Export files (:mod:`effnet.serving.export`) and the in-memory graphs that ONNX Runtime and OpenVINO serve
(:mod:`effnet.serving.engines`, :mod:`effnet.serving.openvino`) are all written here. A leaf: it imports no other
serving module.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from typing import IO

import torch
from torch import nn

from effnet.config.serving import DEFAULT_OPSET
from effnet.errors import InvalidValue

__all__ = ["write_onnx", "onnx_bytes", "onnx_graph"]


def write_onnx(
    model: nn.Module,
    example: torch.Tensor,
    destination: str | os.PathLike[str] | IO[bytes],
    output_names: Sequence[str] = ("logits",),
    opset: int = DEFAULT_OPSET,
) -> None:
    """``torch.onnx.export`` as effnet uses it: legacy exporter, input ``input``, batch axis dynamic everywhere."""
    axes = {name: {0: "batch"} for name in ["input", *output_names]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
        try:
            torch.onnx.export(
                model,
                (example,),
                destination,
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=list(output_names),
                dynamic_axes=axes,
            )
        except torch.onnx.errors.OnnxExporterError as exc:  # e.g. an operator the opset lacks
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidValue(f"ONNX export at opset {opset} failed: {first[:300]}") from None


def onnx_bytes(
    model: nn.Module, example: torch.Tensor, output_names: Sequence[str] = ("logits",), opset: int = DEFAULT_OPSET
) -> bytes:
    """:func:`write_onnx` into memory."""
    buffer = io.BytesIO()
    write_onnx(model, example, buffer, output_names, opset)
    return buffer.getvalue()


def onnx_graph(model: nn.Module, example: torch.Tensor) -> tuple[bytes, bool]:
    """ONNX bytes of ``model`` at ``example``'s (C, H, W) and whether it returns several outputs (a features model:
    outputs ``output0``, ``output1``, ...; else one, ``output0``)."""
    with torch.no_grad():
        probe = model(example)
    many = not isinstance(probe, torch.Tensor)
    outputs = [f"output{i}" for i in range(len(probe) if many else 1)]
    return onnx_bytes(model, example, outputs), many
