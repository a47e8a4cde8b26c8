"""Where a run computes: the device it trains on, the speed settings that device implies, and how a step runs there.

:func:`resolve_device` picks the device (``--device``) and fills the settings that depend on it (``--amp auto``,
``--channels-last``; the rule itself is the torch-free :func:`effnet.config.speed.resolve_speed`).
:class:`Runtime` carries the result (device, rank, process count, precision, memory layout) to every step, and
:func:`autocast` is the precision context a forward pass runs in.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from effnet.config.speed import resolve_speed
from effnet.config.training import TrainConfig
from effnet.errors import InvalidValue
from effnet.serving.hardware import require_device

__all__ = ["Runtime", "autocast", "select_device", "resolve_device"]


@dataclass(frozen=True)
class Runtime:
    """Where and how the steps run: device, this process's rank, the number of processes, precision, layout."""

    device: torch.device
    rank: int = 0
    world: int = 1
    amp: str = "none"
    channels_last: bool = False

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """A batch of images moved to the device in the run's memory format."""
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    """Autocast for ``amp`` (``none``, ``bf16``, ``fp16``) on ``device``'s type."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


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
        raise InvalidValue(f"--device {config.device}: MPS is not available here; use --device cpu or auto")
    return device


def resolve_device(config: TrainConfig, local_rank: int = 0) -> tuple[torch.device, TrainConfig]:
    """The run's device and ``config`` with its speed settings resolved for it (:func:`resolve_speed`)."""
    device = select_device(config, local_rank)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return device, resolve_speed(config, device.type, bf16)
