"""``effnet export``: ONNX (dynamic batch), OpenVINO IR or TorchScript, verified against PyTorch before it is kept."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from effnet.cli.predict import add_model_arguments, add_serving_arguments, check_serving_arguments, load_model
from effnet.config import serving as cfg

HELP = "Export weights to ONNX, OpenVINO IR or TorchScript (fp32, bf16, int8); the file is verified vs PyTorch."
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "torchscript": ".torchscript.pt"}
DEFAULT_FOLDER = "runs/export"
"""Where an export goes without ``--output`` (never the current directory itself)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, runtime=False)
    parser.add_argument(
        "--format", required=True, choices=cfg.EXPORT_FORMATS, help="output format (openvino: IR .xml + .bin beside it)"
    )
    add_serving_arguments(parser, runtime=False, device=False)
    parser.add_argument(
        "--output",
        default=None,
        metavar="FILE",
        help="output file (default: runs/export/<model>.onnx, .xml or .torchscript.pt)",
    )
    parser.add_argument(
        "--input-size",
        type=int,
        default=None,
        help=f"image side of the example input, {cfg.MIN_INPUT_SIZE}..{cfg.MAX_INPUT_SIZE} "
        "(default: the weights' preprocessing input size)",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=cfg.DEFAULT_OPSET,
        help=f"ONNX opset, {cfg.MIN_OPSET}..{cfg.MAX_OPSET} (default {cfg.DEFAULT_OPSET})",
    )
    parser.add_argument(
        "--atol",
        type=float,
        default=cfg.DEFAULT_ATOL,
        help=f"max abs difference allowed vs PyTorch at fp32 ({cfg.DEFAULT_ATOL:g})",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _check(args: argparse.Namespace) -> None:
    """Every flag validated before the weights are loaded."""
    check_serving_arguments(args)
    if args.input_size is not None:
        cfg.check_input_size(args.input_size)
    cfg.check_opset(args.opset)
    cfg.check_atol(args.atol)
    if args.precision not in cfg.EXPORT_PRECISIONS[args.format]:
        raise ValueError(
            f"--format {args.format} holds precision {', '.join(cfg.EXPORT_PRECISIONS[args.format])}; "
            f"got {args.precision}"
        )


def run(args: argparse.Namespace) -> int:
    _check(args)
    from effnet.io import check_output
    from effnet.serving.export import export_model

    check_output(args.output, inputs={"--weights": args.weights})
    model = load_model(args)
    output = args.output or str(Path(DEFAULT_FOLDER) / f"{model.spec.name}{SUFFIXES[args.format]}")
    check_output(output, inputs={"--weights": args.weights})
    samples = None
    if args.precision == "int8":
        from effnet.serving.quantize import calibration_batch

        samples = calibration_batch(args.calibration, model.preprocessing, args.calibration_size)
    result = export_model(
        model,
        output,
        args.format,
        args.input_size,
        opset=args.opset,
        atol=args.atol,
        precision=args.precision,
        samples=samples,
    )
    if args.json:
        print(json.dumps({"model": model.spec.name, **result.to_dict()}))
    elif args.precision == "fp32":
        print(
            f"wrote {result.path} ({result.format}, {result.method}); verified on a {result.verify_shape} "
            f"random batch: max abs diff vs PyTorch {result.max_abs_diff:.2e} <= {result.atol:g}"
        )
    else:
        print(
            f"wrote {result.path} ({result.format} {result.precision}, {result.method}); on a {result.verify_shape} "
            f"batch: top-1 agreement with PyTorch {result.top1_agreement:.1%}, max abs diff "
            f"{result.max_abs_diff:.3g} (measure accuracy: effnet eval --weights {shlex.quote(args.weights)} "
            f"--exported {shlex.quote(str(result.path))} --data DIR)"
        )
    return 0
