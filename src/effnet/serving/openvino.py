"""The OpenVINO handles: the process's one ``openvino.Core``, effnet's CPU compile options, a model converted from
effnet's ONNX graph (NNCF-quantized for int8), and the inference precision an IR records.

Every effnet use of a Core (engines, export checks, the bf16 probe, benchmarks) goes through :func:`openvino_core`.
fp32 sets OpenVINO's inference precision to f32 explicitly: its CPU plugin would otherwise run bf16 on bf16 CPUs.
Only the onnx writer and the quantizer are imported from serving; ``openvino`` itself is imported at first use.
"""

from __future__ import annotations

import functools
import io
from typing import Any

import torch
from torch import nn

from effnet.config.serving import ServingUnavailable
from effnet.serving.onnx_writer import onnx_graph
from effnet.serving.quantize import quantize_openvino

__all__ = [
    "OV_PRECISION",
    "openvino_package",
    "openvino_core",
    "openvino_config",
    "openvino_model",
    "record_precision",
    "ir_precision",
]

OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
"""OpenVINO ``INFERENCE_PRECISION_HINT`` per effnet precision (int8: the layers left in float run in f32)."""

_PRECISION_KEY = ["runtime_options", "INFERENCE_PRECISION_HINT"]
"""Where an IR's rt_info records the inference precision it was exported for."""


def openvino_package() -> Any:
    """The ``openvino`` module; a one-line ``ServingUnavailable`` without it."""
    try:
        import openvino as ov  # lazy: openvino is an optional engine, imported only when one is made
    except ImportError:
        raise ServingUnavailable("runtime openvino needs the openvino package: pip install openvino") from None
    return ov


@functools.cache
def openvino_core() -> Any:
    """The process's one ``openvino.Core``: every effnet engine, export check and probe compiles on it.

    One Core, never destroyed, is a correctness requirement, not a speed-up: each Core's CPU plugin gives the thread
    that compiles a signal stack of its own (``sigaltstack``) and puts the previous one back when the Core dies. Cores
    that die in any order but the reverse of their creation leave the thread on a freed stack, and the next signal
    it handles (SIGCHLD from a DataLoader worker or a subprocess, once torch has set its handler) kills the process
    with SIGSEGV. ``ServingUnavailable`` without the openvino package.
    """
    return openvino_package().Core()


def openvino_config(precision: str, threads: int | None = None) -> dict[str, Any]:
    """OpenVINO CPU compile options: explicit inference precision, one stream, ``threads`` threads (torch's)."""
    return {
        "INFERENCE_PRECISION_HINT": OV_PRECISION[precision],
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_NUM_THREADS": threads or max(1, torch.get_num_threads()),
    }


def openvino_model(
    folded: nn.Module, example: torch.Tensor, precision: str, samples: torch.Tensor | None = None
) -> tuple[Any, bool]:
    """``folded`` as an ``openvino.Model`` (dynamic batch) at ``example``'s (C, H, W), NNCF-quantized on ``samples``
    for int8, and whether it returns several outputs."""
    ov = openvino_package()
    data, many = onnx_graph(folded.cpu().float().to(memory_format=torch.contiguous_format), example)
    model = ov.convert_model(io.BytesIO(data))
    if precision == "int8":
        model = quantize_openvino(model, samples)
    return model, many


def record_precision(model: Any, precision: str) -> None:
    """Record in ``model``'s rt_info the inference precision an engine reading the saved IR should use."""
    model.set_rt_info(OV_PRECISION[precision], _PRECISION_KEY)


def ir_precision(model: Any) -> str:
    """``bf16`` or ``fp32``: the inference precision an ``openvino.Model`` records (effnet export's rt_info hint)."""
    hinted = model.has_rt_info(_PRECISION_KEY) and model.get_rt_info(_PRECISION_KEY).astype(str) == "bf16"
    return "bf16" if hinted else "fp32"
