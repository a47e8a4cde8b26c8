"""``effnet predict``: top-k ImageNet (or the weights' own) classes for images and folders of images.

Every flag is a field of :class:`effnet.config.inference.PredictConfig`; the config checks them all before any
weights are read. :func:`load_model` and :func:`make_runner` are shared with ``effnet eval`` and ``export``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from effnet.cli.flags import Flags, add_flags, build
from effnet.config.inference import PredictConfig, ServingOptions, WeightsOptions
from effnet.errors import BadFile, InvalidValue
from effnet.io import json_text
from effnet.memory import estimate_memory
from effnet.models.convert import SOURCES  # torch-free: the registry of weight layouts
from effnet.report import render_table
from effnet.serving.hardware import check_device_memory, require_device
from effnet.serving.image_files import find_images

COMPILING = "compiling the model with torch.compile (Inductor) at its first batch of each size; cached afterwards"
"""The line ``--runtime compile`` prints before the first batch, whose compilation takes a while."""

HELP = "Classify images (files or folders) with pretrained weights: top-k labels and probabilities."

FLAGS = (Flags(PredictConfig, choices=(("source", ("auto", *SOURCES)),)),)
"""One flag per :class:`PredictConfig` field."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register one flag per :class:`PredictConfig` field."""
    add_flags(parser, FLAGS)


def check_device(options: ServingOptions) -> None:
    """A ``--device`` other than the CPU must exist on this machine (checked before any weights are read)."""
    if options.device != "cpu":
        require_device(options.device)


def load_model(options: WeightsOptions) -> Any:
    """The model ``options`` name with its weights loaded (eval mode, ``.preprocessing`` attached)."""
    from effnet.models.factory import load_pretrained  # lazy: imports torch

    return load_pretrained(
        options.model, options.weights, source=options.source, allow_nonfinite=options.allow_nonfinite
    )


def make_runner(model: Any, options: ServingOptions, batch: int) -> Any:
    """``optimize_for_inference`` for the user's ``--runtime``/``--precision`` with an example batch at the weights'
    size on ``--device``, or the ``--exported`` file's engine."""
    import torch  # lazy: predict's --help stays torch-free

    from effnet.serving.runtimes import InferenceRunner, optimize_for_inference  # lazy: imports torch

    size = model.preprocessing.input_size
    device = "cpu" if options.exported else options.device  # the batch must fit before it is allocated; the
    estimate = estimate_memory(model.spec, batch, resolution=size, weights=device != "cpu")  # weights are loaded
    check_device_memory(estimate, device, options.max_memory)
    if options.exported:
        from effnet.serving.exported import Signature, load_exported  # lazy: imports torch

        expect = Signature(model.spec.in_chans, size, model.num_classes)  # a file made for another model: one line
        engine = load_exported(options.exported, expect, options.weights)  # its own precision, whatever --precision
        return InferenceRunner("exported", engine, model.spec.in_chans)
    example = torch.zeros(batch, model.spec.in_chans, size, size, device=options.device)
    runner = optimize_for_inference(
        model.to(options.device),
        example,
        runtime=options.runtime,
        precision=options.precision,
        calibration=options.calibration,
        calibration_size=options.calibration_size,
    )
    if runner.backend == "compile":  # Inductor compiles at the first batch of each size: say so before the wait
        print(COMPILING, file=sys.stderr, flush=True)
    return runner


def run(args: argparse.Namespace) -> int:
    """Classify the images; status 1 when some were skipped (named on stderr), 0 otherwise."""
    from effnet.serving.inference import predict_files  # lazy: imports torch

    config: PredictConfig = build(FLAGS[0], args)
    check_device(config)
    files, problems = find_images(config.images)
    skipped = [(p.split(": ", 1)[0], p) for p in problems]
    if not files:
        raise InvalidValue(f"no images to classify: {problems[0] if problems else 'no inputs'}")
    model = load_model(config)
    batch_size = max(1, min(config.batch_size, len(files)))
    runner = make_runner(model, config, batch_size)
    predictions, unreadable = predict_files(runner, model.preprocessing, files, config.top_k, batch_size)
    skipped += unreadable
    for _, reason in skipped:
        print(f"effnet predict: skipped {reason}", file=sys.stderr)
    if not predictions:
        raise BadFile(f"none of the {len(files)} input files could be read as an image (first: {skipped[0][1]})")
    if config.json:
        print(
            json_text(
                {
                    "model": model.spec.name,
                    "weights": config.weights,
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
