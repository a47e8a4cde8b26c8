"""``effnet eval``: top-1/top-5 accuracy of pretrained weights on an ImageFolder tree or images + labels CSV."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from effnet.cli.predict import add_model_arguments, check_serving_arguments, load_model, make_runner

HELP = "Top-1/top-5 accuracy of weights on DIR/<class>/<image> or on images listed in a labels CSV (file,index)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="ImageFolder root (DIR/<class>/<image>): folders named by the weights' class names "
        "('/' written as '_'), or by class index (0, 1, ...), else taken in sorted order; or "
        "the folder a labels CSV lives in",
    )
    parser.add_argument(
        "--labels",
        default=None,
        metavar="CSV",
        help="CSV with columns file,index (extra columns ignored; files relative to the CSV); "
        "default: DIR/labels.csv when present, else ImageFolder",
    )
    add_model_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="image-decoding worker processes (default: min(4, CPUs))",
    )
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--output", default=None, metavar="JSON", help="also write the result to this JSON file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _folder_samples(
    samples: list[tuple[Path, int]], folders: list[str], class_names: tuple[str, ...]
) -> tuple[list[tuple[Path, int]], str]:
    """ImageFolder samples relabelled by what the folder names mean (class names, numbers or sorted order)."""
    import sys

    from effnet.serving.preprocess import folder_class_indices

    indices, how = folder_class_indices(folders, class_names)
    if how == "sorted folder order" and class_names:
        print(
            f"effnet eval: note: no folder is named like one of the weights' {len(class_names)} class names; "
            "classes are taken in sorted folder order",
            file=sys.stderr,
        )
    return [(path, indices[i]) for path, i in samples], f"ImageFolder, {how}"


def run(args: argparse.Namespace) -> int:
    from effnet.io import atomic_write_json, check_output
    from effnet.serving.inference import evaluate_samples
    from effnet.serving.preprocess import image_folder_samples, read_labels_csv

    check_output(args.output, inputs={"--weights": args.weights, "--labels": args.labels})
    check_serving_arguments(args)
    data = Path(args.data)
    if not data.is_dir():
        raise NotADirectoryError(f"--data: not a directory: {data}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    labels = Path(args.labels) if args.labels else (data / "labels.csv" if (data / "labels.csv").is_file() else None)
    folders: list[str] = []
    if labels is not None:
        samples = read_labels_csv(labels)
        layout = f"labels CSV {labels}"
    else:
        samples, folders = image_folder_samples(data)
    model = load_model(args)
    if labels is None:
        samples, layout = _folder_samples(samples, folders, model.preprocessing.class_names)
    samples = samples if args.limit is None else samples[: args.limit]
    classes = model.num_classes
    bad = [(p, i) for p, i in samples if not 0 <= i < classes]
    if bad:
        raise ValueError(f"{bad[0][0]}: class index {bad[0][1]} is outside the model's 0..{classes - 1}")
    batch_size = min(args.batch_size, len(samples))
    runner = make_runner(model, args, batch_size)
    result = evaluate_samples(
        runner, model.preprocessing, samples, batch_size, args.workers, progress=not args.no_progress
    )
    record = {
        "model": model.spec.name,
        "weights": str(args.weights),
        "data": str(data),
        "layout": layout,
        "runtime": getattr(runner, "runtime", args.runtime),
        "backend": getattr(runner, "backend", None),
        "precision": getattr(runner, "precision", args.precision),
        **result.to_dict(),
    }
    if args.output:
        atomic_write_json(args.output, record)
    if args.json:
        print(json.dumps(record))
    else:
        print(
            f"{model.spec.name} on {data} ({layout}): top-1 {result.top1:.2%}, top-5 {result.top5:.2%} "
            f"over {result.images} images ({result.images_per_second:.1f} images/s, runtime {record['runtime']}, "
            f"{record['precision']})"
            + (f"; {len(result.skipped)} unreadable file(s) skipped" if result.skipped else "")
        )
    return 0
