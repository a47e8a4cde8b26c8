"""Choices and defaults of serving: runtimes, precisions, export formats and their limits (torch-free).

One check function per rule (``check_*``, :func:`parse_precision`), each a one-line
:class:`~effnet.errors.InvalidValue`: the commands' configs (:mod:`effnet.config.inference`,
:mod:`effnet.config.scale`) call them when built from the flags, and the library's public functions
(:func:`effnet.optimize_for_inference`, :func:`effnet.export_model`) call the same ones at their own boundary, so
the two cannot drift.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from typing import Literal

from effnet.errors import InvalidValue, Unsupported
from effnet.latency.profile import nearest_engine

__all__ = [
    "ServingUnavailable",
    "RUNTIMES",
    "RUNTIME_DESCRIPTIONS",
    "DEFAULT_RUNTIME",
    "Precision",
    "PRECISIONS",
    "DEFAULT_PRECISION",
    "PRECISION_RUNTIMES",
    "EXPORT_FORMATS",
    "EXPORT_PRECISIONS",
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "MAX_OPSET",
    "MIN_INPUT_SIZE",
    "MAX_INPUT_SIZE",
    "DEFAULT_ATOL",
    "DEFAULT_CALIBRATION_SIZE",
    "MAX_CALIBRATION_SIZE",
    "CPU_FP32_CROSSOVER",
    "default_backend",
    "check_runtime",
    "parse_precision",
    "check_precision",
    "check_calibration",
    "check_opset",
    "check_input_size",
    "check_atol",
    "check_calibration_size",
    "check_export_format",
    "check_export_precision",
    "runtime_help",
    "precision_help",
]


class ServingUnavailable(Unsupported, ValueError):
    """A valid serving choice this machine or installation cannot honour (no native bf16, no GPU, no NNCF); an
    :class:`~effnet.errors.Unsupported` that is also a ``ValueError``, as it always was."""


RUNTIME_DESCRIPTIONS: dict[str, str] = {
    "default": "the fastest exact engine for the request: on CPU ONNX Runtime or OpenVINO by batch size (fp32: as "
    "this machine's effnet profile measured, else a fixed crossover), OpenVINO for bf16/int8; on CUDA compile",
    "compile": "BN folded + channels_last + torch.compile with freezing (falls back to fused if compile fails)",
    "eager": "the plain module",
    "fused": "BN folded + channels_last, no compile (instant start-up)",
    "onnxruntime": "ONNX export run by ONNX Runtime's CPU engine (fp32, int8)",
    "openvino": "ONNX export compiled by OpenVINO's CPU plugin (fp32, native bf16, NNCF int8)",
}
"""Runtime name -> one-line description (``--runtime`` help)."""

RUNTIMES: tuple[str, ...] = tuple(RUNTIME_DESCRIPTIONS)
"""Runtime names accepted by :func:`effnet.optimize_for_inference` and ``--runtime``."""
DEFAULT_RUNTIME = "default"

Precision = Literal["fp32", "bf16", "int8"]
"""A numeric precision: fp32 (exact), bf16 (the hardware's native bf16 only), int8 (post-training static)."""
PRECISIONS: tuple[Precision, ...] = typing.get_args(Precision)
"""The :data:`Precision` values, in order."""
DEFAULT_PRECISION: Precision = "fp32"

PRECISION_RUNTIMES: dict[str, tuple[str, ...]] = {
    "fp32": RUNTIMES,
    "bf16": ("default", "compile", "eager", "fused", "openvino"),
    "int8": ("default", "onnxruntime", "openvino"),
}
"""Which runtimes serve each precision (ONNX Runtime's CPU engine has no native bf16 path; int8 needs a quantizer)."""

EXPORT_FORMATS: tuple[str, ...] = ("onnx", "torchscript", "openvino")
EXPORT_PRECISIONS: dict[str, tuple[str, ...]] = {
    "onnx": ("fp32", "int8"),
    "torchscript": ("fp32",),
    "openvino": ("fp32", "bf16", "int8"),
}
"""Precisions each export format can hold (ONNX int8 = ONNX Runtime QDQ; OpenVINO int8 = NNCF; bf16 = IR hint)."""

DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 9, 20
"""ONNX opsets the TorchScript-based exporter writes for these models (torch's own bounds are 7..20; Hardswish/SiLU
and the dynamic batch axis need 9)."""
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 8, 2048
"""Export example side in pixels: 2048² x 3 fp32 is 48 MiB per image, within any machine's memory."""
DEFAULT_ATOL = 1e-4
"""fp32 exports must reproduce PyTorch within this max abs difference."""
DEFAULT_CALIBRATION_SIZE = 100
"""Images int8 calibration uses by default (the first N of ``--calibration DIR`` in sorted order)."""
MAX_CALIBRATION_SIZE = 10_000

CPU_FP32_CROSSOVER: tuple[tuple[int, str], ...] = ((4, "onnxruntime"),)
"""``default`` fp32 on CPU without a profile of this machine (``effnet profile``): the engine for batches up to each
bound; larger batches go to OpenVINO. From the batch 1/8/32 rows of ``benchmarks/RESULTS.md`` ("CPU engines"): ONNX
Runtime leads at batch 1, OpenVINO from batch 8 (on that machine)."""


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidValue(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


def check_runtime(runtime: object) -> str:
    """``runtime`` if it is one of :data:`RUNTIMES`, else a one-line :class:`~effnet.errors.InvalidValue`."""
    return _choice("runtime", runtime, RUNTIMES)


def parse_precision(precision: object) -> Precision:
    """``precision`` as a :data:`Precision` if it is one of :data:`PRECISIONS`, else a one-line
    :class:`~effnet.errors.InvalidValue`."""
    for value in PRECISIONS:
        if precision == value:
            return value
    raise InvalidValue(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")


def check_precision(precision: object, runtime: str = "default") -> Precision:
    """``precision`` (:func:`parse_precision`) if ``runtime`` serves it (:data:`PRECISION_RUNTIMES`), else a
    one-line :class:`~effnet.errors.InvalidValue`."""
    value = parse_precision(precision)
    if runtime not in PRECISION_RUNTIMES[value]:
        raise InvalidValue(
            f"precision {value} runs on runtime {', '.join(PRECISION_RUNTIMES[value])}; got runtime {runtime!r}"
        )
    return value


def check_calibration(precision: Precision, calibration: object, exported: object = None) -> None:
    """int8 needs calibration images (``--calibration DIR``) unless it runs an ``exported`` file, calibrated when
    it was written."""
    if precision == "int8" and calibration is None and exported is None:
        raise InvalidValue("--precision int8 needs --calibration DIR (images preprocessed as the model's inputs)")


def check_export_format(fmt: object) -> str:
    """``fmt`` if it is one of :data:`EXPORT_FORMATS`, else a one-line :class:`~effnet.errors.InvalidValue`."""
    return _choice("--format", fmt, EXPORT_FORMATS)


def check_export_precision(fmt: str, precision: object) -> Precision:
    """``precision`` (:func:`parse_precision`) if the export format ``fmt`` holds it (:data:`EXPORT_PRECISIONS`)."""
    value = parse_precision(precision)
    if value not in EXPORT_PRECISIONS[check_export_format(fmt)]:
        raise InvalidValue(f"--format {fmt} holds precision {', '.join(EXPORT_PRECISIONS[fmt])}; got {value}")
    return value


def _bounded_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidValue(f"{name} must be an integer in {low}..{high}; got {value!r}")
    return value


def check_opset(opset: object) -> int:
    """``opset`` if within :data:`MIN_OPSET`..:data:`MAX_OPSET`."""
    return _bounded_int("--opset", opset, MIN_OPSET, MAX_OPSET)


def check_input_size(size: object) -> int:
    """``size`` if within :data:`MIN_INPUT_SIZE`..:data:`MAX_INPUT_SIZE` pixels."""
    return _bounded_int("--input-size", size, MIN_INPUT_SIZE, MAX_INPUT_SIZE)


def check_calibration_size(size: object) -> int:
    """``size`` if within 1..:data:`MAX_CALIBRATION_SIZE` images."""
    return _bounded_int("--calibration-size", size, 1, MAX_CALIBRATION_SIZE)


def check_atol(atol: object) -> float:
    """``atol`` if it is a finite number >= 0."""
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not math.isfinite(atol) or atol < 0:
        raise InvalidValue(f"--atol must be a finite number >= 0; got {atol!r}")
    return float(atol)


def default_backend(
    device: str,
    precision: str,
    batch: int,
    openvino: bool = True,
    onnxruntime: bool = True,
    fastest: Mapping[int, str] | None = None,
) -> str:
    """What ``runtime="default"`` runs for a model on ``device`` (``cpu``/``cuda``/...) at ``precision``, ``batch``.

    ``openvino`` / ``onnxruntime`` say whether those packages are importable (fp32 uses the one there is; with
    neither, ``compile``). ``fastest``: batch -> the fastest CPU engine at fp32 as this machine's profile measured it
    (:func:`effnet.latency.profile.fastest_engines`); the one at the nearest batch is chosen, and without it
    :data:`CPU_FP32_CROSSOVER`.
    """
    if device != "cpu":
        if precision == "int8":
            raise InvalidValue(f"precision int8 runs on the CPU (OpenVINO, ONNX Runtime); the model is on {device}")
        return "compile"
    if precision != "fp32":
        return "openvino"
    if not (openvino and onnxruntime):
        return "openvino" if openvino else "onnxruntime" if onnxruntime else "compile"
    measured = nearest_engine(dict(fastest or {}), batch)
    if measured is not None:
        return measured
    for bound, engine in CPU_FP32_CROSSOVER:
        if batch <= bound:
            return engine
    return "openvino"


def runtime_help(default: str = DEFAULT_RUNTIME) -> str:
    """``--runtime`` help text built from :data:`RUNTIME_DESCRIPTIONS`."""
    return f"inference runtime (default: {default}). " + "; ".join(f"{k}: {v}" for k, v in RUNTIME_DESCRIPTIONS.items())


def precision_help() -> str:
    """``--precision`` help text."""
    return (
        f"numeric precision (default: {DEFAULT_PRECISION}). fp32: exact (within 1e-4 of eager); bf16: the "
        "hardware's native bf16 (AVX512_BF16/AMX on CPU via OpenVINO, bf16 on CUDA), refused where absent; "
        f"int8: post-training static quantization (NNCF on OpenVINO, ONNX Runtime's quantizer on onnxruntime) "
        f"calibrated on --calibration DIR (first {DEFAULT_CALIBRATION_SIZE} images by default)"
    )
