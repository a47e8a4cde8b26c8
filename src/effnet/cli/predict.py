"""``effnet predict``: top-k ImageNet (or the weights' own) classes for images and folders of images."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from effnet.models.convert import SOURCES

HELP = "Classify images (files or folders) with pretrained weights: top-k labels and probabilities."

SOURCE_CHOICES = ("auto", *SOURCES)


def add_model_arguments(parser: argparse.ArgumentParser, runtime: bool = True) -> None:
    """``--model``, ``--weights``, ``--source`` (and ``--runtime``), shared by predict, eval and export."""
    parser.add_argument(
        "--weights",
        required=True,
        metavar="PATH|REF",
        help="checkpoint (effnet .safetensors, or torchvision/timm/efficientnet_pytorch .pth) or a "
        "hub reference, downloaded once: hf-hub:timm/efficientnet_b0.ra_in1k, "
        "torchvision:EfficientNet_B0_Weights.IMAGENET1K_V1, torchvision:efficientnet_b0",
    )
    parser.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="model name, e.g. efficientnet_b0, tf_efficientnet_b2, efficientnet_lite0 "
        "(default: from the effnet safetensors header, else inferred from tensor shapes)",
    )
    parser.add_argument(
        "--source", default="auto", choices=SOURCE_CHOICES, help="weight layout (default: detected from the keys)"
    )
    if runtime:
        add_serving_arguments(parser)


def add_serving_arguments(
    parser: argparse.ArgumentParser, runtime_default: str | None = None, runtime: bool = True, device: bool = True
) -> None:
    """``--runtime``, ``--precision``, ``--calibration``/``--calibration-size`` (and ``--device``), from
    :mod:`effnet.config.serving`."""
    from effnet.config import serving as cfg

    if runtime:
        default = runtime_default or cfg.DEFAULT_RUNTIME
        parser.add_argument("--runtime", default=default, choices=cfg.RUNTIMES, help=cfg.runtime_help(default))
    parser.add_argument("--precision", default=cfg.DEFAULT_PRECISION, choices=cfg.PRECISIONS, help=cfg.precision_help())
    parser.add_argument(
        "--calibration",
        default=None,
        metavar="DIR",
        help="images for int8 calibration, preprocessed as the model's inputs",
    )
    parser.add_argument(
        "--calibration-size",
        type=int,
        default=cfg.DEFAULT_CALIBRATION_SIZE,
        metavar="N",
        help=f"calibration images used (default {cfg.DEFAULT_CALIBRATION_SIZE})",
    )
    if device:
        parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
        parser.add_argument(
            "--exported",
            default=None,
            metavar="FILE",
            help="run this file from effnet export (.onnx: ONNX Runtime, .xml: OpenVINO, e.g. an "
            "int8 model calibrated once) instead of converting --weights, which still gives "
            "the preprocessing and class names",
        )


def check_serving_arguments(args: argparse.Namespace) -> None:
    """Validate the serving flags before any work (torch-free except a ``--device cuda`` check)."""
    from effnet.config import serving as cfg

    if getattr(args, "runtime", None) is not None:
        cfg.check_precision(args.precision, args.runtime)
    cfg.check_calibration_size(args.calibration_size)
    if args.precision == "int8" and args.calibration is None and getattr(args, "exported", None) is None:
        raise ValueError("--precision int8 needs --calibration DIR (images preprocessed as the model's inputs)")
    if getattr(args, "device", "cpu") != "cpu":
        from effnet.serving.hardware import require_device

        require_device(args.device)


def load_model(args: argparse.Namespace) -> Any:
    """The model named by ``args`` with its weights loaded (eval mode, ``.preprocessing`` attached)."""
    from effnet.models.factory import load_pretrained

    return load_pretrained(args.model, args.weights, source=args.source)


def make_runner(model: Any, args: argparse.Namespace, batch: int) -> Any:
    """``optimize_for_inference`` for the user's ``--runtime``/``--precision`` with an example batch at the weights'
    size on ``--device``, or the ``--exported`` file's engine."""
    import torch

    from effnet.serving.runtimes import InferenceRunner, optimize_for_inference

    if getattr(args, "exported", None):
        from effnet.serving.engines import load_exported

        run, precision = load_exported(args.exported)  # the file's own precision, whatever --precision says
        return InferenceRunner("exported", args.exported, run, precision)
    size = model.preprocessing.input_size
    device = getattr(args, "device", "cpu")
    example = torch.zeros(batch, model.spec.in_chans, size, size, device=device)
    return optimize_for_inference(
        model.to(device),
        example,
        runtime=args.runtime,
        precision=args.precision,
        calibration=args.calibration,
        calibration_size=args.calibration_size,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files and/or folders (walked)")
    add_model_arguments(parser)
    parser.add_argument("--top-k", type=int, default=5, metavar="K", help="classes shown per image (default 5)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    from effnet.report import render_table
    from effnet.serving.inference import predict_files
    from effnet.serving.preprocess import find_images

    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    check_serving_arguments(args)
    files, problems = find_images(args.images)
    skipped = [(p.split(": ", 1)[0], p) for p in problems]
    if not files:
        raise ValueError(f"no images to classify: {problems[0] if problems else 'no inputs'}")
    model = load_model(args)
    batch_size = max(1, min(args.batch_size, len(files)))
    runner = make_runner(model, args, batch_size)
    predictions, unreadable = predict_files(runner, model.preprocessing, files, args.top_k, batch_size)
    skipped += unreadable
    for _, reason in skipped:
        print(f"effnet predict: skipped {reason}", file=sys.stderr)
    if not predictions:
        raise ValueError(f"none of the {len(files)} input files could be read as an image (first: {skipped[0][1]})")
    if args.json:
        print(
            json.dumps(
                {
                    "model": model.spec.name,
                    "weights": args.weights,
                    "predictions": [p.to_dict() for p in predictions],
                    "skipped": [{"file": f, "error": e} for f, e in skipped],
                },
                indent=2,
            )
        )
    else:
        rows = [
            {"file": p.path, "rank": r + 1, "index": i, "label": label, "probability": round(prob, 4)}
            for p in predictions
            for r, (i, label, prob) in enumerate(p.top)
        ]
        print(render_table(rows))
        print(
            f"\n{len(predictions)} image(s) classified with {model.spec.name}"
            + (f", {len(skipped)} skipped" if skipped else "")
        )
    return 1 if skipped else 0
