"""The CPU engines: the BN-folded model exported to ONNX by effnet's one writer, then served by ONNX Runtime or
compiled by OpenVINO, at fp32, native bf16 or calibrated int8.

An engine is made once per input shape (C, H, W), since spatial sizes are baked into the graph, and OpenVINO compiles
once per batch size (static shapes). Threads follow ``torch.get_num_threads()``. Both behave as
:class:`~effnet.serving.engines.Engine` says; :mod:`effnet.serving.exported` runs exported files with the same runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from effnet.errors import InvalidValue
from effnet.models.fold import fold_batchnorm
from effnet.serving.engines import EngineBase, Run
from effnet.serving.onnx_writer import onnx_graph
from effnet.serving.openvino import openvino_config, openvino_core, openvino_model, openvino_package
from effnet.serving.ort import ort_session
from effnet.serving.quantize import quantize_onnx

__all__ = ["OnnxRuntimeEngine", "OpenVinoEngine", "ort_run", "openvino_run"]


def _as_input(x: torch.Tensor) -> np.ndarray:
    """``x`` as a float32 C-contiguous array, without a copy when it already is one (the common case)."""
    if x.dtype is torch.float32 and x.device.type == "cpu" and not x.requires_grad and x.is_contiguous():
        return x.numpy()
    return x.detach().to("cpu", torch.float32).contiguous().numpy()


def ort_run(session: Any, many: bool) -> Run:
    """Run an ONNX Runtime session: CPU tensors out, a list of them when the model has ``many`` outputs."""
    names = [o.name for o in session.get_outputs()]
    input_name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> Any:
        results = [torch.from_numpy(r) for r in session.run(names, {input_name: _as_input(x)})]
        return results if many else results[0]

    return run


def openvino_run(model: Any, precision: str, many: bool) -> Run:
    """Run an ``openvino.Model`` with a dynamic batch axis: compiled once per batch size (static shape), on the
    process's one Core."""
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


class _PerShape(EngineBase):
    """One engine per input (C, H, W), built at first use from the BN-folded fp32 model; calibrated int8 refuses a
    new shape. ``samples``' (int8) or ``example``'s shape is built now."""

    __slots__ = ("_folded", "_samples", "_runs")

    def __init__(
        self,
        model: nn.Module,
        precision: str = "fp32",
        example: torch.Tensor | None = None,
        samples: torch.Tensor | None = None,
    ) -> None:
        super().__init__(precision)
        self._folded = fold_batchnorm(model).cpu().float().to(memory_format=torch.contiguous_format)
        self._samples = samples
        self._runs: dict[tuple[int, ...], Run] = {}
        first = samples if samples is not None else example
        if first is not None:
            self._for_shape(first[:1])

    def __call__(self, x: torch.Tensor) -> Any:
        return self._for_shape(x)(x)

    def _for_shape(self, x: torch.Tensor) -> Run:
        key = tuple(x.shape[1:])
        run = self._runs.get(key)
        if run is None:
            if self._precision == "int8" and self._runs:
                raise InvalidValue(f"this int8 model was calibrated for inputs {next(iter(self._runs))}; got {key}")
            run = self._runs[key] = self._build(x[:1].detach().float().cpu().contiguous())
        return run

    def _build(self, example: torch.Tensor) -> Run:
        raise NotImplementedError


class OnnxRuntimeEngine(_PerShape):
    """The folded model served by ONNX Runtime at fp32, or int8 quantized by ONNX Runtime on ``samples``."""

    __slots__ = ()
    _BACKEND = "onnxruntime"

    def _build(self, example: torch.Tensor) -> Run:
        data, many = onnx_graph(self._folded, example)
        if self._precision == "int8":
            data = quantize_onnx(data, self._samples)
        return ort_run(ort_session(data), many)


class OpenVinoEngine(_PerShape):
    """The folded model compiled by OpenVINO's CPU plugin at ``precision`` (int8: NNCF-quantized on ``samples``)."""

    __slots__ = ()
    _BACKEND = "openvino"

    def __init__(
        self,
        model: nn.Module,
        precision: str = "fp32",
        example: torch.Tensor | None = None,
        samples: torch.Tensor | None = None,
    ) -> None:
        openvino_package()  # without the package: a one-line ServingUnavailable before any work
        super().__init__(model, precision, example, samples)

    def _build(self, example: torch.Tensor) -> Run:
        model, many = openvino_model(self._folded, example, self._precision, self._samples)
        return openvino_run(model, self._precision, many)
