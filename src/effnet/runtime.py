"""Inference runtimes: the callable that ``effnet predict`` / ``effnet eval`` run a model through."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["RUNTIMES", "optimize_for_inference"]

RUNTIMES = ("eager",)
"""Runtime names accepted by :func:`optimize_for_inference`."""


def optimize_for_inference(
    model: nn.Module, example: torch.Tensor | None = None, runtime: str = "eager"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable computing ``model``'s eval-mode outputs without autograd.

    ``runtime="eager"``: the module itself in eval mode under ``torch.inference_mode``.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    model.eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    return run
