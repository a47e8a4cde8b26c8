"""``effnet train``: train a model (a recipe fitted to the run's length, the paper's, or fine-tuning), resumable.

Every flag is built from a field of :class:`effnet.config.training.TrainConfig` (:mod:`effnet.cli.flags`): its
name, type, choices, default and help, so the command and the library cannot disagree. Flags left unset take the
recipe's value, and the run writes the fully resolved configuration to ``OUTPUT/config.json``.
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from effnet.cli.flags import Flags, add_flags, build
from effnet.config.fields import show_value
from effnet.config.recipes import PAPER_MIN_EPOCHS, RECIPES, recipe_value
from effnet.config.training import GROUPS, TrainConfig
from effnet.io import check_output

HELP = "Train or fine-tune a model (recipe fitted to the run's length, or the paper's), resumable, DDP."

__all__ = ["HELP", "FLAGS", "add_arguments", "config_from_args", "run"]

FLAGS = (Flags(TrainConfig),)
"""One flag per :class:`TrainConfig` field."""


def _epilog() -> str:
    paper = {k: recipe_value("paper", k) for k in RECIPES["paper"]}
    lines = [
        f"Recipes (flags left unset take these values; --recipe auto: paper for runs of {PAPER_MIN_EPOCHS}+ "
        "epochs, else short):"
    ]
    for name in RECIPES:
        values = {k: recipe_value(name, k) for k in RECIPES[name]}
        shown = values if name == "paper" else {k: v for k, v in values.items() if v != paper.get(k)}
        prefix = "" if name == "paper" else "as paper but "
        text = prefix + ", ".join(f"{k} {show_value(v)}" for k, v in shown.items())
        lines += textwrap.wrap(text, 116, initial_indent=f"  {name + ':':10}", subsequent_indent=" " * 12)
    lines += [
        "--batch-size is the global batch (split over torchrun processes); the peak LR is --lr x batch/256.",
        "Distributed: torchrun --nproc_per_node=N -m effnet train ... (gloo on CPU, NCCL on GPUs).",
    ]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register one flag per :class:`TrainConfig` field, grouped as the config groups them."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _epilog()
    add_flags(parser, FLAGS, GROUPS)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` described by parsed arguments (``InvalidValue`` naming a bad flag)."""
    config: TrainConfig = build(FLAGS[0], args)
    return config


def run(args: argparse.Namespace) -> int:
    """Train; exit status 128 + N after signal N (the run is checkpointed and resumable)."""
    check_output(
        args.output,
        folder=True,
        inputs={
            "--weights": args.weights,
            "--spec": args.spec_file,
            "--data": args.data,
            "--data-root": args.data_root,
        },
    )
    config = config_from_args(args)
    from effnet.training.loop import TrainingInterrupted  # lazy: imports torch
    from effnet.training.trainer import fit  # lazy: imports torch

    try:
        fit(config)
    except TrainingInterrupted as exc:
        print(f"effnet train: {exc}", file=sys.stderr)
        return 128 + exc.signum
    return 0
