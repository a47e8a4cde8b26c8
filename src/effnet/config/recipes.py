"""The training recipes (torch-free): the values each recipe gives the ``effnet train`` settings left unset.

:func:`effnet.config.training.resolve_recipe` applies them. Every recipe gives every field of
:data:`RECIPE_FIELDS` a value, and only the fields of :data:`OWN_DEFAULT_FIELDS` may get ``None`` (the optimizer's
or the model's own value), so a resolved config needs no fallback downstream.
"""

from __future__ import annotations

from typing import Any

from effnet.config.fields import show_value

__all__ = [
    "RECIPES",
    "RECIPE_OPTIMIZER_VALUES",
    "RECIPE_CHOICES",
    "PAPER_MIN_EPOCHS",
    "RECIPE_FIELDS",
    "OWN_DEFAULT_FIELDS",
    "recipe_value",
    "unset_help",
]

_PAPER: dict[str, Any] = {
    "opt": "rmsprop_tf",
    "lr": 0.016,
    "momentum": 0.9,
    "rmsprop_decay": 0.9,
    "opt_eps": 1e-3,
    "weight_decay": 1e-5,
    "schedule": "step",
    "warmup_epochs": 5.0,
    "decay_rate": 0.97,
    "decay_epochs": 2.4,
    "label_smoothing": 0.1,
    "ema_decay": 0.9999,
    "bn_momentum": 0.01,
    "body_lr_scale": 1.0,
    "augment": "autoaugment",
    "new_head": False,
    "random_crop": True,
}
RECIPES: dict[str, dict[str, Any]] = {
    # Tan & Le 2019, section 5.2, and the reference TPU implementation's defaults.
    "paper": _PAPER,
    # A plain short schedule: the paper's values except AdamW with a cosine decay, a 0.3-epoch warm-up, BN
    # statistics that follow the weights (momentum 0.1), and no regularization a few epochs cannot afford: no
    # AutoAugment, no random-resized crop (validation's resize + center crop), no dropout, no stochastic depth.
    # Another --opt keeps the paper's LR and weight decay, so explicit flags mean under it what they mean under paper.
    "short": {
        **_PAPER,
        "opt": "adamw",
        "schedule": "cosine",
        "warmup_epochs": 0.3,
        "bn_momentum": 0.1,
        "augment": "none",
        "random_crop": False,
        "dropout": 0.0,
        "drop_path": 0.0,
    },
    # Transfer learning: SGD (or AdamW) with cosine decay, a fresh classifier and a 10x lower LR on the body.
    "finetune": {
        "opt": "sgd",
        "lr": 0.05,
        "momentum": 0.9,
        "rmsprop_decay": 0.9,
        "opt_eps": None,
        "weight_decay": 1e-4,
        "schedule": "cosine",
        "warmup_epochs": 1.0,
        "decay_rate": 0.97,
        "decay_epochs": 2.4,
        "label_smoothing": 0.1,
        "ema_decay": 0.999,
        "bn_momentum": 0.01,
        "body_lr_scale": 0.1,
        "augment": "autoaugment",
        "new_head": True,
        "random_crop": True,
    },
}
"""Values each recipe gives to the fields left ``None`` (then :data:`RECIPE_OPTIMIZER_VALUES` for the optimizer)."""
RECIPE_OPTIMIZER_VALUES: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {"adamw": {"lr": 1e-3, "weight_decay": 0.05}},
    "short": {"adamw": {"lr": 0.04, "weight_decay": 0.05}},
    "finetune": {"adamw": {"lr": 1e-3, "weight_decay": 0.05}},
}
"""Per recipe, the values that replace its own when the optimizer (the recipe's or ``--opt``) is the key."""
RECIPE_CHOICES = ("auto", *RECIPES)
"""Values of ``--recipe``: ``auto`` is ``paper`` for runs of :data:`PAPER_MIN_EPOCHS` or more, else ``short``."""
PAPER_MIN_EPOCHS = 50
"""Shortest run ``--recipe auto`` gives the paper's recipe: its 5-epoch warm-up is then at most a tenth of it."""
RECIPE_FIELDS: tuple[str, ...] = tuple(_PAPER)
"""The fields every recipe fills (``short`` also sets ``dropout`` and ``drop_path``)."""
OWN_DEFAULT_FIELDS = ("opt_eps", "dropout", "drop_path")
"""Recipe fields whose ``None`` is a value: the optimizer's own epsilon, the model's own dropout and drop-path rate."""


def recipe_value(recipe: str, name: str, opt: str | None = None) -> Any:
    """The value recipe ``recipe`` gives the unset field ``name`` when the optimizer is ``opt`` (default: its own)."""
    values = dict(RECIPES[recipe])
    values.update(RECIPE_OPTIMIZER_VALUES[recipe].get(opt or values["opt"], {}))
    return values[name]


def unset_help(name: str) -> str:
    """``(unset: paper 0.016, short 0.04, finetune 0.05)``: what each recipe gives the field ``name``."""
    return "(unset: " + ", ".join(f"{recipe} {show_value(recipe_value(recipe, name))}" for recipe in RECIPES) + ")"
