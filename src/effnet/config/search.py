"""Every choice and default of ``effnet search``, with its bounds (torch-free).

:class:`SearchConfig` is the one source: ``effnet search`` builds each of its flags from a field here
(:mod:`effnet.cli.flags`), and ``effnet curves`` builds its per-point budget flags from the same fields. Bounds keep
every command finite: a grid step below :data:`MIN_STEP` or more than :data:`MAX_TRIALS` trials are refused before
any work starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effnet.config.fields import setting
from effnet.config.naming import difference_name
from effnet.config.training import SCHEDULE_FIELDS
from effnet.errors import InvalidValue

__all__ = [
    "DEFAULT_OUTPUT",
    "DEFAULT_STUDY",
    "DEFAULT_STEP",
    "DEFAULT_TOL",
    "STRATEGIES",
    "COSTS",
    "MAKE_PROFILE",
    "MIN_STEP",
    "MAX_COEFFICIENT",
    "MAX_GRID_VALUES",
    "MAX_TRIALS",
    "MAX_SEEDS",
    "SEARCH_GROUPS",
    "QUICK_TRAIN_OPTIONS",
    "parse_train_option",
    "SearchConfig",
    "default_storage",
    "study_options",
    "settings_suffix",
]

DEFAULT_OUTPUT = "runs/search"
"""Where ``effnet search`` with the main job's settings writes its SQLite study, trial runs and report by default;
other settings default to ``runs/search-<settings>`` (:func:`settings_suffix`), so each search has its own folder."""
DEFAULT_STUDY = "effnet-search"
"""Default Optuna study name."""
DEFAULT_STEP = 0.1
"""Default grid step of the CLI (the quick study); the paper-like fine grid is ``--step 0.05 --tol 0.1``."""
DEFAULT_TOL = 0.05
"""Default tolerance on ``|cost factor − target|`` of the CLI (the quick study): exact MACs within 2 ± 0.05×."""
COSTS = ("macs", "formula", "latency")
"""``--cost``: what "equal cost" means for the grid. ``macs``: the exact MACs of the network built at the point over
the baseline's (:mod:`effnet.search.equal_cost`); ``formula``: the paper's ``α·β²·γ²``, which ignores rounding;
``latency``: the latency predicted by a profile of this machine and engine (``--profile``, :mod:`effnet.latency`)."""
MAKE_PROFILE = "effnet profile --device cpu --runtime default --precision fp32 --batch 1"
"""The command that makes a latency profile (named by the errors that need one)."""
STRATEGIES = ("grid", "halving")
"""``--strategy``: every candidate gets the full budget, or successive halving stops weak ones early. The default
(``None``) is ``halving`` whenever a trial can be stopped early (``epochs > min_epochs``), else ``grid``."""
MIN_STEP = 0.01
"""Smallest ``--step`` of the grid (0.01 on [1, 2] is 101 values per coefficient)."""
MAX_COEFFICIENT = 4.0
"""Largest ``--high`` (a coefficient of 4 multiplies FLOPs by up to 16 per coefficient at φ = 1)."""
MAX_GRID_VALUES = 201
"""Most values per coefficient on the grid (``(high − low) / step + 1``)."""
MAX_TRIALS = 10000
"""Most trials (candidates × seeds) one search study may hold."""
MAX_SEEDS = 50
"""Most ``--seeds`` per candidate."""

SEARCH_GROUPS = (
    ("study", "study"),
    (
        "grid",
        "grid: every (alpha, beta, gamma) in [low, high] on a step grid whose cost is within tol of target x the "
        "baseline's (--cost), plus depth/width/resolution-only points at the same cost",
    ),
    ("budget", "training budget of every trial (applied to the baseline before scaling)"),
    ("worker", "worker"),
)
"""Flag groups of ``effnet search --help`` (key, title), in order."""

QUICK_TRAIN_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("opt", "adamw"),
    ("schedule", "cosine"),
    ("lr", 0.04),
    ("warmup_epochs", 0.3),
    ("bn_momentum", 0.1),
    ("augment", "none"),
    ("crop_pct", 1.0),
    ("ema_decay", 0.0),
    ("label_smoothing", 0.0),
    ("dropout", 0.0),
    ("drop_path", 0.0),
    ("artifacts", "metrics"),
    ("lean_activations", False),
)
"""The quick study's ``effnet train`` settings for every trial (``--train-option`` pairs override them). A trial
keeps only ``config.json`` and ``metrics.jsonl`` (``artifacts=metrics``): the report reads the trials' records and
a failed trial is trained again from its start; ``--train-option artifacts=all`` keeps a full run folder. The small
candidates train with the plain BN+activation (``lean_activations=false``, bit-identical results): the memory-lean
one saves memory that a 32 px network does not need and cost it 9 % of its step time (``docs/speed.md``)."""

_RESERVED_OPTIONS = frozenset(
    {
        "data",
        "model",
        "width",
        "depth",
        "resolution",
        "spec_file",
        "weights",
        "epochs",
        "batch_size",
        "train_limit",
        "val_limit",
        "seed",
        "output",
        "resume",
        "data_root",
        "threads",
    }
)


def parse_train_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` as ``(key, value)``: the value read as JSON where it is JSON (``0.05``, ``false``), else text;
    dashes in the key become underscores. :class:`~effnet.errors.InvalidValue` without ``=`` or a key."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InvalidValue(f"--train-option expects KEY=VALUE (e.g. lr=0.05), got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip().replace("-", "_"), parsed


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search study (grid, baseline, training budget) and how this worker runs.

    ``width``/``depth``/``resolution`` shape the *baseline* before the search scales it; ``epochs``,
    ``train_limit``, ``val_limit`` and ``batch_size`` are the per-trial training budget. ``storage`` None means
    the journal file ``<output>/study.journal``. ``heartbeat`` is the liveness interval in seconds: on an RDB
    storage a killed worker's trial is re-run after ``3 × heartbeat`` seconds without a heartbeat (on a journal as
    soon as its process is gone). ``threads`` limits torch threads per worker.
    ``strategy`` None becomes ``"halving"`` when ``epochs > min_epochs`` and ``"grid"`` otherwise, at construction.
    """

    data: str = setting("fashion-mnist", "fashion-mnist, cifar10, cifar100 or an ImageFolder directory", "study")
    baseline: str = setting(
        "efficientnet_b0",
        "baseline to scale: efficientnet_b0, resnet50, mobilenetv2, mobilenetv1 (any registered model) or a "
        "NetworkSpec JSON file",
        "study",
    )
    storage: str | None = setting(
        None,
        "Optuna storage shared by all workers: a journal file PATH.journal or PATH.log (one machine; default "
        "OUTPUT/study.journal), "
        "postgresql+psycopg://USER:PASS@HOST/DB (many machines) or sqlite:///FILE",
        "study",
    )
    study: str = setting(
        DEFAULT_STUDY,
        "study name (default {default}); reusing a name with a different grid, baseline or budget is an error",
        "study",
    )
    cost: str = setting(
        "macs",
        "what equal cost means: macs, the exact MACs of the network built at a point over the baseline's (default); "
        "formula, the paper's alpha*beta^2*gamma^2, which ignores the rounding of channels, depth and pixels; "
        "latency, the latency --profile predicts on its machine and engine",
        "grid",
        choices=COSTS,
    )
    profile: str | None = setting(
        None,
        f"latency profile of this machine and engine (made by: {MAKE_PROFILE}): the report adds every point's "
        "predicted latency factor; needed by --cost latency and --reward-weight",
        "grid",
    )
    accept_foreign_profile: bool = setting(
        False, "use a --profile made on another machine or engine version (its predictions may be off)", "grid"
    )
    reward_weight: float = setting(
        0.0,
        "rank by top-1 x (predicted latency factor / --target)^w, as MnasNet and EfficientNet-X do (e.g. -0.07: a "
        "point slower than the target loses; needs --profile; default 0: by top-1)",
        "grid",
    )
    target: float = setting(2.0, "cost growth at phi = 1, as a factor of the baseline's (--cost)", "grid")
    tol: float = setting(
        DEFAULT_TOL,
        "tolerance on the target (default {default}; the paper-like fine grid is --cost formula --step 0.05 --tol 0.1, "
        "109 points)",
        "grid",
    )
    step: float = setting(DEFAULT_STEP, f"grid step (default {{default}}; at least {MIN_STEP})", "grid")
    low: float = setting(1.0, "smallest coefficient", "grid")
    high: float = setting(2.0, "largest coefficient", "grid")
    seeds: int = setting(
        3,
        "trials per point with seeds SEED..SEED+K-1: mean, std and 95% interval per point, and a verdict by "
        f"Welch's t-test (needs K >= 2; at most {MAX_SEEDS}; default {{default}})",
        "grid",
    )
    seed: int = setting(0, "first seed", "grid")
    include_baseline: bool = setting(
        True,
        "do not train the unscaled baseline (a reference point; it never becomes the chosen coefficients)",
        "grid",
        flag="--no-baseline-trial",
    )
    width: float = setting(0.25, "baseline width multiplier", "budget")
    depth: float = setting(1.0, "baseline depth multiplier", "budget")
    resolution: int | None = setting(
        50, "baseline input size in pixels (default {default}; gamma multiplies it)", "budget"
    )
    epochs: int = setting(3, "epochs per trial", "budget")
    train_limit: int | None = setting(4000, "train on this many images, a fixed random subset", "budget")
    val_limit: int | None = setting(2000, "evaluate on this many test images, a fixed random subset", "budget")
    batch_size: int = setting(32, "batch size", "budget")
    data_root: str | None = setting(
        None,
        "folder holding the named datasets (default: $EFFNET_DATA, /usr/share/datasets, torchvision's cache)",
        "study",
    )
    output: str | None = setting(
        None,
        f"report and trial runs folder (default: {DEFAULT_OUTPUT} for the main job's settings, else "
        f"{DEFAULT_OUTPUT}-SETTINGS named after the settings that differ, e.g. {DEFAULT_OUTPUT}-seeds-1)",
        "study",
    )
    heartbeat: int = setting(
        10, "seconds between liveness records; a killed worker's trial is re-run after 3x this", "worker"
    )
    threads: int | None = setting(
        None, "torch threads per worker (default: cores // jobs; with one job torch's default)", "worker"
    )
    strategy: str | None = setting(
        None,
        "grid: every candidate trains --epochs; halving: successive halving (Optuna's asynchronous "
        "SuccessiveHalvingPruner) stops weak candidates after --min-epochs, --min-epochs*eta, ... epochs, never the "
        "--keep best points (default halving; grid when --epochs <= --min-epochs)",
        "grid",
        choices=STRATEGIES,
    )
    eta: int = setting(3, "halving: 1/eta of the candidates reaching a rung go on", "grid")
    min_epochs: int = setting(1, "halving: epochs before the first cut", "grid")
    keep: int = setting(
        3,
        "halving: never stop a trial whose point ranks in the top K at its epoch, so the report's top K rows are "
        "fully trained (0: plain halving; default {default})",
        "grid",
    )
    train_options: tuple[tuple[str, Any], ...] = setting(
        QUICK_TRAIN_OPTIONS,
        "any other effnet train setting for every trial, e.g. lr=0.05, augment=none, ema_decay=0, "
        "warmup_epochs=0.5 (repeatable; merged into the quick-study defaults {default})",
        "budget",
        flag="--train-option",
        metavar="KEY=VALUE",
        parse=parse_train_option,
        repeatable=True,
    )

    def __post_init__(self) -> None:
        options = tuple((str(k), v) for k, v in dict(self.train_options).items())
        object.__setattr__(self, "train_options", options)
        if self.strategy is None:
            object.__setattr__(self, "strategy", _default_strategy(self.epochs, self.min_epochs))
        _check_search(self)
        _check_grid(self)
        _check_budget(self)
        if self.output is None:  # each search its own folder, so a re-run of the same command resumes it
            suffix = settings_suffix(self)
            object.__setattr__(self, "output", DEFAULT_OUTPUT + (f"-{suffix}" if suffix else ""))

    @property
    def storage_url(self) -> str:
        """The storage URL this config uses (the default SQLite file when ``storage`` is None)."""
        return self.storage or default_storage(str(self.output))


_UNNAMED = frozenset({"storage", "study", "output", "data_root", "heartbeat", "threads", "strategy", "train_options"})
"""Fields that do not define what a search computes (where and how it runs), left out of :func:`settings_suffix`."""


def study_options(train_options: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """The ``--train-option`` pairs that change what a trial computes (a resumed training run must keep them:
    :data:`effnet.config.training.SCHEDULE_FIELDS`); the others (e.g. ``artifacts``) leave a study unchanged."""
    return {k: v for k, v in train_options if k in SCHEDULE_FIELDS}


def settings_suffix(config: SearchConfig) -> str:
    """The settings of ``config`` that differ from the main job's as a name (:func:`effnet.config.naming.
    difference_name`): ``""`` for the main job, else e.g. ``seeds-1``, ``strategy-grid``, ``epochs-5-lr-0.02``."""
    named = [f for f in dataclasses.fields(SearchConfig) if f.name not in _UNNAMED]
    given = {f.name: getattr(config, f.name) for f in named}
    main = {f.name: f.default for f in named}
    given["strategy"], main["strategy"] = config.strategy, _default_strategy(config.epochs, config.min_epochs)
    given.update(study_options(config.train_options))
    main.update(study_options(QUICK_TRAIN_OPTIONS))
    return difference_name(given, main, renamed={"include_baseline": "baseline-trial"})


def _check_search(config: SearchConfig) -> None:
    """The study, strategy and worker settings (one-line :class:`InvalidValue` naming the flag)."""
    reserved = sorted(set(dict(config.train_options)) & _RESERVED_OPTIONS)
    if reserved:
        raise InvalidValue(
            f"--train-option {', '.join(reserved)}: set by the search itself; use its own flags "
            "(--epochs, --batch-size, --train-limit, --width, --resolution, --seeds, --output, ...)"
        )
    if not isinstance(config.seeds, int) or config.seeds < 1:
        raise InvalidValue(f"--seeds must be an integer >= 1, got {config.seeds!r}")
    if config.cost not in COSTS:
        raise InvalidValue(f"--cost must be one of {', '.join(COSTS)}, got {config.cost!r}")
    weight = config.reward_weight
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or abs(weight) > 2:
        raise InvalidValue(f"--reward-weight must be a number in [-2, 2], got {weight!r}")
    for needs, flag in ((config.cost == "latency", "--cost latency"), (weight != 0, "--reward-weight")):
        if needs and not config.profile:
            raise InvalidValue(
                f"{flag} needs --profile FILE, a latency profile of this machine and engine: make one with "
                f"'{MAKE_PROFILE}' (it prints where it saved it)"
            )
    if config.strategy not in STRATEGIES:
        raise InvalidValue(f"--strategy must be one of {', '.join(STRATEGIES)}, got {config.strategy!r}")
    if isinstance(config.eta, bool) or not isinstance(config.eta, int) or config.eta < 2:
        raise InvalidValue(f"--eta must be an integer >= 2 (1/eta of the candidates go on), got {config.eta!r}")
    min_epochs = config.min_epochs
    if isinstance(min_epochs, bool) or not isinstance(min_epochs, int) or not 1 <= min_epochs:
        raise InvalidValue(f"--min-epochs must be an integer >= 1, got {min_epochs!r}")
    if isinstance(config.keep, bool) or not isinstance(config.keep, int) or config.keep < 0:
        raise InvalidValue(
            f"--keep must be an integer >= 0 (trials never stopped while in the top K), got {config.keep!r}"
        )
    if not isinstance(config.heartbeat, int) or config.heartbeat < 1:
        raise InvalidValue(f"--heartbeat must be an integer number of seconds >= 1, got {config.heartbeat!r}")
    if not isinstance(config.study, str) or not config.study.strip():
        raise InvalidValue(f"--study must be a non-empty name, got {config.study!r}")


def _check_grid(config: SearchConfig) -> None:
    """Bounds that keep the grid finite (issue 11: ``--step 0.001`` used to hang)."""
    step, low, high = config.step, config.low, config.high
    if not (isinstance(step, (int, float)) and MIN_STEP <= step <= 1):
        raise InvalidValue(f"--step must be a number in [{MIN_STEP}, 1] (finer never finishes), got {step!r}")
    if not (1 <= low <= high <= MAX_COEFFICIENT):
        raise InvalidValue(f"need 1 <= --low <= --high <= {MAX_COEFFICIENT:g}, got low={low}, high={high}")
    if config.seeds > MAX_SEEDS:
        raise InvalidValue(f"--seeds must be <= {MAX_SEEDS}, got {config.seeds}")
    values = math.floor((high - low) / step + 1e-9) + 1
    if values > MAX_GRID_VALUES:
        raise InvalidValue(
            f"--step {step:g} on [{low:g}, {high:g}] gives {values} values per coefficient, more than "
            f"{MAX_GRID_VALUES}; use a coarser --step or a narrower range"
        )
    if config.strategy == "halving" and config.min_epochs >= config.epochs:
        raise InvalidValue(
            f"--min-epochs ({config.min_epochs}) must be below --epochs ({config.epochs}) with "
            "--strategy halving, or nothing can be stopped early"
        )
    if not math.isfinite(config.target) or config.target < 1:
        raise InvalidValue(f"--target must be >= 1 (the FLOPs growth per unit of phi), got {config.target}")


def _check_budget(config: SearchConfig) -> None:
    """The per-trial training budget: positive integers (the limits, resolution and threads may be None)."""
    for name in ("epochs", "batch_size"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise InvalidValue(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
    for name in ("train_limit", "val_limit", "resolution", "threads"):
        value = getattr(config, name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise InvalidValue(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")


def _default_strategy(epochs: object, min_epochs: object) -> str:
    """``halving`` when a trial can be stopped before its last epoch, else ``grid`` (bad values: checked later)."""
    if isinstance(epochs, bool) or isinstance(min_epochs, bool):
        return "grid"
    if isinstance(epochs, int) and isinstance(min_epochs, int) and epochs > min_epochs:
        return "halving"
    return "grid"


def default_storage(output: str) -> str:
    """``<output>/study.journal`` (absolute path), an Optuna journal file: a study's storage when no ``--storage``
    is given."""
    return str((Path(output) / "study.journal").resolve())
