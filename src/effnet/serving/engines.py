"""The engines that serve a model, behind one small protocol (:class:`Engine`): ``backend``, ``precision``,
``fallback_reason`` and a call from a batch to the model's eval-mode outputs, without autograd.

Here: the PyTorch engines (``eager`` runs the module as is; ``fused`` runs it BatchNorm-folded in channels_last;
``compile`` adds ``torch.compile`` with Inductor freezing, falling back to fused when compilation is unavailable or
fails, now or at the first failing call) and :class:`BatchSizeEngine`, which routes each batch to the engine chosen
for its size. The ONNX Runtime and OpenVINO engines are in :mod:`effnet.serving.cpu_engines`. Engines are immutable:
their settings are fixed when they are made, and what they keep afterwards (compiled shapes, sessions, compile's
fallback) is their own private state. Which engine serves a request is decided in one place,
:func:`effnet.serving.select.select_engine`.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from effnet.models.fold import fold_batchnorm

__all__ = [
    "Run",
    "Engine",
    "EngineBase",
    "EagerEngine",
    "FusedEngine",
    "CompileEngine",
    "BatchSizeEngine",
]

_log = logging.getLogger(__name__)

Run = Callable[[torch.Tensor], Any]
"""A batch (N, C, H, W) -> the model's output(s)."""


class Engine(Protocol):
    """What serves a model: a batch in, the model's eval-mode outputs out (float32), without autograd."""

    @property
    def backend(self) -> str:
        """What actually runs: ``eager``, ``fused``, ``compile``, ``onnxruntime``, ``openvino`` (or a file's path)."""
        ...

    @property
    def precision(self) -> str:
        """``fp32``, ``bf16`` or ``int8``."""
        ...

    @property
    def fallback_reason(self) -> str | None:
        """Why the engine runs something other than what was asked (compile's fallback to fused), else None."""
        ...

    def __call__(self, x: torch.Tensor) -> Any:
        """The model's outputs for the batch ``x``."""
        ...


class EngineBase:
    """Common part of effnet's engines: a fixed precision, a backend named by the class (``_BACKEND``), no
    fallback."""

    __slots__ = ("_precision",)
    _BACKEND = ""

    def __init__(self, precision: str) -> None:
        self._precision = precision

    @property
    def backend(self) -> str:
        """What actually runs."""
        return self._BACKEND

    @property
    def precision(self) -> str:
        """The precision it computes at."""
        return self._precision

    @property
    def fallback_reason(self) -> str | None:
        """None: only :class:`CompileEngine` falls back."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self.backend!r}, precision={self.precision!r})"


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _contiguous(out: Any) -> Any:
    """Outputs in the default (NCHW-contiguous) layout, whatever layout the fast path produced."""
    if isinstance(out, torch.Tensor):
        return out.contiguous()
    if isinstance(out, (list, tuple)):
        return type(out)(_contiguous(o) for o in out)
    return out


def _fused_module(model: nn.Module, bf16: bool) -> nn.Module:
    """A BN-folded copy of ``model`` (bf16 if asked), frozen, in channels_last."""
    folded = fold_batchnorm(model)
    if bf16:
        folded = folded.to(torch.bfloat16)
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded.to(memory_format=torch.channels_last)


def _fused_forward(folded: nn.Module, x: torch.Tensor) -> Any:
    with torch.inference_mode():
        return _contiguous(folded(_channels_last(x)))


class _TorchEngine(EngineBase):
    """eager, fused and compile: fp32, or bf16 on a bf16 copy of the module (inputs cast to bf16, outputs back to
    float32)."""

    __slots__ = ()

    def __call__(self, x: torch.Tensor) -> Any:
        if self._precision != "bf16":
            return self._run(x)
        out = self._run(x.to(torch.bfloat16))
        return out.float() if isinstance(out, torch.Tensor) else type(out)(o.float() for o in out)

    def _run(self, x: torch.Tensor) -> Any:
        raise NotImplementedError


class EagerEngine(_TorchEngine):
    """The module as is, in eval mode (fp32: the user's module itself; bf16: a copy)."""

    __slots__ = ("_module",)
    _BACKEND = "eager"

    def __init__(self, model: nn.Module, precision: str = "fp32") -> None:
        super().__init__(precision)
        if precision == "bf16":
            model = copy.deepcopy(model).to(torch.bfloat16)
        self._module = model.eval()

    def _run(self, x: torch.Tensor) -> Any:
        with torch.inference_mode():
            return self._module(x)


class FusedEngine(_TorchEngine):
    """BatchNorm folded into the convolutions, channels_last memory layout, no compilation."""

    __slots__ = ("_folded",)
    _BACKEND = "fused"

    def __init__(self, model: nn.Module, precision: str = "fp32") -> None:
        super().__init__(precision)
        self._folded = _fused_module(model, precision == "bf16")

    def _run(self, x: torch.Tensor) -> Any:
        return _fused_forward(self._folded, x)


def _compile(folded: nn.Module) -> tuple[Run | None, str | None]:
    """``torch.compile`` with Inductor freezing, scoped to this compile via ``options``; or None and why not."""
    compile_fn = getattr(torch, "compile", None)
    if compile_fn is None:
        return None, "torch.compile is not available"
    try:
        return compile_fn(folded, options={"freezing": True}), None
    except Exception as exc:
        return None, f"torch.compile failed: {exc!r}"


class CompileEngine(_TorchEngine):
    """The fused model compiled by ``torch.compile`` (Inductor, freezing). When compilation is unavailable or
    fails, now or at the first call, it runs the fused model: ``backend`` is then ``fused`` and ``fallback_reason``
    says why."""

    __slots__ = ("_folded", "_compiled", "_shapes", "_reason")

    def __init__(self, model: nn.Module, precision: str = "fp32") -> None:
        super().__init__(precision)
        self._folded = _fused_module(model, precision == "bf16")
        self._compiled, self._reason = _compile(self._folded)
        self._shapes: set[tuple[int, ...]] = set()
        if self._reason:
            _log.warning("effnet: %s; using the uncompiled fused model", self._reason)

    @property
    def backend(self) -> str:
        """``compile``, or ``fused`` once it fell back."""
        return "fused" if self._reason else "compile"

    @property
    def fallback_reason(self) -> str | None:
        """Why it fell back to the fused model, else None."""
        return self._reason

    def _run(self, x: torch.Tensor) -> Any:
        compiled = self._compiled
        if compiled is not None and self._reason is None:
            try:
                # Freezing applies only without autograd; no_grad (not inference_mode) is what Inductor expects.
                with torch.no_grad():
                    return self._run_compiled(compiled, x)
            except Exception as exc:
                self._reason = f"torch.compile failed: {exc!r}"[:500]
                warnings.warn(f"effnet: {self._reason}; using the uncompiled fused model", stacklevel=2)
        return _fused_forward(self._folded, x)

    def _run_compiled(self, compiled: Run, x: torch.Tensor) -> Any:
        # A batch smaller than an already-compiled one (a data loader's last batch) is zero-padded up to
        # it and the outputs sliced, instead of paying a full recompilation; eval-mode samples are independent.
        n, rest = x.shape[0], tuple(x.shape[1:])
        sizes = [b for b, *r in self._shapes if tuple(r) == rest and n < b <= 4 * n]
        if x.dim() == 4 and sizes and (n, *rest) not in self._shapes:
            pad = x.new_zeros((min(sizes) - n, *rest))
            out = compiled(_channels_last(torch.cat([x, pad])))
            return _contiguous(out[:n] if isinstance(out, torch.Tensor) else type(out)(o[:n] for o in out))
        out = compiled(_channels_last(x))
        self._shapes.add(tuple(x.shape))
        return _contiguous(out)


class BatchSizeEngine(EngineBase):
    """The engine chosen per batch size: ``choose(batch)`` names a backend, ``build(backend)`` makes its engine at
    its first batch, at ``precision``. ``backend`` is the one chosen for the last batch seen (before any, for
    ``batch``)."""

    __slots__ = ("_choose", "_build", "_engines", "_backend")

    def __init__(
        self, choose: Callable[[int], str], build: Callable[[str], Engine], precision: str, batch: int = 1
    ) -> None:
        super().__init__(precision)
        self._choose, self._build = choose, build
        self._engines: dict[str, Engine] = {}
        self._backend = choose(batch)

    @property
    def backend(self) -> str:
        """The backend that served the last batch."""
        return self._backend

    @property
    def fallback_reason(self) -> str | None:
        """The last engine's fallback reason (None for the CPU engines)."""
        engine = self._engines.get(self._backend)
        return engine.fallback_reason if engine is not None else None

    def __call__(self, x: torch.Tensor) -> Any:
        name = self._choose(x.shape[0])
        if name not in self._engines:
            self._engines[name] = self._build(name)
        self._backend = name
        return self._engines[name](x)
