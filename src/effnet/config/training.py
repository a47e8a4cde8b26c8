"""Every setting of ``effnet train`` (torch-free): its default, type, allowed values, range, help and flag group.

:class:`TrainConfig` is the one source: ``effnet train`` builds each of its flags from a field here (name, type,
choices, default, help), and the trainer reads nothing else. Recipe fields default to ``None`` and are filled by
:func:`resolve_recipe` from :data:`RECIPES`; ``--recipe auto`` (the default) takes the paper's recipe only when the
run is long enough for it (:data:`PAPER_MIN_EPOCHS`), otherwise the short-schedule recipe. ``lr`` is the LR per
256 images: the peak LR of a run is ``lr * batch_size / 256`` where ``batch_size`` is the global batch.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from effnet.architectures import get_spec
from effnet.errors import InvalidValue
from effnet.limits import MAX_RESOLUTION, MIN_RESOLUTION
from effnet.specs import require_known_fields

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "AUGMENTS",
    "AMP_MODES",
    "RECIPES",
    "RECIPE_OPTIMIZER_VALUES",
    "RECIPE_CHOICES",
    "PAPER_MIN_EPOCHS",
    "GROUPS",
    "SCHEDULE_FIELDS",
    "Augment",
    "TrainConfig",
    "check_fields",
    "flag_name",
    "field_type",
    "recipe_value",
    "choose_recipe",
    "recipe_warning",
    "resolve_recipe",
    "resolve_speed",
    "peak_lr",
    "MAX_PROGRESSIVE_STAGES",
    "MIN_RESOLUTION_FRACTION",
    "PROGRESSIVE_RANGES",
    "Stage",
    "parse_range",
    "default_min_resolution",
    "progressive_stages",
    "stage_for_epoch",
]

OPTIMIZERS = ("rmsprop_tf", "rmsprop", "sgd", "adamw")
"""Optimizer names (``effnet.training.optim.build_optimizer``)."""
SCHEDULES = ("step", "cosine", "constant")
"""LR schedules after the warm-up (``effnet.training.optim.LRSchedule``)."""
AUGMENTS = ("autoaugment", "randaugment", "none")
"""Augmentation policies (``autoaugment`` is the ImageNet policy of the paper)."""
AMP_MODES = ("auto", "none", "bf16", "fp16")
"""Autocast modes; ``auto`` is resolved per device by :func:`resolve_speed`."""

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
MAX_PROGRESSIVE_STAGES = 1000
"""Most stages of ``--progressive`` (a stage lasts at least one epoch, so ``--epochs`` bounds it further)."""
MIN_RESOLUTION_FRACTION = 128 / 300
"""Default first-stage size as a fraction of the final one: EfficientNetV2-S trains from 128 to 300 px (Table 6)."""
PROGRESSIVE_RANGES: dict[str, tuple[float, float, bool]] = {
    "dropout_range": (0.0, 0.99, False),
    "randaugment_range": (0.0, 30.0, True),
    "mixup_range": (0.0, 10.0, False),
}
"""Per ``--*-range`` field: the smallest and largest value it accepts and whether its values are integers."""
"""Shortest run ``--recipe auto`` gives the paper's recipe: its 5-epoch warm-up is then at most a tenth of it."""

GROUPS = (
    ("data", "data and model"),
    ("run", "run"),
    ("recipe", "recipe (unset flags take the recipe's value)"),
    ("augment", "augmentation"),
    ("progressive", "progressive learning (EfficientNetV2, Tan & Le 2021, section 4.2, Algorithm 1)"),
    ("speed", "speed"),
)
"""Flag groups of ``effnet train --help`` (key, title), in order."""


def _f(
    default: Any,
    help: str,
    group: str,
    *,
    choices: tuple[Any, ...] | None = None,
    limits: str | None = None,
    flag: str | None = None,
    resume_check: bool | None = None,
    optional_value: bool = False,
    metavar: str | None = None,
) -> Any:
    """A field with its metadata: ``limits`` like ``"(0, 1]"``; ``resume_check`` (default: every group but speed)
    says a resumed run must share the value with its checkpoint; ``optional_value``: ``--flag`` alone means true;
    ``metavar``: the value's name in ``--help`` (default: argparse's)."""
    meta = {
        "help": help,
        "group": group,
        "choices": choices,
        "limits": limits,
        "flag": flag,
        "resume_check": group != "speed" if resume_check is None else resume_check,
        "optional_value": optional_value,
        "metavar": metavar,
    }
    return field(default=default, metadata=meta)


_LIMITS = re.compile(r"^([\[(])\s*([^,]+?)\s*,\s*([^\]\)]+?)\s*([\])])$")


def _limit_error(name: str, value: Any, limits: str) -> str | None:
    match = _LIMITS.match(limits)
    if match is None:
        raise ValueError(f"{name}: malformed limits {limits!r}")
    low_bracket, low, high, high_bracket = match.groups()
    lo, hi = float(low), float(high)
    ok = (value >= lo if low_bracket == "[" else value > lo) and (value <= hi if high_bracket == "]" else value < hi)
    accepted = f"{'>=' if low_bracket == '[' else '>'} {low}" if math.isinf(hi) else f"in {limits}"
    return None if ok else f"{name} must be {accepted}, got {value!r}"


def _type_error(name: str, value: Any, kind: type) -> str | None:
    if kind is bool:
        return None if isinstance(value, bool) else f"{name} must be true or false, got {value!r}"
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"{name} must be an integer, got {value!r}"
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else f"{name} must be a finite number, got {value!r}"
    return None if isinstance(value, str) else f"{name} must be a string, got {value!r}"


def check_fields(obj: Any, name: Any = None) -> None:
    """Check every field of the dataclass ``obj`` against its type, ``choices`` and ``limits`` metadata.

    Raises ``ValueError`` naming the first bad value (as ``--flag`` by default) and what is accepted; ``None`` is
    accepted where the field's type allows it. Integers given for float fields are stored as floats.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, label = getattr(obj, f.name), name(f) if name else flag_name(f)
        if value is None and type(None) in typing.get_args(hints[f.name]):
            continue
        kind = field_type(f, hints)
        message = _type_error(label, value, kind)
        choices, limits = f.metadata.get("choices"), f.metadata.get("limits")
        if message is None and choices is not None and value not in choices:
            message = f"{label} must be one of {', '.join(map(str, choices))}; got {value!r}"
        if message is None and limits is not None:
            message = _limit_error(label, value, limits)
        if message is not None:
            raise ValueError(message)
        if kind is float and isinstance(value, int):
            object.__setattr__(obj, f.name, float(value))


def flag_name(f: dataclasses.Field[Any]) -> str:
    """The command-line flag of a :class:`TrainConfig` field (``spec_file`` -> ``--spec``)."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def field_type(f: dataclasses.Field[Any], hints: dict[str, Any] | None = None) -> type:
    """The value type of a field (``int | None`` -> ``int``): one of bool, int, float, str."""
    hint = (hints or typing.get_type_hints(TrainConfig))[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args[0]


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation: the paper's random-resized crop, flip and AutoAugment, or what is asked for.

    ``policy`` is one of :data:`AUGMENTS`; ``randaugment_n``/``randaugment_m`` apply to ``randaugment``.
    ``Augment("none", random_crop=False, hflip=0.0)`` is deterministic (for tests comparing runs sample by sample).
    """

    policy: str = _f("autoaugment", "policy after crop/flip", "augment", choices=AUGMENTS, flag="--augment")
    randaugment_n: int = _f(2, "RandAugment number of ops", "augment", limits="[0, 16]")
    randaugment_m: int = _f(9, "RandAugment magnitude", "augment", limits="[0, 30]")
    crop_scale_min: float = _f(0.08, "random-resized-crop minimum area", "augment", limits="(0, 1]")
    hflip: float = _f(0.5, "horizontal flip probability", "augment", limits="[0, 1]")
    random_crop: bool = _f(True, "random-resized-crop (false: resize + center crop)", "augment")

    def __post_init__(self) -> None:
        check_fields(self, lambda f: _AUGMENT_LABELS.get(f.name, f.name))


_AUGMENT_LABELS = {"policy": "augment", "crop_scale_min": "crop scale minimum", "hflip": "horizontal flip probability"}


def _aug(name: str) -> Any:
    """A :class:`TrainConfig` field that takes default, help and limits from the :class:`Augment` field ``name``."""
    source = Augment.__dataclass_fields__[name]
    return _f(source.default, source.metadata["help"], "augment", limits=source.metadata["limits"])


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run, one field per ``effnet train`` flag (help: the field's metadata).

    Values are checked on construction (``ValueError`` naming the flag and what it accepts).
    """

    data: str = _f(
        "fashion-mnist", "fashion-mnist, cifar10, cifar100, or a folder with train/ and val/ class folders", "data"
    )
    data_root: str | None = _f(
        None,
        "folder searched first for named datasets (then $EFFNET_DATA, /usr/share/datasets, torchvision's cache)",
        "data",
        resume_check=False,
    )
    download: bool = _f(False, "let torchvision download a named dataset if missing", "data", resume_check=False)
    model: str = _f("efficientnet_b0", "model name", "data")
    width: float = _f(1.0, "multiply the model's width coefficient", "data", limits="(0, inf)")
    depth: float = _f(1.0, "multiply the model's depth coefficient", "data", limits="(0, inf)")
    resolution: int | None = _f(None, "input size (default: the model's)", "data", limits="[1, inf)")
    stem_stride: int | None = _f(
        None,
        "stride of the stem conv (default: the model's, 2; 1 keeps detail on 32x32 inputs)",
        "data",
        limits="[1, inf)",
    )
    spec_file: str | None = _f(None, "NetworkSpec JSON file to train instead of --model", "data", flag="--spec")
    weights: str | None = _f(
        None,
        "initial weights to fine-tune from: .safetensors, a checkpoint, or a hub "
        "reference (hf-hub:timm/<repo>, torchvision:<Enum>[.<MEMBER>])",
        "data",
    )
    in_chans: int | None = _f(
        None,
        "input channels (default: the data's, or the --weights file's: gray repeated to RGB)",
        "data",
        choices=(1, 3),
    )
    train_limit: int | None = _f(None, "train on a fixed random subset of N images", "data", limits="[1, inf)")
    val_limit: int | None = _f(None, "evaluate on a fixed random subset of N images", "data", limits="[1, inf)")
    limit_seed: int = _f(0, "seed choosing the --train/val-limit subsets", "data", limits="[0, inf)")
    epochs: int = _f(10, "number of epochs", "run", limits="[1, inf)")
    batch_size: int = _f(
        128, "global batch size (all processes together; BatchNorm trains on 2+ images)", "run", limits="[2, inf)"
    )
    seed: int = _f(0, "random seed", "run", limits="[0, inf)")
    output: str = _f(
        "runs/train",
        "run directory (config, metrics, checkpoint, weights, plots; locked while a run uses it)",
        "run",
        resume_check=False,
    )
    resume: bool = _f(False, "continue the run in --output from its checkpoint", "run", resume_check=False)
    recipe: str = _f(
        "auto",
        f"recipe: auto = paper for runs of {PAPER_MIN_EPOCHS}+ epochs, else short",
        "recipe",
        choices=RECIPE_CHOICES,
    )
    opt: str | None = _f(None, "optimizer", "recipe", choices=OPTIMIZERS)
    lr: float | None = _f(None, "LR per 256 images (scaled by batch/256)", "recipe", limits="(0, inf)")
    momentum: float | None = _f(None, "momentum", "recipe", limits="[0, 1)")
    rmsprop_decay: float | None = _f(None, "RMSProp decay", "recipe", limits="[0, 1)")
    opt_eps: float | None = _f(
        None, "optimizer epsilon (RMSProp: inside the sqrt; unset: the optimizer's own)", "recipe", limits="(0, inf)"
    )
    weight_decay: float | None = _f(None, "L2 on conv/linear weights", "recipe", limits="[0, inf)")
    schedule: str | None = _f(
        None, "LR schedule after warmup (step = staircase exponential decay)", "recipe", choices=SCHEDULES
    )
    warmup_epochs: float | None = _f(None, "linear warmup epochs", "recipe", limits="[0, inf)")
    decay_rate: float | None = _f(None, "step schedule factor", "recipe", limits="(0, 1]")
    decay_epochs: float | None = _f(None, "step schedule period in epochs", "recipe", limits="(0, inf)")
    min_lr_ratio: float = _f(0.0, "cosine floor as a fraction of the peak", "recipe", limits="[0, 1]")
    label_smoothing: float | None = _f(None, "label smoothing", "recipe", limits="[0, 1)")
    ema_decay: float | None = _f(None, "weight EMA decay, 0 = off", "recipe", limits="[0, 1)")
    ema_warmup: bool = _f(True, "use min(decay, (1+n)/(10+n)) as TF does", "recipe")
    dropout: float | None = _f(None, "dropout before the classifier (default: the model's)", "recipe", limits="[0, 1)")
    drop_path: float | None = _f(None, "stochastic depth rate (default: the model's)", "recipe", limits="[0, 1)")
    bn_momentum: float | None = _f(None, "BatchNorm momentum, torch convention", "recipe", limits="(0, 1]")
    body_lr_scale: float | None = _f(None, "LR factor for all but the classifier", "recipe", limits="[0, inf)")
    new_head: bool | None = _f(None, "fresh classifier with --weights", "recipe")
    freeze_bn: bool = _f(False, "keep BatchNorm in eval mode while training", "recipe")
    grad_clip: float | None = _f(None, "clip the gradient norm to this value", "recipe", limits="(0, inf)")
    augment: str | None = _f(
        None, "policy after crop/flip (autoaugment: the ImageNet policy)", "augment", choices=AUGMENTS
    )
    randaugment_n: int = _aug("randaugment_n")
    randaugment_m: int = _aug("randaugment_m")
    crop_scale_min: float = _aug("crop_scale_min")
    hflip: float = _aug("hflip")
    random_crop: bool | None = _f(
        None, "random-resized crop (false: the evaluation's resize + center crop; default: the recipe's)", "augment"
    )
    crop_pct: float = _f(0.875, "evaluation crop fraction", "augment", limits="(0, 1]")
    progressive: int = _f(
        0,
        "split the epochs into K equal stages of rising image size and regularization (0 or 1: "
        "off; forces --augment randaugment)",
        "progressive",
        limits=f"[0, {MAX_PROGRESSIVE_STAGES}]",
        metavar="K",
    )
    min_resolution: int | None = _f(
        None,
        "image size of the first stage (default: 128/300 of the final size, "
        f"rounded to a multiple of 8, >= {MIN_RESOLUTION})",
        "progressive",
        limits=f"[{MIN_RESOLUTION}, {MAX_RESOLUTION}]",
        metavar="S0",
    )
    dropout_range: str = _f(
        "0.1,0.3", "classifier dropout from the first stage to the last (V2-S, Table 6)", "progressive", metavar="LO,HI"
    )
    randaugment_range: str = _f(
        "5,15", "RandAugment magnitude, integers in [0, 30] (V2-S, Table 6)", "progressive", metavar="LO,HI"
    )
    mixup_range: str = _f("0,0", "mixup alpha, 0 = no mixup (V2-S, Table 6)", "progressive", metavar="LO,HI")
    amp: str = _f(
        "auto",
        "autocast; fp16 uses a loss scaler (auto: bf16 on CUDA, none on CPU, where bf16 is no faster)",
        "speed",
        choices=AMP_MODES,
        resume_check=True,
    )
    channels_last: bool | None = _f(
        None, "channels_last memory format (default: true on CPU and CUDA)", "speed", optional_value=True
    )
    compile: bool = _f(False, "torch.compile the model", "speed")
    grad_checkpointing: bool = _f(False, "recompute stage activations in backward", "speed")
    lean_activations: bool = _f(True, "memory-lean BN+activation on CPU: -28% saved activations, 0-10% slower", "speed")
    workers: int | None = _f(None, "data loader workers (default: 0 on CPU, 8 on GPU)", "speed", limits="[0, inf)")
    pin_memory: bool | None = _f(None, "pinned host memory (default: on GPU)", "speed")
    sync_bn: bool = _f(False, "SyncBatchNorm across processes (GPU only)", "speed", resume_check=True)
    tensorboard: bool = _f(False, "also log to OUTPUT/tensorboard", "speed")
    device: str = _f("auto", "auto, cpu, cuda[:N] or mps (auto: cuda when available, else cpu)", "speed")
    deterministic: bool = _f(False, "torch.use_deterministic_algorithms for the run", "speed")
    threads: int | None = _f(None, "torch CPU threads for the run", "speed", limits="[1, inf)")

    def __post_init__(self) -> None:
        check_fields(self)
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ValueError(f"--device must be auto, cpu, cuda[:N] or mps; got {self.device!r}")
        _check_progressive(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    def augmentation(self) -> Augment:
        """The training augmentation these settings describe (``augment`` None: no policy)."""
        return Augment(
            self.augment or "none",
            self.randaugment_n,
            self.randaugment_m,
            self.crop_scale_min,
            self.hflip,
            self.random_crop is not False,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict`; unknown keys are a ``ValueError``."""
        require_known_fields(cls, data, "unknown TrainConfig field(s)")
        return cls(**data)


SCHEDULE_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["resume_check"])
"""Fields a resumed run must share with its checkpoint (they change the computation, not just its speed)."""


def recipe_value(recipe: str, name: str, opt: str | None = None) -> Any:
    """The value recipe ``recipe`` gives the unset field ``name`` when the optimizer is ``opt`` (default: its own)."""
    values = dict(RECIPES[recipe])
    values.update(RECIPE_OPTIMIZER_VALUES[recipe].get(opt or values["opt"], {}))
    return values[name]


def choose_recipe(config: TrainConfig) -> tuple[str, str]:
    """The recipe ``config.recipe`` stands for, and one line saying which and why."""
    if config.recipe != "auto":
        return config.recipe, f"recipe {config.recipe} (--recipe {config.recipe})"
    if config.epochs >= PAPER_MIN_EPOCHS:
        return "paper", (
            f"recipe auto -> paper: {config.epochs} epochs >= {PAPER_MIN_EPOCHS}, long enough for its "
            f"{_PAPER['warmup_epochs']:g}-epoch warm-up and slow BN/EMA averages"
        )
    s = RECIPES["short"]
    return "short", (
        f"recipe auto -> short ({s['opt']}, {s['schedule']}, {s['warmup_epochs']:g}-epoch warm-up, BN "
        f"momentum {s['bn_momentum']:g}, no augmentation, dropout or stochastic depth): "
        f"{config.epochs} epochs < {PAPER_MIN_EPOCHS}, too short for the "
        f"paper's {_PAPER['warmup_epochs']:g}-epoch warm-up; --recipe paper forces it"
    )


def recipe_warning(config: TrainConfig) -> str | None:
    """A warning for a resolved config whose warm-up outlasts the run (the LR never reaches its peak), else None."""
    if config.warmup_epochs is not None and config.warmup_epochs > config.epochs:
        return (
            f"--recipe {config.recipe}: the {config.warmup_epochs:g}-epoch warm-up is longer than the "
            f"{config.epochs}-epoch run, so the LR never reaches its peak (--recipe auto or --warmup-epochs "
            "fit it to the run)"
        )
    return None


def resolve_recipe(config: TrainConfig) -> TrainConfig:
    """Fill every ``None`` recipe field from the chosen recipe; ``recipe`` becomes its name (never ``auto``)."""
    name, _ = choose_recipe(config)
    values = {k: recipe_value(name, k, config.opt) for k in RECIPES[name]}
    changes = {k: v for k, v in values.items() if getattr(config, k) is None}
    if config.progressive > 1:
        changes.pop("dropout", None)  # progressive learning sets the dropout per stage (--dropout-range)
    if config.progressive > 1 and config.augment is None:
        changes["augment"] = "randaugment"  # progressive learning grows RandAugment's magnitude
    return dataclasses.replace(config, recipe=name, **changes)


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


# --- progressive learning (EfficientNetV2, Tan & Le 2021, section 4.2, Algorithm 1) -------------------------------


@dataclass(frozen=True)
class Stage:
    """One stage of progressive learning: epochs ``first_epoch``..``last_epoch`` (1-based, inclusive) train at
    image size ``resolution`` with classifier dropout ``dropout``, RandAugment magnitude ``randaugment_m`` and
    mixup alpha ``mixup_alpha`` (0: no mixup)."""

    first_epoch: int
    last_epoch: int
    resolution: int
    dropout: float
    randaugment_m: int
    mixup_alpha: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return dataclasses.asdict(self)


def parse_range(text: Any, flag: str, low: float, high: float, integer: bool = False) -> tuple[float, float]:
    """``"LO,HI"`` (or one number ``"X"``, meaning ``X,X``) as two numbers in ``[low, high]``; integers if asked.

    Raises :class:`~effnet.errors.InvalidValue` naming ``flag``, the text and what is accepted.
    """
    kind = "integers" if integer else "numbers"
    accepted = f"LO,HI with {kind} in [{low:g}, {high:g}]"
    parts = text.split(",") if isinstance(text, str) and len(text) <= 100 else []
    values: list[float] = []
    for part in parts if len(parts) in (1, 2) else []:
        try:
            number = int(part) if integer else float(part)
        except ValueError:
            break
        if not (math.isfinite(number) and low <= number <= high):
            break
        values.append(float(number))
    if not values or len(values) != len(parts):
        raise InvalidValue(f"{flag} must be {accepted}, got {text!r}")
    return values[0], values[-1]


def _round8(value: float) -> int:
    return int(math.floor(value / 8 + 0.5)) * 8


def default_min_resolution(final: int) -> int:
    """The first-stage size when ``--min-resolution`` is unset: :data:`MIN_RESOLUTION_FRACTION` of ``final``,
    rounded to a multiple of 8, at least :data:`~effnet.limits.MIN_RESOLUTION` and at most ``final``."""
    return min(final, max(MIN_RESOLUTION, _round8(final * MIN_RESOLUTION_FRACTION)))


def _lerp(low: float, high: float, t: float) -> float:
    """``low`` + (``high`` - ``low``) ``t``: exactly ``high`` at ``t`` = 1, never outside [low, high]."""
    if t >= 1:
        return high
    value = low + (high - low) * t
    return min(max(value, min(low, high)), max(low, high))


def _ranges(config: TrainConfig) -> dict[str, tuple[float, float]]:
    return {
        name: parse_range(getattr(config, name), "--" + name.replace("_", "-"), lo, hi, integer)
        for name, (lo, hi, integer) in PROGRESSIVE_RANGES.items()
    }


def _check_progressive(config: TrainConfig) -> None:
    """Cross-field checks of the progressive-learning flags (each a one-line :class:`InvalidValue`)."""
    _ranges(config)
    k = config.progressive
    if k <= 1:
        return
    if k > config.epochs:
        raise InvalidValue(f"--progressive {k} needs at least {k} epochs (one per stage), got --epochs {config.epochs}")
    if config.augment not in (None, "randaugment"):
        raise InvalidValue(
            f"--progressive trains with RandAugment (its magnitude grows over --randaugment-range), "
            f"not --augment {config.augment}; leave --augment unset or use randaugment"
        )
    if config.dropout is not None:
        raise InvalidValue(
            f"--progressive sets the dropout per stage from --dropout-range; drop --dropout {config.dropout:g}"
        )
    if (
        config.resolution is not None
        and config.min_resolution is not None
        and config.min_resolution > config.resolution
    ):
        raise InvalidValue(
            f"--min-resolution {config.min_resolution} is larger than the final --resolution {config.resolution}"
        )


def progressive_stages(config: TrainConfig, resolution: int | None = None) -> tuple[Stage, ...]:
    """The stages of ``--progressive K`` (empty when K <= 1), as Algorithm 1 of EfficientNetV2 defines them.

    The epochs are split into K near-equal consecutive stages covering each epoch once; in stage ``i`` (0-based)
    every value is ``first + (last - first) * i / (K - 1)``: the image size from ``--min-resolution`` (S0) to the
    final size ``resolution`` (default: ``--resolution``, else ``--model``'s), rounded to the nearest multiple of 8
    between the two ends (the ends are exact), and dropout, RandAugment magnitude (rounded to an integer) and
    mixup alpha over their ``--*-range``. Raises :class:`~effnet.errors.InvalidValue` for S0 > final size.
    """
    k, epochs = config.progressive, config.epochs
    if k <= 1:
        return ()
    if resolution is None and config.resolution is None and config.spec_file:
        raise InvalidValue("progressive_stages needs the final resolution of the --spec network (pass resolution=)")
    final = resolution or config.resolution or get_spec(config.model).resolution
    first = config.min_resolution or default_min_resolution(final)
    if first > final:
        raise InvalidValue(f"--min-resolution {first} is larger than the final resolution {final}")
    ranges = _ranges(config)
    stages = []
    for i in range(k):
        t = i / (k - 1)
        size = first if i == 0 else final if i == k - 1 else min(max(_round8(_lerp(first, final, t)), first), final)
        stages.append(
            Stage(
                first_epoch=i * epochs // k + 1,
                last_epoch=(i + 1) * epochs // k,
                resolution=size,
                dropout=_lerp(*ranges["dropout_range"], t),
                randaugment_m=round(_lerp(*ranges["randaugment_range"], t)),
                mixup_alpha=_lerp(*ranges["mixup_range"], t),
            )
        )
    return tuple(stages)


def stage_for_epoch(stages: tuple[Stage, ...], epoch: int) -> Stage | None:
    """The stage that trains 1-based ``epoch`` (None when ``stages`` is empty, i.e. progressive learning is off)."""
    for stage in stages:
        if stage.first_epoch <= epoch <= stage.last_epoch:
            return stage
    if stages:
        raise InvalidValue(f"epoch {epoch} is outside the progressive stages (1..{stages[-1].last_epoch})")
    return None
