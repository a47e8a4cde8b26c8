"""The speed settings a training device implies (torch-free): ``--amp auto`` and ``--channels-last`` resolved.

:func:`resolve_speed` is the rule; :func:`effnet.training.device.resolve_device` applies it to the device a run
trains on.
"""

from __future__ import annotations

import dataclasses

from effnet.config.training import TrainConfig

__all__ = ["resolve_speed"]


def resolve_speed(config: TrainConfig, device_type: str, bf16_supported: bool = False) -> TrainConfig:
    """Fill ``amp="auto"`` and ``channels_last=None`` for the device the run trains on; returns a new config.

    CPU: channels_last on and autocast off (the faster of the measured layouts and precisions on CPUs without
    AMX; ``benchmarks/RESULTS.md``). CUDA: channels_last and bf16 autocast (fp16 with a loss scaler where bf16 is
    unsupported), the layout and precision tensor cores are built for. Other devices (MPS): both off. Explicit
    values are kept.
    """
    amp = config.amp
    if amp == "auto":
        amp = ("bf16" if bf16_supported else "fp16") if device_type == "cuda" else "none"
    channels_last = config.channels_last
    if channels_last is None:
        channels_last = device_type in ("cpu", "cuda")
    return dataclasses.replace(config, amp=amp, channels_last=channels_last)
