"""Training configuration: every value of a run in one frozen dataclass, and the paper/finetune recipes.

Recipe-dependent fields default to ``None`` and are filled by :func:`resolve_recipe` from :data:`RECIPES`, so a
run's ``config.json`` always holds concrete values. ``lr`` is the LR per 256 images: the peak LR of a run is
``lr * batch_size / 256`` where ``batch_size`` is the global batch (all processes together).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from effnet.specs import require_known_fields
from effnet.training.data import AUGMENTS, Augment
from effnet.training.optim import OPTIMIZERS, SCHEDULES

__all__ = ["TrainConfig", "RECIPES", "AMP_MODES", "resolve_recipe", "resolve_speed", "peak_lr", "SCHEDULE_FIELDS"]

AMP_MODES = ("auto", "none", "bf16", "fp16")

RECIPES: dict[str, dict[str, Any]] = {
    # Tan & Le 2019, section 5.2, and the reference TPU implementation's defaults.
    "paper": {
        "opt": "rmsprop_tf", "lr": 0.016, "momentum": 0.9, "rmsprop_decay": 0.9, "opt_eps": 1e-3,
        "weight_decay": 1e-5, "schedule": "step", "warmup_epochs": 5.0, "decay_rate": 0.97, "decay_epochs": 2.4,
        "label_smoothing": 0.1, "ema_decay": 0.9999, "bn_momentum": 0.01, "body_lr_scale": 1.0,
        "augment": "autoaugment", "new_head": False,
    },
    # Transfer learning: SGD (or AdamW) with cosine decay, a fresh classifier and a 10x lower LR on the body.
    "finetune": {
        "opt": "sgd", "lr": 0.05, "momentum": 0.9, "rmsprop_decay": 0.9, "opt_eps": None,
        "weight_decay": 1e-4, "schedule": "cosine", "warmup_epochs": 1.0, "decay_rate": 0.97, "decay_epochs": 2.4,
        "label_smoothing": 0.1, "ema_decay": 0.999, "bn_momentum": 0.01, "body_lr_scale": 0.1,
        "augment": "autoaugment", "new_head": True,
    },
}  # fmt: skip
"""Values each recipe gives to the fields left ``None``."""

_ADAMW_DEFAULTS = {"lr": 1e-3, "weight_decay": 0.05}

SCHEDULE_FIELDS = (
    "data", "model", "width", "depth", "resolution", "stem_stride", "spec_file", "weights", "epochs", "batch_size",
    "train_limit", "val_limit", "limit_seed", "seed", "in_chans", "recipe", "opt", "lr", "momentum", "rmsprop_decay",
    "opt_eps", "weight_decay", "schedule", "warmup_epochs", "decay_rate", "decay_epochs", "min_lr_ratio",
    "label_smoothing", "ema_decay", "ema_warmup", "dropout", "drop_path", "bn_momentum", "body_lr_scale", "new_head",
    "freeze_bn", "grad_clip", "augment", "randaugment_n", "randaugment_m", "crop_scale_min", "hflip", "random_crop",
    "crop_pct", "amp",
)  # fmt: skip
"""Fields a resumed run must share with its checkpoint (they change the computation, not just its speed)."""


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (one field per ``effnet train`` flag); see the CLI help for each."""

    data: str = "fashion-mnist"
    model: str = "efficientnet_b0"
    width: float = 1.0
    depth: float = 1.0
    resolution: int | None = None
    stem_stride: int | None = None
    spec_file: str | None = None
    weights: str | None = None
    epochs: int = 10
    batch_size: int = 128
    train_limit: int | None = None
    val_limit: int | None = None
    limit_seed: int = 0
    seed: int = 0
    output: str = "runs/train"
    resume: bool = False
    data_root: str | None = None
    download: bool = False
    in_chans: int | None = None
    recipe: str = "paper"
    opt: str | None = None
    lr: float | None = None
    momentum: float | None = None
    rmsprop_decay: float | None = None
    opt_eps: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    warmup_epochs: float | None = None
    decay_rate: float | None = None
    decay_epochs: float | None = None
    min_lr_ratio: float = 0.0
    label_smoothing: float | None = None
    ema_decay: float | None = None
    ema_warmup: bool = True
    dropout: float | None = None
    drop_path: float | None = None
    bn_momentum: float | None = None
    body_lr_scale: float | None = None
    new_head: bool | None = None
    freeze_bn: bool = False
    grad_clip: float | None = None
    augment: str | None = None
    randaugment_n: int = Augment.randaugment_n
    randaugment_m: int = Augment.randaugment_m
    crop_scale_min: float = Augment.crop_scale_min
    hflip: float = Augment.hflip
    random_crop: bool = Augment.random_crop
    crop_pct: float = 0.875
    amp: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    grad_checkpointing: bool = False
    lean_activations: bool = True
    workers: int | None = None
    pin_memory: bool | None = None
    sync_bn: bool = False
    tensorboard: bool = False
    device: str = "auto"
    deterministic: bool = False
    threads: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    def augmentation(self) -> Augment:
        """The training augmentation these settings describe (``augment`` None: no policy)."""
        return Augment(self.augment or "none", self.randaugment_n, self.randaugment_m, self.crop_scale_min, self.hflip,
                       self.random_crop)  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict`; unknown keys are a ``ValueError``."""
        require_known_fields(cls, data, "unknown TrainConfig field(s)")
        return cls(**data)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def resolve_recipe(config: TrainConfig) -> TrainConfig:
    """Fill every ``None`` recipe field from :data:`RECIPES` and validate; returns a new config."""
    if config.recipe not in RECIPES:
        raise ValueError(f"--recipe must be one of {', '.join(RECIPES)}; got {config.recipe!r}")
    defaults = dict(RECIPES[config.recipe])
    if (config.opt or defaults["opt"]) == "adamw":
        defaults.update(_ADAMW_DEFAULTS)
    changes = {k: v for k, v in defaults.items() if getattr(config, k) is None}
    c = dataclasses.replace(config, **changes)
    _check(c.opt in OPTIMIZERS, f"--opt must be one of {', '.join(OPTIMIZERS)}; got {c.opt!r}")
    _check(c.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}; got {c.schedule!r}")
    _check(c.augment in AUGMENTS, f"--augment must be one of {', '.join(AUGMENTS)}; got {c.augment!r}")
    c.augmentation()  # validates --crop-scale-min and --hflip (ValueError saying which)
    _check(c.amp in AMP_MODES, f"--amp must be one of {', '.join(AMP_MODES)}; got {c.amp!r}")
    _check(isinstance(c.epochs, int) and c.epochs >= 1, f"--epochs must be an integer >= 1, got {c.epochs}")
    _check(isinstance(c.batch_size, int) and c.batch_size >= 2,
           f"--batch-size must be an integer >= 2 (BatchNorm trains on 2+ images), got {c.batch_size}")
    for name in ("train_limit", "val_limit", "resolution", "threads", "stem_stride"):
        value = getattr(c, name)
        _check(value is None or value >= 1, f"--{name.replace('_', '-')} must be >= 1, got {value}")
    _check(c.width > 0 and c.depth > 0, f"--width and --depth must be positive, got {c.width}, {c.depth}")
    _check(c.lr is not None and c.lr > 0 and math.isfinite(c.lr), f"--lr must be a positive number, got {c.lr}")
    _check(c.warmup_epochs is not None and c.warmup_epochs >= 0, "--warmup-epochs must be >= 0")
    _check(c.label_smoothing is not None and 0 <= c.label_smoothing < 1, "--label-smoothing must be in [0, 1)")
    _check(c.ema_decay is not None and 0 <= c.ema_decay < 1, "--ema-decay must be in [0, 1) (0 disables EMA)")
    _check(c.body_lr_scale is not None and c.body_lr_scale >= 0, "--body-lr-scale must be >= 0")
    _check(c.weight_decay is not None and c.weight_decay >= 0, "--weight-decay must be >= 0")
    _check(c.workers is None or c.workers >= 0, f"--workers must be >= 0, got {c.workers}")
    _check(c.in_chans in (None, 1, 3), f"--in-chans must be 1 or 3, got {c.in_chans}")
    _check(c.grad_clip is None or c.grad_clip > 0, "--grad-clip must be positive")
    _check(c.device == "auto" or c.device.split(":")[0] in ("cpu", "cuda", "mps"),
           f"--device must be auto, cpu, cuda[:N] or mps; got {c.device!r}")  # fmt: skip
    return c


def resolve_speed(config: TrainConfig, device_type: str, bf16_supported: bool = False) -> TrainConfig:
    """Fill ``amp="auto"`` and ``channels_last=None`` for the device the run trains on; returns a new config.

    CPU: channels_last on (B0 at batch 16: 1.34-1.49x torchvision eager's images/s at 0.82-0.87x its peak memory
    over six runs, ``benchmarks/RESULTS.md``), autocast off (bf16 measured no faster without AMX). CUDA: channels_last
    and bf16 autocast (fp16 with a loss scaler where bf16 is unsupported), the layout and precision tensor cores
    are built for. Other devices (MPS): both off. Explicit values are kept.
    """
    amp = config.amp
    if amp == "auto":
        amp = ("bf16" if bf16_supported else "fp16") if device_type == "cuda" else "none"
    channels_last = config.channels_last
    if channels_last is None:
        channels_last = device_type in ("cpu", "cuda")
    return dataclasses.replace(config, amp=amp, channels_last=channels_last)


def peak_lr(config: TrainConfig) -> float:
    """The LR reached after warmup: ``lr`` per 256 images scaled linearly to the global batch."""
    if config.lr is None:
        raise ValueError("peak_lr needs a resolved config (see resolve_recipe)")
    return config.lr * config.batch_size / 256
