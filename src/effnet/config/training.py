"""Every setting of ``effnet train`` (torch-free): its default, type, allowed values, range, help and flag group.

:class:`TrainConfig` is the one source: ``effnet train`` builds each of its flags from a field here (name, type,
choices, default, help), and the trainer reads nothing else. Recipe fields default to ``None`` and are filled by
:func:`resolve_recipe` from :data:`~effnet.config.recipes.RECIPES`; ``--recipe auto`` (the default) takes the
paper's recipe only when the run is long enough for it (:data:`~effnet.config.recipes.PAPER_MIN_EPOCHS`), otherwise
the short-schedule recipe. ``lr`` is the LR per 256 images: the peak LR of a run is ``lr * batch_size / 256`` where
``batch_size`` is the global batch. Progressive learning's stages: :mod:`effnet.config.progressive`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from effnet.config.augment import AUGMENTS, Augment
from effnet.config.fields import Range, check_fields, parse_range, setting
from effnet.config.recipes import PAPER_MIN_EPOCHS, RECIPE_CHOICES, RECIPES, recipe_value, unset_help
from effnet.errors import InvalidValue
from effnet.limits import MAX_RESOLUTION, MIN_RESOLUTION
from effnet.specs import require_known_fields

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "AMP_MODES",
    "ARTIFACTS",
    "DEFAULT_MODEL",
    "GROUPS",
    "MAX_PROGRESSIVE_STAGES",
    "PROGRESSIVE_RANGES",
    "SCHEDULE_FIELDS",
    "progressive_ranges",
    "TrainConfig",
    "choose_recipe",
    "recipe_warning",
    "resolve_recipe",
    "peak_lr",
]

OPTIMIZERS = ("rmsprop_tf", "rmsprop", "sgd", "adamw")
"""Optimizer names (``effnet.training.optim.build_optimizer``)."""
SCHEDULES = ("step", "cosine", "constant")
"""LR schedules after the warm-up (``effnet.training.optim.LRSchedule``)."""
DEFAULT_MODEL = "efficientnet_b0"
"""The network ``effnet train`` trains when neither ``--model``, ``--spec`` nor ``--weights`` names one."""
ARTIFACTS = ("all", "weights", "metrics")
"""What a run folder keeps at its end (``--artifacts``): ``all`` (checkpoint, best/last/EMA weights, summary,
curves.png), ``weights`` (config.json, metrics.jsonl, last.safetensors) or ``metrics`` (the two JSON files)."""
ARTIFACTS_HELP = (
    "what the run folder keeps at its end: all, weights (config, metrics, last weights) or metrics (config, metrics; "
    "the checkpoint is removed at the end but for all)"
)
AMP_MODES = ("auto", "none", "bf16", "fp16")
"""Autocast modes; ``auto`` is resolved per device by :func:`effnet.config.speed.resolve_speed`."""
MAX_PROGRESSIVE_STAGES = 1000
"""Most stages of ``--progressive`` (a stage lasts at least one epoch, so ``--epochs`` bounds it further)."""
PROGRESSIVE_RANGES: dict[str, tuple[float, float, bool]] = {
    "dropout_range": (0.0, 0.99, False),
    "randaugment_range": (0.0, 30.0, True),
    "mixup_range": (0.0, 10.0, False),
}
"""Per ``--*-range`` field: the smallest and largest value it accepts and whether its values are integers."""

GROUPS = (
    ("data", "data and model"),
    ("run", "run"),
    ("recipe", "recipe (unset flags take the recipe's value)"),
    ("augment", "augmentation"),
    ("progressive", "progressive learning (EfficientNetV2, Tan & Le 2021, section 4.2, Algorithm 1)"),
    ("speed", "speed"),
)
"""Flag groups of ``effnet train --help`` (key, title), in order."""


def _recipe(
    name: str, help: str, group: str, *, choices: tuple[Any, ...] | None = None, limits: Range | None = None
) -> Any:
    """A recipe field ``name``: ``None`` by default, filled by :func:`resolve_recipe`; its help says each recipe's
    value."""
    return setting(None, f"{help} {unset_help(name)}", group, choices=choices, limits=limits)


def _aug(name: str) -> Any:
    """A :class:`TrainConfig` field that takes default, help and limits from the :class:`Augment` field ``name``."""
    source = Augment.__dataclass_fields__[name]
    return setting(source.default, source.metadata["help"], "augment", limits=source.metadata["limits"])


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run, one field per ``effnet train`` flag (help: the field's metadata).

    Values are checked on construction (:class:`~effnet.errors.InvalidValue` naming the flag and what it accepts).
    """

    data: str = setting(
        "fashion-mnist", "fashion-mnist, cifar10, cifar100, or a folder with train/ and val/ class folders", "data"
    )
    data_root: str | None = setting(
        None,
        "folder searched first for named datasets (then $EFFNET_DATA, /usr/share/datasets, torchvision's cache)",
        "data",
        resume_check=False,
    )
    download: bool = setting(False, "let torchvision download a named dataset if missing", "data", resume_check=False)
    model: str | None = setting(None, "model name (default efficientnet_b0, or the network --weights holds)", "data")
    width: float | None = setting(None, "the model's width x this (default 1)", "data", limits=Range(0, low_open=True))
    depth: float | None = setting(None, "the model's depth x this (default 1)", "data", limits=Range(0, low_open=True))
    resolution: int | None = setting(None, "input size (default: the model's)", "data", limits=Range(1))
    stem_stride: int | None = setting(
        None, "stem conv stride (default: the model's, 2; 1 keeps detail on 32x32 inputs)", "data", limits=Range(1)
    )
    spec_file: str | None = setting(None, "NetworkSpec JSON file to train instead of --model", "data", flag="--spec")
    weights: str | None = setting(
        None,
        "weights to fine-tune, and their network (model flags must then describe it): .safetensors, a checkpoint, "
        "a Hub folder, or a hub reference (hf-hub:timm/<repo>, torchvision:<Enum>[.<MEMBER>], local-dir:<folder>)",
        "data",
    )
    allow_nonfinite: bool = setting(False, "load --weights holding NaN/Inf (debugging)", "data", resume_check=False)
    in_chans: int | None = setting(
        None,
        "input channels (default: the data's, or the --weights file's: gray repeated to RGB)",
        "data",
        choices=(1, 3),
    )
    train_limit: int | None = setting(None, "train on a fixed random subset of N images", "data", limits=Range(1))
    val_limit: int | None = setting(None, "evaluate on a fixed random subset of N images", "data", limits=Range(1))
    limit_seed: int = setting(0, "seed choosing the --train/val-limit subsets", "data", limits=Range(0))
    epochs: int = setting(10, "number of epochs", "run", limits=Range(1))
    batch_size: int = setting(
        128, "global batch size (all processes together; BatchNorm trains on 2+ images)", "run", limits=Range(2)
    )
    seed: int = setting(0, "random seed", "run", limits=Range(0))
    artifacts: str = setting("all", ARTIFACTS_HELP, "run", choices=ARTIFACTS, resume_check=False)
    output: str = setting(
        "runs/train",
        "run directory (config, metrics, checkpoint, weights, plots; locked while a run uses it)",
        "run",
        resume_check=False,
    )
    resume: bool = setting(False, "continue the run in --output from its checkpoint", "run", resume_check=False)
    overwrite: bool = setting(
        False, "start anew in an --output holding a run's results, removing them", "run", resume_check=False
    )
    recipe: str = setting(
        "auto",
        f"recipe: auto = paper for runs of {PAPER_MIN_EPOCHS}+ epochs, else short",
        "recipe",
        choices=RECIPE_CHOICES,
    )
    opt: str | None = _recipe("opt", "optimizer", "recipe", choices=OPTIMIZERS)
    lr: float | None = _recipe(
        "lr", "LR per 256 images (scaled by batch/256)", "recipe", limits=Range(0, low_open=True)
    )
    momentum: float | None = _recipe("momentum", "momentum", "recipe", limits=Range(0, 1, high_open=True))
    rmsprop_decay: float | None = _recipe(
        "rmsprop_decay", "RMSProp decay", "recipe", limits=Range(0, 1, high_open=True)
    )
    opt_eps: float | None = _recipe(
        "opt_eps",
        "optimizer epsilon (RMSProp: inside the sqrt; unset: the optimizer's own)",
        "recipe",
        limits=Range(0, low_open=True),
    )
    weight_decay: float | None = _recipe("weight_decay", "L2 on conv/linear weights", "recipe", limits=Range(0))
    schedule: str | None = _recipe(
        "schedule", "LR schedule after warmup (step = staircase exponential decay)", "recipe", choices=SCHEDULES
    )
    warmup_epochs: float | None = _recipe("warmup_epochs", "linear warmup epochs", "recipe", limits=Range(0))
    decay_rate: float | None = _recipe(
        "decay_rate", "step schedule factor", "recipe", limits=Range(0, 1, low_open=True)
    )
    decay_epochs: float | None = _recipe(
        "decay_epochs", "step schedule period in epochs", "recipe", limits=Range(0, low_open=True)
    )
    min_lr_ratio: float = setting(0.0, "cosine floor as a fraction of the peak", "recipe", limits=Range(0, 1))
    label_smoothing: float | None = _recipe(
        "label_smoothing", "label smoothing", "recipe", limits=Range(0, 1, high_open=True)
    )
    ema_decay: float | None = _recipe(
        "ema_decay", "weight EMA decay, 0 = off", "recipe", limits=Range(0, 1, high_open=True)
    )
    ema_warmup: bool = setting(True, "use min(decay, (1+n)/(10+n)) as TF does", "recipe")
    dropout: float | None = setting(
        None, "dropout before the classifier (default: the model's)", "recipe", limits=Range(0, 1, high_open=True)
    )
    drop_path: float | None = setting(
        None, "stochastic depth rate (default: the model's)", "recipe", limits=Range(0, 1, high_open=True)
    )
    bn_momentum: float | None = _recipe(
        "bn_momentum", "BatchNorm momentum, torch convention", "recipe", limits=Range(0, 1, low_open=True)
    )
    body_lr_scale: float | None = _recipe(
        "body_lr_scale", "LR factor for all but the classifier", "recipe", limits=Range(0)
    )
    new_head: bool | None = _recipe("new_head", "fresh classifier with --weights", "recipe")
    freeze_bn: bool = setting(False, "keep BatchNorm in eval mode while training", "recipe")
    grad_clip: float | None = setting(
        None, "clip the gradient norm to this value", "recipe", limits=Range(0, low_open=True)
    )
    augment: str | None = _recipe(
        "augment", "policy after crop/flip (autoaugment: the ImageNet policy)", "augment", choices=AUGMENTS
    )
    randaugment_n: int = _aug("randaugment_n")
    randaugment_m: int = _aug("randaugment_m")
    crop_scale_min: float = _aug("crop_scale_min")
    hflip: float = _aug("hflip")
    random_crop: bool | None = _recipe(
        "random_crop",
        "random-resized crop (false: the evaluation's resize + center crop; default: the recipe's)",
        "augment",
    )
    crop_pct: float = setting(0.875, "evaluation crop fraction", "augment", limits=Range(0, 1, low_open=True))
    progressive: int = setting(
        0,
        "split the epochs into K equal stages of rising image size and regularization (0 or 1: "
        "off; forces --augment randaugment)",
        "progressive",
        limits=Range(0, MAX_PROGRESSIVE_STAGES),
        metavar="K",
    )
    min_resolution: int | None = setting(
        None,
        "image size of the first stage (default: 128/300 of the final size, "
        f"rounded to a multiple of 8, >= {MIN_RESOLUTION})",
        "progressive",
        limits=Range(MIN_RESOLUTION, MAX_RESOLUTION),
        metavar="S0",
    )
    dropout_range: str = setting(
        "0.1,0.3", "classifier dropout from the first stage to the last (V2-S, Table 6)", "progressive", metavar="LO,HI"
    )
    randaugment_range: str = setting(
        "5,15", "RandAugment magnitude, integers in [0, 30] (V2-S, Table 6)", "progressive", metavar="LO,HI"
    )
    mixup_range: str = setting("0,0", "mixup alpha, 0 = no mixup (V2-S, Table 6)", "progressive", metavar="LO,HI")
    amp: str = setting(
        "auto",
        "autocast; fp16 uses a loss scaler (auto: bf16 on CUDA, none on CPU, where bf16 is no faster)",
        "speed",
        choices=AMP_MODES,
        resume_check=True,
    )
    channels_last: bool | None = setting(
        None, "channels_last memory format (default: true on CPU and CUDA)", "speed", optional_value=True
    )
    compile: bool = setting(False, "torch.compile the model", "speed")
    grad_checkpointing: bool = setting(False, "recompute stage activations in backward", "speed")
    lean_activations: bool = setting(
        True, "memory-lean BN+activation on CPU (fewer saved activations; benchmarks/RESULTS.md)", "speed"
    )
    workers: int | None = setting(None, "data loader workers (default: 0 on CPU, 8 on GPU)", "speed", limits=Range(0))
    pin_memory: bool | None = setting(None, "pinned host memory (default: on GPU)", "speed")
    sync_bn: bool = setting(False, "SyncBatchNorm across processes (GPU only)", "speed", resume_check=True)
    tensorboard: bool = setting(False, "also log to OUTPUT/tensorboard", "speed")
    device: str = setting("auto", "auto, cpu, cuda[:N] or mps (auto: cuda when available, else cpu)", "speed")
    deterministic: bool = setting(False, "torch.use_deterministic_algorithms for the run", "speed")
    threads: int | None = setting(None, "torch CPU threads for the run", "speed", limits=Range(1))
    max_memory: float | None = setting(
        None, "refuse a run estimated to need more GiB (default: free memory)", "speed", limits=Range(0, low_open=True)
    )

    def __post_init__(self) -> None:
        _check_train(self)

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
        """Rebuild from :meth:`to_dict`; unknown keys are an :class:`~effnet.errors.InvalidValue`."""
        require_known_fields(cls, data, "unknown TrainConfig field(s)")
        return cls(**data)


def _check_train(config: TrainConfig) -> None:
    """Every field's own check, then the rules between fields (device, resume vs overwrite, progressive)."""
    check_fields(config)
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", config.device):
        raise InvalidValue(f"--device must be auto, cpu, cuda[:N] or mps; got {config.device!r}")
    if config.resume and config.overwrite:
        raise InvalidValue("--resume continues the run in --output and --overwrite replaces it: give one")
    _check_progressive(config)


SCHEDULE_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(TrainConfig)
    if (f.metadata["group"] != "speed" if f.metadata["resume_check"] is None else f.metadata["resume_check"])
)
"""Fields a resumed run must share with its checkpoint (they change the computation, not just its speed): every
field but the speed group's, unless its ``resume_check`` says otherwise."""


def progressive_ranges(config: TrainConfig) -> dict[str, tuple[float, float]]:
    """The ``--*-range`` settings of ``config`` (:data:`PROGRESSIVE_RANGES`) as (first stage, last stage) values."""
    return {
        name: parse_range(getattr(config, name), "--" + name.replace("_", "-"), low, high, integer)
        for name, (low, high, integer) in PROGRESSIVE_RANGES.items()
    }


def _check_progressive(config: TrainConfig) -> None:
    """Cross-field checks of the progressive-learning flags (each a one-line :class:`InvalidValue`)."""
    progressive_ranges(config)
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


def choose_recipe(config: TrainConfig) -> tuple[str, str]:
    """The recipe ``config.recipe`` stands for, and one line saying which and why."""
    if config.recipe != "auto":
        return config.recipe, f"recipe {config.recipe} (--recipe {config.recipe})"
    paper, short = RECIPES["paper"], RECIPES["short"]
    if config.epochs >= PAPER_MIN_EPOCHS:
        return "paper", (
            f"recipe auto -> paper: {config.epochs} epochs >= {PAPER_MIN_EPOCHS}, long enough for its "
            f"{paper['warmup_epochs']:g}-epoch warm-up and slow BN/EMA averages"
        )
    return "short", (
        f"recipe auto -> short ({short['opt']}, {short['schedule']}, {short['warmup_epochs']:g}-epoch warm-up, BN "
        f"momentum {short['bn_momentum']:g}, no augmentation, dropout or stochastic depth): "
        f"{config.epochs} epochs < {PAPER_MIN_EPOCHS}, too short for the "
        f"paper's {paper['warmup_epochs']:g}-epoch warm-up; --recipe paper forces it"
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
    """Fill every ``None`` recipe field from the chosen recipe; ``recipe`` becomes its name (never ``auto``).

    The result is fully resolved: every field of :data:`~effnet.config.recipes.RECIPE_FIELDS` has a value, and only
    those of :data:`~effnet.config.recipes.OWN_DEFAULT_FIELDS` may be ``None`` (the optimizer's or the model's own
    value), so the trainer needs no fallback. With ``--progressive`` K > 1 the dropout stays unset (each stage sets
    it) and the augmentation defaults to RandAugment. Resolving a resolved config changes nothing.
    """
    name, _ = choose_recipe(config)
    values = {k: recipe_value(name, k, config.opt) for k in RECIPES[name]}
    changes = {k: v for k, v in values.items() if getattr(config, k) is None}
    if config.progressive > 1:
        changes.pop("dropout", None)  # progressive learning sets the dropout per stage (--dropout-range)
    if config.progressive > 1 and config.augment is None:
        changes["augment"] = "randaugment"  # progressive learning grows RandAugment's magnitude
    return dataclasses.replace(config, recipe=name, **changes)


def peak_lr(config: TrainConfig) -> float:
    """The LR reached after warmup: ``lr`` per 256 images scaled linearly to the global batch."""
    if config.lr is None:
        raise InvalidValue("peak_lr needs a resolved config (see resolve_recipe)")
    return config.lr * config.batch_size / 256
