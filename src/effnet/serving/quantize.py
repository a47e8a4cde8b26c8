"""Post-training static INT8: calibration images preprocessed exactly as the model's inputs, NNCF or ORT quantizer.

Calibration happens once, when a runner or an export is made (:func:`effnet.optimize_for_inference` with
``precision="int8"``, ``effnet export --precision int8``); the quantized model is then reused (the exported IR /
ONNX file by ``--exported``), never re-calibrated per call. NNCF is the ``effnet[quantize]`` extra.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from effnet.config.serving import DEFAULT_CALIBRATION_SIZE, ServingUnavailable, check_calibration_size
from effnet.errors import InvalidValue, MissingFile
from effnet.machine import available_memory
from effnet.memory import BYTES_PER_VALUE, show_bytes
from effnet.preprocessing import Preprocessing
from effnet.serving.image_files import find_images, load_image
from effnet.serving.preprocess import eval_transform

__all__ = ["Calibration", "calibration_batch", "quantize_openvino", "quantize_onnx"]

Calibration = str | os.PathLike[str] | torch.Tensor
"""A folder of images (preprocessed by the model's ``preprocessing``) or an already preprocessed (N, C, H, W) batch."""


def calibration_batch(
    source: Calibration, preprocessing: Preprocessing | None, size: int = DEFAULT_CALIBRATION_SIZE
) -> torch.Tensor:
    """The (N, C, H, W) calibration inputs: ``source`` as is (a tensor) or its first ``size`` readable images
    preprocessed by ``preprocessing`` (needed for a folder only)."""
    check_calibration_size(size)
    if isinstance(source, torch.Tensor):
        if source.dim() != 4 or source.shape[0] < 1:
            raise InvalidValue(f"calibration tensor must be (N, C, H, W) with N >= 1; got {tuple(source.shape)}")
        return source[:size].detach().float().cpu()
    folder = Path(source)
    if not folder.is_dir():
        raise MissingFile(f"--calibration: not a directory: {folder}")
    _check_calibration_memory(size, preprocessing)
    files, _ = find_images([folder])
    transform = eval_transform(preprocessing)
    tensors = []
    for file in files:
        try:
            tensors.append(transform(load_image(file)))
        except (ValueError, OSError):
            continue  # an unreadable file is not a calibration sample
        if len(tensors) == size:
            break
    if not tensors:
        raise InvalidValue(f"--calibration {folder}: no readable images")
    return torch.stack(tensors)


def _check_calibration_memory(size: int, preprocessing: Preprocessing | None) -> None:
    """Refuse in one line ``size`` preprocessed images that cannot fit the memory available (they are held at once)."""
    if preprocessing is None:
        return
    need = size * preprocessing.in_chans * preprocessing.input_size**2 * BYTES_PER_VALUE
    limit = available_memory()
    if limit is not None and need > limit:
        raise InvalidValue(
            f"--calibration-size {size} images of {preprocessing.input_size} px need at least {show_bytes(need)}, "
            f"more than the {show_bytes(limit)} of this machine's available memory; use a smaller --calibration-size"
        )


def _nncf() -> Any:
    try:
        import nncf  # lazy: NNCF is the optional effnet[quantize] extra
    except ImportError:
        raise ServingUnavailable(
            "precision int8 with OpenVINO needs NNCF: pip install 'effnet[quantize]' (or pip install nncf)"
        ) from None
    logging.getLogger("nncf").setLevel(logging.ERROR)
    return nncf


def quantize_openvino(model: Any, samples: torch.Tensor) -> Any:
    """NNCF post-training static quantization of an ``openvino.Model`` (mixed preset: SiLU/SE keep asymmetric
    activations), one calibration sample per image."""
    nncf = _nncf()
    data = nncf.Dataset([samples[i : i + 1].numpy() for i in range(samples.shape[0])])
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout stays the command's (e.g. JSON)
        return nncf.quantize(model, data, subset_size=samples.shape[0], preset=nncf.QuantizationPreset.MIXED)


class _Reader:
    """ONNX Runtime ``CalibrationDataReader`` over the calibration images, one per call."""

    def __init__(self, samples: torch.Tensor) -> None:
        self._items = iter([samples[i : i + 1].numpy() for i in range(samples.shape[0])])

    def get_next(self) -> dict[str, Any] | None:
        item = next(self._items, None)
        return None if item is None else {"input": item}


def quantize_onnx(onnx_bytes: bytes, samples: torch.Tensor) -> bytes:
    """ONNX Runtime's ``quantize_static`` (QDQ, per-channel int8 weights, int8 activations) of an fp32 ONNX model.

    Weights use 7 bits (``reduce_range``): ONNX Runtime's int8 kernels on x86 CPUs without VNNI (AVX2, AVX-512 F)
    multiply in pairs summed into saturating int16, which 8-bit weights overflow; 7-bit weights cannot, so one file
    keeps its accuracy on every CPU it is deployed to (measured: benchmarks/RESULTS.md, "int8 without VNNI")."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static  # lazy: optional engine
    from onnxruntime.quantization.shape_inference import quant_pre_process  # lazy: optional engine

    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre, out = (os.path.join(tmp, n) for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        Path(fp32).write_bytes(onnx_bytes)
        quant_pre_process(fp32, pre, skip_symbolic_shape=True)
        quantize_static(
            pre,
            out,
            _Reader(samples),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            reduce_range=True,
        )
        return Path(out).read_bytes()
