"""Inference runtimes: the callable that ``effnet predict`` / ``effnet eval`` / ``effnet scale`` run a model through.

Every runtime takes a ``precision`` (``fp32`` | ``bf16`` | ``int8``; choices and defaults in
:mod:`effnet.config.serving`). ``default`` is the fastest exact engine for the request, chosen by where the model
lives, the precision and the batch size (:func:`effnet.config.serving.default_backend`): on CPU at fp32, ONNX Runtime
for small batches and OpenVINO for large ones (the crossover measured in ``benchmarks/RESULTS.md``), OpenVINO for
bf16 and int8; elsewhere ``compile``. ``compile`` is BatchNorm folded into the convolutions, channels_last memory
layout and ``torch.compile`` with Inductor freezing, falling back to the folded eager model when compilation is
unavailable or fails. ``onnxruntime`` / ``openvino`` export the folded model to ONNX in memory and serve it with
that CPU engine (:mod:`effnet.serving.engines`). ``fused`` is BN folding + channels_last without compilation;
``eager`` is the module as is. At fp32 every runtime returns what the model returns, equal to eager within 1e-4.
bf16 runs only where the hardware has it natively (:mod:`effnet.serving.hardware`); int8 is calibrated once, when
the runner is made (:mod:`effnet.serving.quantize`).
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from effnet.config.serving import (
    DEFAULT_CALIBRATION_SIZE,
    RUNTIMES,
    check_precision,
    check_runtime,
    default_backend,
)
from effnet.models.fold import fold_batchnorm

__all__ = ["RUNTIMES", "InferenceRunner", "optimize_for_inference"]

_log = logging.getLogger(__name__)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _contiguous(out: Any) -> Any:
    """Outputs in the default (NCHW-contiguous) layout, whatever layout the fast path produced."""
    if isinstance(out, torch.Tensor):
        return out.contiguous()
    if isinstance(out, (list, tuple)):
        return type(out)(_contiguous(o) for o in out)
    return out


class InferenceRunner:
    """Callable returned by :func:`optimize_for_inference`; ``backend`` names what actually runs.

    ``backend`` is never ``"default"``: for ``runtime="default"`` it is the engine chosen (``onnxruntime``,
    ``openvino`` or ``compile``; at fp32 on CPU the one chosen for the last batch size seen). It is ``"fused"``
    after ``compile`` fell back (``fallback_reason`` then says why).
    """

    def __init__(self, runtime: str, backend: str, fn: Callable[[torch.Tensor], Any], precision: str = "fp32") -> None:
        self.runtime = runtime
        self.backend = backend
        self.precision = precision
        self.fallback_reason: str | None = None
        self._fn = fn

    def __call__(self, x: torch.Tensor) -> Any:
        return self._fn(x)

    def __repr__(self) -> str:
        return f"InferenceRunner(runtime={self.runtime!r}, backend={self.backend!r}, precision={self.precision!r})"


def _eager(model: nn.Module) -> Callable[[torch.Tensor], Any]:
    def run(x: torch.Tensor) -> Any:
        with torch.inference_mode():
            return model(x)

    return run


def _fused_module(model: nn.Module, bf16: bool = False) -> nn.Module:
    folded = fold_batchnorm(model)
    if bf16:
        folded = folded.to(torch.bfloat16)
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded.to(memory_format=torch.channels_last)


def _fused(folded: nn.Module) -> Callable[[torch.Tensor], Any]:
    def run(x: torch.Tensor) -> Any:
        with torch.inference_mode():
            return _contiguous(folded(_channels_last(x)))

    return run


def _compiled(folded: nn.Module, runner: InferenceRunner) -> Callable[[torch.Tensor], Any]:
    """``torch.compile`` with Inductor freezing, scoped to this compile via ``options``; falls back to fused."""
    fallback = _fused(folded)
    compile_fn = getattr(torch, "compile", None)
    if compile_fn is None:
        runner.backend, runner.fallback_reason = "fused", "torch.compile is not available"
        return fallback
    try:
        compiled = compile_fn(folded, options={"freezing": True})
    except Exception as exc:
        runner.backend, runner.fallback_reason = "fused", f"torch.compile failed: {exc!r}"
        return fallback
    state = {"failed": False}
    compiled_shapes: set[tuple[int, ...]] = set()

    def call(x: torch.Tensor) -> Any:
        # A batch smaller than an already-compiled one (a data loader's last batch) is zero-padded up to
        # it and the outputs sliced, instead of paying a full recompilation; eval-mode samples are independent.
        n, rest = x.shape[0], tuple(x.shape[1:])
        sizes = [b for b, *r in compiled_shapes if tuple(r) == rest and n < b <= 4 * n]
        if x.dim() == 4 and sizes and (n, *rest) not in compiled_shapes:
            pad = x.new_zeros((min(sizes) - n, *rest))
            out = compiled(_channels_last(torch.cat([x, pad])))
            return _contiguous(out[:n] if isinstance(out, torch.Tensor) else type(out)(o[:n] for o in out))
        out = compiled(_channels_last(x))
        compiled_shapes.add(tuple(x.shape))
        return _contiguous(out)

    def run(x: torch.Tensor) -> Any:
        if not state["failed"]:
            try:
                # Freezing applies only without autograd; no_grad (not inference_mode) is what Inductor expects.
                with torch.no_grad():
                    return call(x)
            except Exception as exc:
                state["failed"] = True
                runner.backend, runner.fallback_reason = "fused", f"torch.compile failed: {exc!r}"[:500]
                warnings.warn(f"effnet: {runner.fallback_reason}; using the uncompiled fused model", stacklevel=2)
        return fallback(x)

    return run


def _bf16(fn: Callable[[torch.Tensor], Any]) -> Callable[[torch.Tensor], Any]:
    """``fn`` of a bf16 module: inputs cast to bf16, outputs back to float32."""

    def run(x: torch.Tensor) -> Any:
        out = fn(x.to(torch.bfloat16))
        if isinstance(out, torch.Tensor):
            return out.float()
        return type(out)(o.float() for o in out)

    return run


def _torch_runner(model: nn.Module, runtime: str, backend: str, precision: str) -> InferenceRunner:
    """eager / fused / compile at fp32 or (a bf16 copy of the model) bf16."""
    bf16 = precision == "bf16"
    if backend == "eager":
        if bf16:
            model = copy.deepcopy(model).to(torch.bfloat16)
        runner = InferenceRunner(runtime, "eager", _eager(model.eval()), precision)
    elif backend == "fused":
        runner = InferenceRunner(runtime, "fused", _fused(_fused_module(model, bf16)), precision)
    else:
        runner = InferenceRunner(runtime, "compile", lambda x: x, precision)
        runner._fn = _compiled(_fused_module(model, bf16), runner)
        if runner.fallback_reason:
            _log.warning("effnet: %s; using the uncompiled fused model", runner.fallback_reason)
    if bf16:
        runner._fn = _bf16(runner._fn)
    return runner


def _engine(
    backend: str, model: nn.Module, example: torch.Tensor | None, precision: str, samples: torch.Tensor | None
) -> Callable[[torch.Tensor], Any]:
    from effnet.serving.engines import onnx_engine, openvino_engine

    build = onnx_engine if backend == "onnxruntime" else openvino_engine
    return build(fold_batchnorm(model), example, precision, samples)


def _installed() -> dict[str, bool]:
    import importlib.util

    return {name: importlib.util.find_spec(name) is not None for name in ("openvino", "onnxruntime")}


def _cpu_fp32_default(model: nn.Module, example: torch.Tensor | None) -> InferenceRunner:
    """``default`` at fp32 on CPU: per batch size, the faster of ONNX Runtime and OpenVINO (engines built lazily)."""
    installed = _installed()
    engines: dict[str, Callable[[torch.Tensor], Any]] = {}
    runner = InferenceRunner("default", "onnxruntime", lambda x: x)

    def run(x: torch.Tensor) -> Any:
        name = default_backend("cpu", "fp32", x.shape[0], **installed)
        if name not in engines:
            engines[name] = _engine(name, model, None, "fp32", None)
        runner.backend = name
        return engines[name](x)

    runner._fn = run
    if example is not None:
        run(example)
    return runner


def _samples(model: nn.Module, calibration: Any, size: int) -> torch.Tensor:
    from effnet.serving.quantize import calibration_batch

    if calibration is None:
        raise ValueError("precision int8 needs calibration images: --calibration DIR (or calibration=<tensor>)")
    preprocessing = getattr(model, "preprocessing", None)
    if preprocessing is None and not isinstance(calibration, torch.Tensor):
        from effnet.models.pretrained import default_preprocessing

        spec = model.spec  # an effnet model: preprocess at its own resolution
        preprocessing = default_preprocessing("effnet", spec.name, spec.resolution, spec.num_classes)
    return calibration_batch(calibration, preprocessing, size)


def _device(model: nn.Module) -> str:
    param = next(iter(model.parameters()), None)
    return "cpu" if param is None else param.device.type


def optimize_for_inference(
    model: nn.Module,
    example: torch.Tensor | None = None,
    runtime: str = "default",
    precision: str = "fp32",
    calibration: Any = None,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
) -> InferenceRunner:
    """A callable computing ``model``'s eval-mode outputs without autograd, by the chosen runtime and precision.

    ``runtime`` is one of :data:`RUNTIMES`, ``precision`` one of ``fp32``, ``bf16`` (native hardware bf16 only;
    a one-line ``ServingUnavailable`` where absent), ``int8`` (``onnxruntime`` / ``openvino``; calibrated now on
    ``calibration``: a folder whose first ``calibration_size`` images are preprocessed by ``model.preprocessing``,
    or a preprocessed (N, C, H, W) tensor). ``example`` (a representative input batch) makes compilation/export
    happen now instead of at the first call. The user's module is not modified (``eager`` at fp32 puts it in eval
    mode). ``onnxruntime`` / ``openvino`` run on CPU and return CPU tensors.
    """
    check_runtime(runtime)
    check_precision(precision, runtime)
    device = _device(model)
    if precision == "bf16":
        from effnet.serving.hardware import require_native_bf16

        require_native_bf16(device)
    samples = _samples(model, calibration, calibration_size) if precision == "int8" else None
    batch = example.shape[0] if example is not None else 1
    backend = default_backend(device, precision, batch, **_installed()) if runtime == "default" else runtime
    if runtime == "default" and device == "cpu" and precision == "fp32" and backend != "compile":
        return _cpu_fp32_default(model, example)
    if backend in ("onnxruntime", "openvino"):
        if device != "cpu":
            raise ValueError(f"runtime {backend} runs on the CPU; the model is on {device}")
        return InferenceRunner(runtime, backend, _engine(backend, model, example, precision, samples), precision)
    runner = _torch_runner(model, runtime, backend, precision)
    if example is not None:
        runner(example)
    return runner
