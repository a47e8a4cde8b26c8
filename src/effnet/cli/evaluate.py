"""``effnet eval``: top-1/top-5 accuracy of pretrained weights on an ImageFolder tree or images + labels CSV.

Every flag is a field of :class:`effnet.config.inference.EvalConfig`; the config checks them all before any
weights are read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from effnet.cli.flags import Flags, add_flags, build
from effnet.cli.predict import check_device, load_model, make_runner
from effnet.config.inference import EvalConfig
from effnet.errors import InvalidValue, MissingFile
from effnet.io import atomic_write_json, check_output, json_text, refuse_existing
from effnet.models.convert import SOURCES  # torch-free: the registry of weight layouts
from effnet.serving.image_files import find_images, image_folder_samples
from effnet.serving.preprocess import folder_class_indices, read_labels_csv

HELP = "Top-1/top-5 accuracy of weights on DIR/<class>/<image> or on images listed in a labels CSV (file,index)."

FLAGS = (Flags(EvalConfig, choices=(("source", ("auto", *SOURCES)),)),)
"""One flag per :class:`EvalConfig` field."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register one flag per :class:`EvalConfig` field."""
    add_flags(parser, FLAGS)


def _folder_samples(
    samples: list[tuple[Path, int]], folders: list[str], class_names: tuple[str, ...]
) -> tuple[list[tuple[Path, int]], str]:
    """ImageFolder samples relabelled by what the folder names mean (class names, numbers or sorted order)."""
    indices, how = folder_class_indices(folders, class_names)
    if how == "sorted folder order" and class_names:
        print(
            f"effnet eval: note: no folder is named like one of the weights' {len(class_names)} class names; "
            "classes are taken in sorted folder order",
            file=sys.stderr,
        )
    return [(path, indices[i]) for path, i in samples], f"ImageFolder, {how}"


def run(args: argparse.Namespace) -> int:
    """Evaluate the weights on the labelled images and print (and with ``--output`` write) the accuracy."""
    from effnet.serving.inference import evaluate_samples  # lazy: imports torch

    config: EvalConfig = build(FLAGS[0], args)
    check_output(config.output, inputs={"--weights": config.weights, "--labels": config.labels})
    check_device(config)
    data = Path(config.data)
    if not data.is_dir():
        raise MissingFile(f"--data: not a directory: {data}")
    labels = (
        Path(config.labels) if config.labels else (data / "labels.csv" if (data / "labels.csv").is_file() else None)
    )
    folders: list[str] = []
    if labels is not None:
        samples = read_labels_csv(labels)
        layout = f"labels CSV {labels}"
    else:
        samples, folders = image_folder_samples(data)
    calibration = find_images([config.calibration])[0] if config.calibration else None
    read = {
        "--weights": config.weights,
        "--labels": labels,
        "--data": [p for p, _ in samples],
        "--exported": config.exported,
        "--calibration": calibration,
    }
    check_output(config.output, inputs=read)  # every file eval reads (its images too), before weights are loaded
    refuse_existing(config.output, overwrite=config.overwrite)  # then: a result on disk is not replaced unasked
    model = load_model(config)
    if labels is None:
        samples, layout = _folder_samples(samples, folders, model.preprocessing.class_names)
    samples = samples if config.limit is None else samples[: config.limit]
    classes = model.num_classes
    bad = [(p, i) for p, i in samples if not 0 <= i < classes]
    if bad:
        raise InvalidValue(f"{bad[0][0]}: class index {bad[0][1]} is outside the model's 0..{classes - 1}")
    batch_size = min(config.batch_size, len(samples))
    runner = make_runner(model, config, batch_size)
    result = evaluate_samples(
        runner, model.preprocessing, samples, batch_size, config.workers, progress=config.progress
    )
    record = {
        "model": model.spec.name,
        "weights": str(config.weights),
        "data": str(data),
        "layout": layout,
        "runtime": getattr(runner, "runtime", config.runtime),
        "backend": getattr(runner, "backend", None),
        "precision": getattr(runner, "precision", config.precision),
        **result.to_dict(),
    }
    if config.output:
        atomic_write_json(config.output, record)
    if config.json:
        print(json_text(record))
    else:
        print(
            f"{model.spec.name} on {data} ({layout}): top-1 {result.top1:.2%}, top-5 {result.top5:.2%} "
            f"over {result.images} images ({result.images_per_second:.1f} images/s, runtime {record['runtime']}, "
            f"{record['precision']})"
            + (f"; {len(result.skipped)} unreadable file(s) skipped" if result.skipped else "")
        )
    return 0
