"""``effnet train``: train a model (a recipe fitted to the run's length, the paper's, or fine-tuning), resumable.

Every flag is built from a field of :class:`effnet.config.training.TrainConfig`: its name, type, choices, default
and help, so the command and the library cannot disagree. Flags left unset take the recipe's value, and the run
writes the fully resolved configuration to ``OUTPUT/config.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
from typing import Any

from effnet.config.training import (
    GROUPS,
    PAPER_MIN_EPOCHS,
    RECIPES,
    TrainConfig,
    field_type,
    flag_name,
    recipe_value,
)

HELP = "Train or fine-tune a model (recipe fitted to the run's length, or the paper's), resumable, DDP."

__all__ = ["HELP", "add_arguments", "config_from_args", "run"]


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)


def _help(f: dataclasses.Field[Any]) -> str:
    text = f.metadata["help"].replace("%", "%%")
    if f.default is None and f.name in RECIPES["paper"]:
        values = ", ".join(f"{name} {_show(recipe_value(name, f.name))}" for name in RECIPES)
        return f"{text} (unset: {values})"
    if f.default is None or f.default is False:
        return text
    return f"{text} (default {_show(f.default)})"


def _argument(f: dataclasses.Field[Any]) -> dict[str, Any]:
    """``add_argument`` keyword arguments for the :class:`TrainConfig` field ``f``."""
    kind = field_type(f)
    kwargs: dict[str, Any] = {"dest": f.name, "default": f.default, "help": _help(f)}
    if kind is bool and f.default is False:
        kwargs["action"] = "store_true"
    elif kind is bool:
        kwargs.update(type=_bool, metavar="{true,false}")
        if f.metadata["optional_value"]:
            kwargs.update(nargs="?", const=True)
    else:
        kwargs["type"] = kind
        if f.metadata["choices"] is not None:
            kwargs["choices"] = f.metadata["choices"]
        if f.metadata.get("metavar"):
            kwargs["metavar"] = f.metadata["metavar"]
    return kwargs


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
        text = prefix + ", ".join(f"{k} {_show(v)}" for k, v in shown.items())
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
    groups = {key: parser.add_argument_group(title) for key, title in GROUPS}
    for f in dataclasses.fields(TrainConfig):
        groups[f.metadata["group"]].add_argument(flag_name(f), **_argument(f))


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` described by parsed arguments (``ValueError`` naming a bad flag)."""
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})


def run(args: argparse.Namespace) -> int:
    """Train; exit status 128 + N after signal N (the run is checkpointed and resumable)."""
    from effnet.io import check_output

    check_output(
        args.output, folder=True, inputs={"--weights": args.weights, "--spec": args.spec_file, "--data": args.data}
    )
    config = config_from_args(args)
    from effnet.training.loop import TrainingInterrupted
    from effnet.training.trainer import fit

    try:
        fit(config)
    except TrainingInterrupted as exc:
        print(f"effnet train: {exc}", file=sys.stderr)
        return 128 + exc.signum
    return 0
