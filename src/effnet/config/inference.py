"""Every setting of the commands that run weights, ``effnet predict``, ``eval`` and ``export`` (torch-free).

Each command builds its flags from one config here (:class:`PredictConfig`, :class:`EvalConfig`,
:class:`ExportConfig`; :mod:`effnet.cli.flags`), and a config is checked when it is built, before any weights are
read, by the rules of :mod:`effnet.config.serving`, the same functions the library calls at its own boundary.
The shared settings are the bases :class:`WeightsOptions` (which weights), :class:`CalibrationOptions`
(precision and int8 calibration) and :class:`ServingOptions` (runtime, device, exported file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from effnet.config.fields import Range, check_fields, setting
from effnet.config.serving import (
    DEFAULT_ATOL,
    DEFAULT_CALIBRATION_SIZE,
    DEFAULT_OPSET,
    DEFAULT_PRECISION,
    DEFAULT_RUNTIME,
    EXPORT_FORMATS,
    MAX_INPUT_SIZE,
    MAX_OPSET,
    MIN_INPUT_SIZE,
    MIN_OPSET,
    PRECISIONS,
    RUNTIMES,
    Precision,
    check_atol,
    check_calibration,
    check_calibration_size,
    check_export_precision,
    check_input_size,
    check_opset,
    check_precision,
    export_files,
    precision_help,
    runtime_help,
)

__all__ = [
    "DEFAULT_EXPORT_FOLDER",
    "EXPORT_SUFFIXES",
    "WeightsOptions",
    "CalibrationOptions",
    "ServingOptions",
    "PredictConfig",
    "EvalConfig",
    "ExportConfig",
]

"""Values of ``--source``: the weight layout, or ``auto`` to detect it from the keys."""
DEFAULT_EXPORT_FOLDER = "runs/export"
"""Where an export goes without ``--output`` (never the current directory itself)."""
EXPORT_SUFFIXES = {
    "onnx": ".onnx",
    "openvino": ".xml",
    "torchscript": ".torchscript.pt",
    "triton": "-triton",
    "ovms": "-ovms",
    "hub": "",
}
"""The file suffix of each export format (the repository formats: of the repository folder; ``hub``: a folder
named after the model)."""


@dataclass(frozen=True, kw_only=True)
class WeightsOptions:
    """Which weights a command runs: a file or hub reference, the model (default: read or inferred), the layout."""

    weights: str = setting(
        help="checkpoint (effnet .safetensors, or torchvision/timm/efficientnet_pytorch .pth), a Hub folder "
        "(DIR or local-dir:DIR: config.json + model.safetensors) or a hub reference, downloaded once: "
        "hf-hub:timm/efficientnet_b0.ra_in1k, torchvision:EfficientNet_B0_Weights.IMAGENET1K_V1, "
        "torchvision:efficientnet_b0",
        metavar="PATH|REF",
    )
    model: str | None = setting(
        None,
        "model name, e.g. efficientnet_b0, tf_efficientnet_b2, efficientnet_lite0 (default: from the effnet "
        "safetensors header, else inferred from tensor shapes)",
        metavar="NAME",
    )
    source: str = setting(
        "auto",
        "weight layout (default: detected from the keys); the layouts are effnet.models.convert.REGISTRY's, checked "
        "when the weights are read",
    )
    allow_nonfinite: bool = setting(False, "load weights holding NaN or Inf values (for debugging; refused otherwise)")
    max_memory: float | None = setting(
        None,
        "refuse a network or batch whose estimated memory exceeds this many GiB (default: what the device has "
        "available)",
        limits=Range(0, low_open=True),
        metavar="GIB",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        self._check()

    def _check(self) -> None:
        """The rules across fields, after each field's own type, choices and range (one-line ``InvalidValue``)."""


@dataclass(frozen=True, kw_only=True)
class CalibrationOptions(WeightsOptions):
    """:class:`WeightsOptions` at a numeric precision; int8 is calibrated on the first ``calibration_size`` images of
    ``calibration``."""

    precision: Precision = setting(DEFAULT_PRECISION, precision_help(), choices=PRECISIONS)
    calibration: str | None = setting(
        None, "images for int8 calibration, preprocessed as the model's inputs", metavar="DIR"
    )
    calibration_size: int = setting(
        DEFAULT_CALIBRATION_SIZE, "calibration images used", metavar="N", check=check_calibration_size
    )

    def _check(self) -> None:
        super()._check()
        # an --exported file (ServingOptions) runs instead of the weights: it was calibrated when it was written
        check_calibration(self.precision, self.calibration, getattr(self, "exported", None))


@dataclass(frozen=True, kw_only=True)
class ServingOptions(CalibrationOptions):
    """:class:`CalibrationOptions` served by ``runtime`` on ``device``, or the ``exported`` file run instead."""

    runtime: str = setting(DEFAULT_RUNTIME, runtime_help(DEFAULT_RUNTIME), choices=RUNTIMES)
    device: str = setting("cpu", "cpu (default), cuda or cuda:N")
    exported: str | None = setting(
        None,
        "run this file from effnet export (.onnx: ONNX Runtime, .xml: OpenVINO, e.g. an int8 model calibrated once) "
        "instead of converting --weights, which still gives the preprocessing and class names",
        metavar="FILE",
    )

    def _check(self) -> None:
        check_precision(self.precision, self.runtime)
        super()._check()


@dataclass(frozen=True, kw_only=True)
class PredictConfig(ServingOptions):
    """Every setting of ``effnet predict``: the images to classify and how many classes to show per image."""

    images: tuple[str, ...] = setting(help="image files and/or folders (walked)", positional=True, metavar="IMAGE")
    top_k: int = setting(5, "classes shown per image", limits=Range(1), metavar="K")
    batch_size: int = setting(16, "images per forward pass", limits=Range(1))
    json: bool = setting(False, "print one JSON object instead of a table")


@dataclass(frozen=True, kw_only=True)
class EvalConfig(ServingOptions):
    """Every setting of ``effnet eval``: the labelled images and how to read them."""

    data: str = setting(
        help="ImageFolder root (DIR/<class>/<image>): folders named by the weights' class names ('/' written as "
        "'_'), or by class index (0, 1, ...), else taken in sorted order; or the folder a labels CSV lives in",
        metavar="DIR",
    )
    labels: str | None = setting(
        None,
        "CSV with columns file,index (extra columns ignored; files relative to the CSV); default: DIR/labels.csv "
        "when present, else ImageFolder",
        metavar="CSV",
    )
    batch_size: int = setting(32, "images per forward pass", limits=Range(1))
    workers: int = setting(
        help="image-decoding worker processes (default: min(4, CPUs))",
        factory=lambda: min(4, os.cpu_count() or 1),
        limits=Range(0),
    )
    limit: int | None = setting(None, "evaluate only the first N images", limits=Range(1))
    output: str | None = setting(None, "also write the result to this JSON file", metavar="JSON")
    overwrite: bool = setting(False, "replace an existing --output file")
    json: bool = setting(False, "print one JSON object instead of a summary")
    progress: bool = setting(True, "hide the progress bar", flag="--no-progress")


@dataclass(frozen=True, kw_only=True)
class ExportConfig(CalibrationOptions):
    """Every setting of ``effnet export``: the format, where it goes and how it is verified against PyTorch."""

    format: str = setting(
        help="output format (openvino: IR .xml + .bin beside it; triton / ovms: the next version of the model in a "
        "Triton or OpenVINO Model Server repository folder, with its config; hub: a Hugging Face Hub folder "
        "config.json + model.safetensors + README.md that timm and transformers load where timm has the "
        "architecture)",
        choices=EXPORT_FORMATS,
    )
    output: str | None = setting(
        None,
        f"output file, or folder for --format hub (default: {DEFAULT_EXPORT_FOLDER}/<model>"
        f"{', '.join(s for s in EXPORT_SUFFIXES.values() if s)}; hub: {DEFAULT_EXPORT_FOLDER}/<model>)",
        metavar="FILE",
    )
    overwrite: bool = setting(
        False, "replace an existing output file, or write into a Hub folder that holds files (never done unasked)"
    )
    input_size: int | None = setting(
        None,
        f"image side of the example input, {MIN_INPUT_SIZE}..{MAX_INPUT_SIZE} (default: the weights' preprocessing "
        "input size)",
        check=check_input_size,
    )
    opset: int = setting(
        DEFAULT_OPSET, f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default {{default}})", check=check_opset
    )
    atol: float = setting(
        DEFAULT_ATOL, "max abs difference allowed vs PyTorch at fp32 (default {default})", check=check_atol
    )
    json: bool = setting(False, "print the result as JSON")

    def _check(self) -> None:
        super()._check()
        check_export_precision(self.format, self.precision)
        if self.output is not None:
            export_files(self.format, self.output)
