"""Inference runtimes: the callable that ``effnet predict`` / ``effnet eval`` / ``effnet scale`` run a model through.

Every runtime takes a ``precision`` (``fp32`` | ``bf16`` | ``int8``; choices and defaults in
:mod:`effnet.config.serving`). ``default`` is the fastest exact engine for the request, chosen by where the model
lives, the precision and the batch size (:func:`effnet.serving.select.select_engine`): on CPU at fp32, ONNX Runtime
for small batches and OpenVINO for large ones (the crossover measured in ``benchmarks/RESULTS.md``), OpenVINO for
bf16 and int8; elsewhere ``compile``. ``compile`` is BatchNorm folded into the convolutions, channels_last memory
layout and ``torch.compile`` with Inductor freezing, falling back to the folded eager model when compilation is
unavailable or fails. ``onnxruntime`` / ``openvino`` export the folded model to ONNX in memory and serve it with
that CPU engine (:mod:`effnet.serving.engines`). ``fused`` is BN folding + channels_last without compilation;
``eager`` is the module as is. At fp32 every runtime returns what the model returns, equal to eager within 1e-4.
bf16 runs only where the hardware has it natively (:mod:`effnet.serving.hardware`); int8 is calibrated once, when
the runner is made (:mod:`effnet.serving.quantize`).

The runtime and precision are validated here, once, by :mod:`effnet.config.serving`'s checks; nothing below
validates them again.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from effnet.config.serving import DEFAULT_CALIBRATION_SIZE, check_precision, check_runtime
from effnet.errors import InvalidValue, check_type
from effnet.models.pretrained import default_preprocessing
from effnet.serving.engines import Engine
from effnet.serving.hardware import require_native_bf16
from effnet.serving.quantize import Calibration, calibration_batch
from effnet.serving.select import model_device, select_engine

__all__ = ["InferenceRunner", "check_input", "optimize_for_inference"]


class InferenceRunner:
    """Callable returned by :func:`optimize_for_inference`: the requested ``runtime`` served by an engine.

    ``backend`` names what actually runs and is never ``"default"``: for ``runtime="default"`` it is the engine
    chosen (``onnxruntime``, ``openvino`` or ``compile``; at fp32 on CPU the one chosen for the last batch size
    seen). It is ``"fused"`` after ``compile`` fell back (``fallback_reason`` then says why). ``backend``,
    ``precision`` and ``fallback_reason`` are the engine's.
    """

    __slots__ = ("_runtime", "_engine", "_in_chans")

    def __init__(self, runtime: str, engine: Engine, in_chans: int | None = None) -> None:
        self._runtime, self._engine, self._in_chans = runtime, engine, in_chans

    @property
    def runtime(self) -> str:
        """The runtime asked for (``default``, one of the engines, or ``exported``)."""
        return self._runtime

    @property
    def backend(self) -> str:
        """What actually runs."""
        return self._engine.backend

    @property
    def precision(self) -> str:
        """``fp32``, ``bf16`` or ``int8``."""
        return self._engine.precision

    @property
    def fallback_reason(self) -> str | None:
        """Why the engine runs something other than asked (``compile`` fell back), else None."""
        return self._engine.fallback_reason

    def __call__(self, x: torch.Tensor) -> Any:
        check_input("the input", x, self._in_chans)
        return self._engine(x)

    def __repr__(self) -> str:
        return f"InferenceRunner(runtime={self.runtime!r}, backend={self.backend!r}, precision={self.precision!r})"


def check_input(name: str, x: Any, in_chans: int | None) -> None:
    """A one-line :class:`~effnet.errors.WrongType` / :class:`~effnet.errors.InvalidValue` unless ``x`` is an
    (N, C, H, W) tensor with ``in_chans`` channels (any when None)."""
    check_type(name, x, torch.Tensor, "an (N, C, H, W) image tensor")
    if x.dim() != 4:
        raise InvalidValue(f"{name} must be an (N, C, H, W) image batch, got shape {tuple(x.shape)}")
    if in_chans is not None and x.shape[1] != in_chans:
        raise InvalidValue(
            f"{name} has {x.shape[1]} channel(s), the model takes {in_chans}: shape (N, {in_chans}, H, W) expected, "
            f"got {tuple(x.shape)}"
        )


def _samples(model: nn.Module, calibration: Calibration | None, size: int) -> torch.Tensor:
    """int8's calibration batch: ``calibration`` preprocessed as ``model``'s inputs."""
    if calibration is None:
        raise InvalidValue("precision int8 needs calibration images: --calibration DIR (or calibration=<tensor>)")
    preprocessing = getattr(model, "preprocessing", None)
    if preprocessing is None and not isinstance(calibration, torch.Tensor):
        spec = model.spec  # an effnet model: preprocess at its own resolution
        preprocessing = default_preprocessing("effnet", spec.name, spec.resolution, spec.num_classes)
    return calibration_batch(calibration, preprocessing, size)


def optimize_for_inference(
    model: nn.Module,
    example: torch.Tensor | None = None,
    runtime: str = "default",
    precision: str = "fp32",
    calibration: Calibration | None = None,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
) -> InferenceRunner:
    """A callable computing ``model``'s eval-mode outputs without autograd, by the chosen runtime and precision.

    ``runtime`` is one of :data:`~effnet.config.serving.RUNTIMES`, ``precision`` one of ``fp32``, ``bf16`` (native
    hardware bf16 only; a one-line ``ServingUnavailable`` where absent), ``int8`` (``onnxruntime`` / ``openvino``;
    calibrated now on ``calibration``: a folder whose first ``calibration_size`` images are preprocessed by
    ``model.preprocessing``, or a preprocessed (N, C, H, W) tensor). ``example`` (a representative input batch)
    makes compilation/export happen now instead of at the first call. The user's module is not modified (``eager``
    at fp32 puts it in eval mode). ``onnxruntime`` / ``openvino`` run on CPU and return CPU tensors. An ``example``,
    a calibration tensor or a later input that is not an (N, C, H, W) tensor with the model's input channels is a
    one-line :class:`~effnet.errors.InvalidValue` (or ``WrongType``) naming it, never an engine's shape error.
    """
    check_type("model", model, nn.Module, "a torch nn.Module (e.g. effnet.create_model('efficientnet_b0'))")
    check_runtime(runtime)
    check_precision(precision, runtime)
    spec = getattr(model, "spec", None)
    in_chans = getattr(spec, "in_chans", None)
    if example is not None:
        check_input("example", example, in_chans)
        in_chans = in_chans or example.shape[1]
    if calibration is not None and not isinstance(calibration, torch.Tensor):
        check_type("calibration", calibration, (str, os.PathLike), "a folder of images or an (N, C, H, W) tensor")
    elif calibration is not None:
        check_input("calibration", calibration, in_chans)
    device = model_device(model)
    if precision == "bf16":
        require_native_bf16(device)
    samples = _samples(model, calibration, calibration_size) if precision == "int8" else None
    return InferenceRunner(runtime, select_engine(model, device, runtime, precision, example, samples), in_chans)
