"""``effnet export``: ONNX (dynamic batch) or TorchScript, verified against PyTorch before it is kept."""

from __future__ import annotations

import argparse
import json

from effnet.cli.predict import add_model_arguments, load_model

HELP = "Export weights to ONNX (dynamic batch axis) or TorchScript; the file is verified against PyTorch."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, runtime=False)
    parser.add_argument("--format", required=True, choices=("onnx", "torchscript"), help="output format")
    parser.add_argument("--output", default=None, metavar="FILE",
                        help="output file (default: ./<model>.onnx or ./<model>.torchscript.pt)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="image side of the example input (default: the weights' preprocessing input size)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--atol", type=float, default=1e-4, help="max abs difference allowed vs PyTorch (1e-4)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from effnet.io import check_output
    from effnet.serving.export import export_model

    check_output(args.output, inputs={"--weights": args.weights})
    if args.input_size is not None and args.input_size < 8:
        raise ValueError(f"--input-size must be >= 8, got {args.input_size}")
    model = load_model(args)
    suffix = ".onnx" if args.format == "onnx" else ".torchscript.pt"
    output = args.output or f"{model.spec.name}{suffix}"
    check_output(output, inputs={"--weights": args.weights})
    result = export_model(model, output, args.format, args.input_size, opset=args.opset, atol=args.atol)
    if args.json:
        print(json.dumps({"model": model.spec.name, **result.to_dict()}))
    else:
        print(f"wrote {result.path} ({result.format}, {result.method}); verified on a {result.verify_shape} "
              f"random batch: max abs diff vs PyTorch {result.max_abs_diff:.2e} <= {result.atol:g}")  # fmt: skip
    return 0
