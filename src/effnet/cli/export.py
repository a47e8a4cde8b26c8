"""``effnet export``: ONNX (dynamic batch), OpenVINO IR or TorchScript, verified against PyTorch before it is kept;
or a Hugging Face Hub folder (``--format hub``, :mod:`effnet.models.hub_folder`).

Every flag is a field of :class:`effnet.config.inference.ExportConfig`; the config checks them all (bounds, and
which precisions a format holds) before any weights are read.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from effnet.cli.flags import Flags, add_flags, build
from effnet.cli.predict import load_model
from effnet.config.inference import DEFAULT_EXPORT_FOLDER, EXPORT_SUFFIXES, ExportConfig
from effnet.config.serving import REPOSITORY_FORMATS, export_files
from effnet.io import check_output, json_text, refuse_existing
from effnet.memory import estimate_memory
from effnet.models.convert import SOURCES  # torch-free: the registry of weight layouts
from effnet.models.hub import LOCAL_PREFIX  # torch-free until a reference is resolved
from effnet.serving.hardware import check_device_memory
from effnet.serving.image_files import find_images

HELP = (
    "Export weights to ONNX, OpenVINO IR, TorchScript or a Triton / OpenVINO Model Server repository (fp32, bf16, "
    "int8; the file is verified vs PyTorch), or to a Hugging Face Hub folder that timm and transformers load"
)

FLAGS = (Flags(ExportConfig, choices=(("source", ("auto", *SOURCES)),)),)
"""One flag per :class:`ExportConfig` field."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register one flag per :class:`ExportConfig` field."""
    add_flags(parser, FLAGS)


def run(args: argparse.Namespace) -> int:
    """Export the weights, verify the file against PyTorch, and print what was written."""
    from effnet.serving.export import export_model  # lazy: imports torch

    config: ExportConfig = build(FLAGS[0], args)
    if config.format == "hub":
        return _export_hub(config)
    folder = config.format in REPOSITORY_FORMATS
    calibration = find_images([config.calibration])[0] if config.calibration else None
    inputs = {"--weights": config.weights, "--calibration": calibration}

    def check(output: str | None) -> None:  # an input is never written, a result never replaced unasked
        if output is None:
            return
        companions = export_files(config.format, output)[1:]
        check_output(output, inputs=inputs, folder=folder, companions=companions)
        if not folder:  # a repository gets a new version folder; nothing in it is replaced
            refuse_existing(output, overwrite=config.overwrite, companions=companions)

    check(config.output)
    model = load_model(config)
    output = config.output or str(Path(DEFAULT_EXPORT_FOLDER) / f"{model.spec.name}{EXPORT_SUFFIXES[config.format]}")
    check(output)
    size = config.input_size or model.preprocessing.input_size
    check_batch = estimate_memory(model.spec, 3, resolution=size, weights=False)  # the weights are loaded already
    check_device_memory(check_batch, "cpu", config.max_memory)
    samples = None
    if config.precision == "int8":
        from effnet.serving.quantize import calibration_batch  # lazy: imports torch

        samples = calibration_batch(config.calibration, model.preprocessing, config.calibration_size)
    result = export_model(
        model,
        output,
        config.format,
        config.input_size,
        opset=config.opset,
        atol=config.atol,
        precision=config.precision,
        samples=samples,
    )
    if config.json:
        print(json_text({"model": model.spec.name, **result.to_dict()}))
    elif config.precision == "fp32":
        print(
            f"wrote {result.path} ({result.format}, {result.method}); verified on a {result.verify_shape} "
            f"random batch: max abs diff vs PyTorch {result.max_abs_diff:.2e} <= {result.atol:g}"
        )
    else:
        print(
            f"wrote {result.path} ({result.format} {result.precision}, {result.method}); on a {result.verify_shape} "
            f"batch: top-1 agreement with PyTorch {result.top1_agreement:.1%}, max abs diff "
            f"{result.max_abs_diff:.3g} (measure accuracy: effnet eval --weights {shlex.quote(config.weights)} "
            f"--exported {shlex.quote(str(result.path))} --data DIR)"
        )
    return 0


def _export_hub(config: ExportConfig) -> int:
    """``--format hub``: the Hub folder, its model card filled with what the weights' training run measured."""
    from effnet.models.hub_folder import save_hub_folder, weights_evaluation  # lazy: imports torch

    inputs = {"--weights": config.weights.removeprefix(LOCAL_PREFIX)}
    check_output(config.output, folder=True, inputs=inputs)
    model = load_model(config)
    output = config.output or str(Path(DEFAULT_EXPORT_FOLDER) / model.spec.name)
    check_output(output, folder=True, inputs=inputs)
    result = save_hub_folder(model, output, overwrite=config.overwrite, evaluation=weights_evaluation(config.weights))
    if config.json:
        print(json_text({"model": model.spec.name, "format": "hub", **result.to_dict()}))
        return 0
    layout = f"timm's {result.architecture} layout" if result.architecture else "effnet's own layout"
    print(f"wrote {result.path} (Hub folder in {layout}: config.json, model.safetensors, README.md)")
    for library, state in result.loaders.items():
        print(f"  {library}: {state}")
    return 0
