"""Recipes on the torch side: the device a run trains on and the speed settings it implies.

The settings themselves (:class:`TrainConfig`, :data:`RECIPES`, :func:`resolve_recipe`, ...) are torch-free and
live in :mod:`effnet.config.training`; they are re-exported here.
"""

from __future__ import annotations

import torch

from effnet.config.recipes import RECIPES
from effnet.config.training import (
    AMP_MODES,
    SCHEDULE_FIELDS,
    TrainConfig,
    choose_recipe,
    peak_lr,
    recipe_warning,
    resolve_recipe,
    resolve_speed,
)
from effnet.serving.hardware import require_device

__all__ = [
    "TrainConfig",
    "RECIPES",
    "AMP_MODES",
    "SCHEDULE_FIELDS",
    "choose_recipe",
    "recipe_warning",
    "resolve_recipe",
    "resolve_speed",
    "peak_lr",
    "select_device",
    "resolve_device",
]


def select_device(config: TrainConfig, local_rank: int = 0) -> torch.device:
    """The device ``config.device`` names (``auto``: this rank's GPU when CUDA is available, else the CPU).

    A device this machine does not have is a one-line ``ValueError`` naming what it has.
    """
    if config.device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(config.device)
    if device.type == "cuda":
        require_device(config.device)  # serving's check: one message for train, predict, eval and scale
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {config.device}: MPS is not available here; use --device cpu or auto")
    return device


def resolve_device(config: TrainConfig, local_rank: int = 0) -> tuple[torch.device, TrainConfig]:
    """The run's device and ``config`` with its speed settings resolved for it (:func:`resolve_speed`)."""
    device = select_device(config, local_rank)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return device, resolve_speed(config, device.type, bf16)
