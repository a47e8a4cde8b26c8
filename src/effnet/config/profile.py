"""Every setting of ``effnet profile`` (torch-free): which device, engine, precision and batch to profile, how much to
measure, and where the profile goes (:class:`ProfileConfig`; the measurement is :mod:`effnet.serving.profile`)."""

from __future__ import annotations

from dataclasses import dataclass

from effnet.config.fields import Range, check_fields, setting
from effnet.config.serving import DEFAULT_PRECISION, Precision
from effnet.errors import InvalidValue

__all__ = [
    "PROFILE_RUNTIMES",
    "PROFILE_PRECISIONS",
    "PROFILE_DEVICES",
    "ENGINE_BATCHES",
    "parse_batches",
    "ProfileConfig",
]

PROFILE_RUNTIMES = ("default", "onnxruntime", "openvino")
"""Runtimes a profile models: a CPU engine, or ``default`` (the engine the profile measures fastest at the batch)."""
PROFILE_PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16")
"""Precisions a profile models (int8 needs calibration images and is not profiled)."""
PROFILE_DEVICES = ("cpu",)
"""Devices a profile measures."""
ENGINE_BATCHES = (1, 2, 4, 8, 16, 32)
"""Batch sizes of the engine table (which engine is fastest), by default."""


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,8,32"`` as ``(1, 8, 32)``; ``"none"`` as ``()``; a one-line ``InvalidValue`` otherwise."""
    if text.strip().lower() == "none":
        return ()
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InvalidValue(f"--engine-batches must be comma-separated integers or none, got {text!r}") from None
    _check_batches(values)
    return values


def _check_batches(values: tuple[int, ...]) -> None:
    if len(values) > 16 or any(isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= 1024 for b in values):
        raise InvalidValue(f"--engine-batches must be at most 16 integers in [1, 1024], got {values!r}"[:200])


@dataclass(frozen=True, kw_only=True)
class ProfileConfig:
    """Every setting of ``effnet profile``."""

    device: str = setting("cpu", "device to profile", choices=PROFILE_DEVICES)
    runtime: str = setting(
        "default",
        "engine to model: onnxruntime, openvino, or default (the one this profile measures fastest at --batch, "
        "which is what --runtime default then runs)",
        choices=PROFILE_RUNTIMES,
    )
    precision: Precision = setting(
        DEFAULT_PRECISION, "precision (bf16: native hardware bf16 only)", choices=PROFILE_PRECISIONS
    )
    batch: int = setting(1, "batch size the latency model predicts", limits=Range(1, 1024))
    threads: int | None = setting(
        None, "engine threads (default: torch's, the CPUs this process may use)", limits=Range(1, 4096)
    )
    blocks: int = setting(120, "sampled blocks to measure (more: a better fit, a longer run)", limits=Range(40, 5000))
    networks: int = setting(
        12, "small whole networks to measure (they fix the cost of a call and of reading weights)", limits=Range(3, 500)
    )
    engine_batches: tuple[int, ...] = setting(
        ENGINE_BATCHES,
        "comma-separated batch sizes of the engine table (which CPU engine is fastest at each; none: no table)",
        parse=parse_batches,
    )
    seed: int = setting(0, "seed of the sampled blocks and networks", limits=Range(0, 2**31 - 1))
    output: str | None = setting(
        None,
        "profile file to write (default: $EFFNET_PROFILES or ~/.cache/effnet/profiles/<machine>/<runtime>-<precision>-"
        "b<batch>.json, where --runtime default and effnet info --profile find it)",
    )
    json: bool = setting(False, "print the profile's summary as JSON")

    def __post_init__(self) -> None:
        check_fields(self)
        _check_batches(self.engine_batches)
