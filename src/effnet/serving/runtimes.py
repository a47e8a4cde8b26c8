"""Inference runtimes: the callable that ``effnet predict`` / ``effnet eval`` run a model through.

``default`` is the fast path users get, chosen by where the model lives: on CPU, ``onnxruntime`` (the
fastest CPU engine measured in ``benchmarks/RESULTS.md``: 4.0-4.3x torchvision eager at batch 32, 0.39-0.42x
its batch-1 latency, with under a second of start-up); elsewhere, ``compile``. ``compile`` is BatchNorm
folded into the convolutions, channels_last memory layout and ``torch.compile`` with Inductor freezing
(weights become constants, so the folded convs are pre-packed for oneDNN), falling back to the folded
eager model when compilation is unavailable or fails. ``onnxruntime`` exports the folded model to ONNX
in memory and serves it with ONNX Runtime's CPU engine. ``fused`` is BN folding + channels_last without
compilation (instant start-up); ``eager`` is the module as is.
All runtimes return what the model returns, equal to eager within 1e-4.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from effnet.models.fold import fold_batchnorm
from effnet.serving.export import write_onnx

__all__ = ["RUNTIMES", "RUNTIME_HELP", "InferenceRunner", "optimize_for_inference"]

RUNTIMES = ("default", "compile", "eager", "fused", "onnxruntime")
"""Runtime names accepted by :func:`optimize_for_inference`."""

RUNTIME_HELP = (
    "default: onnxruntime for a model on CPU (when onnxruntime is installed), else compile; "
    "compile: BN folded + channels_last + torch.compile with freezing (falls back to 'fused' if compile fails); "
    "eager: the plain module; fused: BN folded + channels_last, no compile (fast start-up); "
    "onnxruntime: ONNX export run by ONNX Runtime's CPU engine"
)
"""One-line description of each runtime, for ``--runtime`` help texts."""

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

    ``backend`` equals the requested runtime, except ``"fused"`` after ``default`` fell back
    (``fallback_reason`` then says why).
    """

    def __init__(self, runtime: str, backend: str, fn: Callable[[torch.Tensor], Any]) -> None:
        self.runtime = runtime
        self.backend = backend
        self.fallback_reason: str | None = None
        self._fn = fn

    def __call__(self, x: torch.Tensor) -> Any:
        return self._fn(x)

    def __repr__(self) -> str:
        return f"InferenceRunner(runtime={self.runtime!r}, backend={self.backend!r})"


def _eager(model: nn.Module) -> Callable[[torch.Tensor], Any]:
    def run(x: torch.Tensor) -> Any:
        with torch.inference_mode():
            return model(x)

    return run


def _fused_module(model: nn.Module) -> nn.Module:
    folded = fold_batchnorm(model)
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
    except Exception as exc:  # noqa: BLE001 - any compile set-up failure means: use the eager fast path
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
            except Exception as exc:  # noqa: BLE001 - compile errors surface at the first call
                state["failed"] = True
                runner.backend, runner.fallback_reason = "fused", f"torch.compile failed: {exc!r}"[:500]
                warnings.warn(f"effnet: {runner.fallback_reason}; using the uncompiled fused model", stacklevel=2)
        return fallback(x)

    return run


def _onnx_session(folded: nn.Module, example: torch.Tensor) -> tuple[Any, list[str], bool]:
    """Export ``folded`` (batch axis dynamic) to ONNX in memory and open a tuned ONNX Runtime CPU session."""
    import onnxruntime as ort

    with torch.no_grad():
        probe = folded(example)
    many = not isinstance(probe, torch.Tensor)
    n_out = len(probe) if many else 1
    outputs = [f"output{i}" for i in range(n_out)]
    buffer = io.BytesIO()
    write_onnx(folded, example, buffer, outputs)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    return session, outputs, many


def _onnxruntime(folded: nn.Module, example: torch.Tensor | None) -> Callable[[torch.Tensor], Any]:
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ValueError("runtime 'onnxruntime' needs the onnxruntime package: pip install onnxruntime") from exc
    folded = folded.cpu().float().to(memory_format=torch.contiguous_format)
    sessions: dict[tuple[int, ...], tuple[Any, list[str], bool]] = {}

    def session_for(x: torch.Tensor) -> tuple[Any, list[str], bool]:
        key = tuple(x.shape[1:])  # spatial sizes are baked into the graph (TF "same" pads); batch is dynamic
        if key not in sessions:
            sessions[key] = _onnx_session(folded, x[:1].detach().float().cpu().contiguous())
        return sessions[key]

    if example is not None:
        session_for(example)

    def run(x: torch.Tensor) -> Any:
        session, outputs, many = session_for(x)
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        results = [torch.from_numpy(r) for r in session.run(outputs, {"input": array})]
        return results if many else results[0]

    return run


def _default_backend(model: nn.Module) -> str:
    """What ``runtime="default"`` runs: ONNX Runtime for a CPU model when it is installed, else ``compile``."""
    import importlib.util

    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    return "onnxruntime" if on_cpu and importlib.util.find_spec("onnxruntime") is not None else "compile"


def optimize_for_inference(
    model: nn.Module, example: torch.Tensor | None = None, runtime: str = "default"
) -> InferenceRunner:
    """A callable computing ``model``'s eval-mode outputs without autograd, by the chosen runtime.

    ``runtime`` is one of :data:`RUNTIMES` (see :data:`RUNTIME_HELP`). ``example`` (a representative
    input batch) makes compilation/export happen now instead of at the first call. ``model`` is put
    in eval mode (``eager``) or copied (every other runtime: the user's module is not modified).
    ``onnxruntime`` runs on CPU and returns CPU tensors.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    backend = _default_backend(model) if runtime == "default" else runtime
    if backend == "eager":
        model.eval()
        runner = InferenceRunner(runtime, "eager", _eager(model))
    elif backend == "onnxruntime":
        runner = InferenceRunner(runtime, "onnxruntime", _onnxruntime(fold_batchnorm(model), example))
        return runner
    elif backend == "fused":
        runner = InferenceRunner(runtime, "fused", _fused(_fused_module(model)))
    else:
        runner = InferenceRunner(runtime, "compile", lambda x: x)
        runner._fn = _compiled(_fused_module(model), runner)
        if runner.fallback_reason:
            _log.warning("effnet: %s; using the uncompiled fused model", runner.fallback_reason)
    if example is not None:
        runner(example)
    return runner
