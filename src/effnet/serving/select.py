""":func:`select_engine`: the one place that decides which engine serves a model, for where it lives, the
precision and the batch size, and builds it.

``runtime="default"`` follows :func:`effnet.config.serving.default_backend`: on CPU at fp32 the engine is chosen per
batch size among the CPU engines installed (:class:`~effnet.serving.engines.BatchSizeEngine`), as this machine's
profile measured them (:func:`effnet.latency.profile.fastest_engines`, read once here) or else by a fixed crossover;
OpenVINO serves bf16 and int8, elsewhere ``compile``. Any other runtime names its engine.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from effnet.config.serving import default_backend
from effnet.errors import InvalidValue
from effnet.latency.profile import fastest_engines
from effnet.serving.cpu_engines import OnnxRuntimeEngine, OpenVinoEngine
from effnet.serving.engines import BatchSizeEngine, CompileEngine, EagerEngine, Engine, FusedEngine

__all__ = ["select_engine", "model_device", "installed_engines"]

_TORCH_ENGINES = {"eager": EagerEngine, "fused": FusedEngine, "compile": CompileEngine}
_CPU_ENGINES = {"onnxruntime": OnnxRuntimeEngine, "openvino": OpenVinoEngine}


def installed_engines() -> dict[str, bool]:
    """Whether the ``openvino`` and ``onnxruntime`` packages are importable (keyword arguments of
    :func:`~effnet.config.serving.default_backend`)."""
    return {name: importlib.util.find_spec(name) is not None for name in ("openvino", "onnxruntime")}


def model_device(model: nn.Module) -> str:
    """The device type (``cpu``, ``cuda``, ...) of ``model``'s first parameter; ``cpu`` for a module without any."""
    param = next(iter(model.parameters()), None)
    return "cpu" if param is None else param.device.type


def select_engine(
    model: nn.Module,
    device: str,
    runtime: str,
    precision: str,
    example: torch.Tensor | None = None,
    samples: torch.Tensor | None = None,
) -> Engine:
    """The engine serving ``model`` (on ``device``) by ``runtime`` at ``precision``, both already validated.

    ``samples`` are the preprocessed calibration images of int8. ``example`` is a representative batch: the engine
    is prepared for it now (compiled, exported) instead of at its first call.
    """
    installed = installed_engines()
    batch = example.shape[0] if example is not None else 1
    fastest = fastest_engines("fp32", torch.get_num_threads()) if runtime == "default" and device == "cpu" else {}
    backend = (
        default_backend(device, precision, batch, **installed, fastest=fastest) if runtime == "default" else runtime
    )
    engine: Engine
    if runtime == "default" and device == "cpu" and precision == "fp32" and backend != "compile":
        engine = BatchSizeEngine(
            lambda n: default_backend("cpu", "fp32", n, **installed, fastest=fastest),
            lambda name: _CPU_ENGINES[name](model, "fp32"),
            "fp32",
            batch,
        )
    elif backend in _CPU_ENGINES:
        if device != "cpu":
            raise InvalidValue(f"runtime {backend} runs on the CPU; the model is on {device}")
        return _CPU_ENGINES[backend](model, precision, example, samples)
    else:
        engine = _TORCH_ENGINES[backend](model, precision)
    if example is not None:
        engine(example)
    return engine
