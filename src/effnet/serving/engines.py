"""The CPU engines behind ``onnxruntime`` and ``openvino``: the BN-folded model exported once to ONNX (effnet's
one exporter), then served by ONNX Runtime or compiled by OpenVINO, at fp32, native bf16 or calibrated int8.

An engine is made once per input shape (C, H, W) — spatial sizes are baked into the graph — and, for OpenVINO,
compiled per batch size (static shapes run faster than a dynamic batch). Threads follow ``torch.get_num_threads()``.
fp32 sets OpenVINO's inference precision to f32 explicitly: its CPU plugin would otherwise run bf16 on bf16 CPUs.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from effnet.config.serving import ServingUnavailable
from effnet.serving.export import write_onnx

__all__ = [
    "OV_PRECISION",
    "openvino_core",
    "ort_session",
    "openvino_config",
    "onnx_engine",
    "openvino_model",
    "openvino_engine",
    "ir_precision",
    "load_exported",
]

OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
"""OpenVINO ``INFERENCE_PRECISION_HINT`` per effnet precision (int8: the layers left in float run in f32)."""

Run = Callable[[torch.Tensor], Any]


def _onnx_model(folded: nn.Module, example: torch.Tensor) -> tuple[bytes, list[str], bool]:
    """ONNX bytes of ``folded`` at ``example``'s (C, H, W), its output names and whether it returns several."""
    with torch.no_grad():
        probe = folded(example)
    many = not isinstance(probe, torch.Tensor)
    outputs = [f"output{i}" for i in range(len(probe) if many else 1)]
    buffer = io.BytesIO()
    write_onnx(folded, example, buffer, outputs)
    return buffer.getvalue(), outputs, many


def ort_session(model: bytes | str, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session: all graph optimizations, sequential, ``threads`` intra-op threads (torch's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or max(1, torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def openvino_config(precision: str, threads: int | None = None) -> dict[str, Any]:
    """OpenVINO CPU compile options: explicit inference precision, one stream, ``threads`` threads."""
    return {
        "INFERENCE_PRECISION_HINT": OV_PRECISION[precision],
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_NUM_THREADS": threads or max(1, torch.get_num_threads()),
    }


def _as_input(x: torch.Tensor) -> np.ndarray:
    """``x`` as a float32 C-contiguous array, without a copy when it already is one (the common case)."""
    if x.dtype is torch.float32 and x.device.type == "cpu" and not x.requires_grad and x.is_contiguous():
        return x.numpy()
    return x.detach().to("cpu", torch.float32).contiguous().numpy()


def _ort_run(session: Any, many: bool) -> Run:
    names = [o.name for o in session.get_outputs()]
    input_name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> Any:
        results = [torch.from_numpy(r) for r in session.run(names, {input_name: _as_input(x)})]
        return results if many else results[0]

    return run


def _ov_run(model: Any, precision: str, many: bool) -> Run:
    """Run an ``openvino.Model`` with a dynamic batch axis: compiled once per batch size (static shape)."""
    core = openvino_core()
    requests: dict[int, Any] = {}

    def run(x: torch.Tensor) -> Any:
        n = x.shape[0]
        if n not in requests:
            static = model.clone()
            static.reshape([n, *x.shape[1:]])
            requests[n] = core.compile_model(static, "CPU", openvino_config(precision)).create_infer_request()
        request = requests[n]
        request.infer({0: _as_input(x)})
        results = [torch.from_numpy(request.get_output_tensor(i).data.copy()) for i in range(len(model.outputs))]
        return results if many else results[0]

    return run


def _per_shape(build: Callable[[torch.Tensor], Run], example: torch.Tensor | None, fixed: bool) -> Run:
    """One engine per input (C, H, W), built at first use; ``fixed`` (calibrated int8) refuses a new shape."""
    engines: dict[tuple[int, ...], Run] = {}

    def run(x: torch.Tensor) -> Any:
        key = tuple(x.shape[1:])
        if key not in engines:
            if fixed and engines:
                raise ValueError(f"this int8 model was calibrated for inputs {next(iter(engines))}; got {key}")
            engines[key] = build(x[:1].detach().float().cpu().contiguous())
        return engines[key](x)

    if example is not None:
        run(example[:1])
    return run


def onnx_engine(
    folded: nn.Module, example: torch.Tensor | None, precision: str, samples: torch.Tensor | None = None
) -> Run:
    """``folded`` served by ONNX Runtime at fp32, or int8 quantized by ONNX Runtime on ``samples``."""
    folded = folded.cpu().float().to(memory_format=torch.contiguous_format)

    def build(x: torch.Tensor) -> Run:
        data, _, many = _onnx_model(folded, x)
        if precision == "int8":
            from effnet.serving.quantize import quantize_onnx

            data = quantize_onnx(data, samples)
        return _ort_run(ort_session(data), many)

    return _per_shape(build, samples[:1] if samples is not None else example, precision == "int8")


def openvino_model(
    folded: nn.Module, example: torch.Tensor, precision: str, samples: torch.Tensor | None = None
) -> tuple[Any, bool]:
    """``folded`` as an ``openvino.Model`` (dynamic batch), NNCF-quantized on ``samples`` for int8."""
    ov = _openvino()
    data, _, many = _onnx_model(folded.cpu().float().to(memory_format=torch.contiguous_format), example)
    model = ov.convert_model(io.BytesIO(data))
    if precision == "int8":
        from effnet.serving.quantize import quantize_openvino

        model = quantize_openvino(model, samples)
    return model, many


def openvino_engine(
    folded: nn.Module, example: torch.Tensor | None, precision: str, samples: torch.Tensor | None = None
) -> Run:
    """``folded`` compiled by OpenVINO's CPU plugin at ``precision`` (int8: NNCF on ``samples``)."""
    _openvino()

    def build(x: torch.Tensor) -> Run:
        model, many = openvino_model(folded, x, precision, samples)
        return _ov_run(model, precision, many)

    return _per_shape(build, samples[:1] if samples is not None else example, precision == "int8")


def _openvino() -> Any:
    try:
        import openvino as ov
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
    return _openvino().Core()


def ir_precision(model: Any) -> str:
    """``bf16`` or ``fp32``: the inference precision an ``openvino.Model`` records (effnet export's rt_info hint)."""
    key = ["runtime_options", "INFERENCE_PRECISION_HINT"]
    return "bf16" if model.has_rt_info(key) and model.get_rt_info(key).astype(str) == "bf16" else "fp32"


def _last_line(exc: BaseException) -> str:
    """The last non-empty line of a foreign library's message (OpenVINO's start with C++ source locations)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


_ONNX_INT8_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"})


def load_exported(path: str | Path) -> tuple[Run, str]:
    """A runner for a file written by ``effnet export`` and the precision it runs at: ``.onnx`` by ONNX Runtime,
    ``.xml`` (IR) by OpenVINO at the precision the IR records (``runtime_options`` in its rt_info). The precision is
    read from the file: ``int8`` where its graph is quantized (QDQ / FakeQuantize nodes), else bf16 or fp32."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--exported: no such file: {file}")
    if file.suffix == ".onnx":
        import onnx

        try:
            run = _ort_run(ort_session(str(file)), False)
            ops = {node.op_type for node in onnx.load(str(file), load_external_data=False).graph.node}
        except Exception as exc:  # ONNX Runtime's and onnx's own errors (protobuf, unsupported op, ...)
            raise ValueError(f"--exported {file}: not a readable ONNX model ({_last_line(exc)})") from None
        return run, "int8" if ops & _ONNX_INT8_OPS else "fp32"
    if file.suffix == ".xml":
        try:
            model = openvino_core().read_model(str(file))
        except RuntimeError as exc:
            raise ValueError(f"--exported {file}: not a readable OpenVINO IR ({_last_line(exc)})") from None
        hint = ir_precision(model)
        quantized = any(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops())
        return _ov_run(model, hint, False), "int8" if quantized else hint
    raise ValueError(f"--exported must be an .onnx or OpenVINO .xml file from effnet export; got {file}")
