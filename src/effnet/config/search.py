"""Every choice and default of ``effnet search`` and ``effnet scale``, with their bounds (torch-free).

The CLI builds its flags from these dataclasses: defaults and accepted ranges live here only. Bounds keep every
command finite: a grid step below :data:`MIN_STEP` or more than :data:`MAX_TRIALS` trials, and a ``--phi-max``
above :data:`PHI_MAX_LIMIT`, are refused before any work starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from effnet.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA
from effnet.specs import NetworkSpec

__all__ = [
    "DEFAULT_OUTPUT",
    "DEFAULT_STUDY",
    "DEFAULT_STEP",
    "DEFAULT_TOL",
    "STRATEGIES",
    "MIN_STEP",
    "MAX_COEFFICIENT",
    "MAX_GRID_VALUES",
    "MAX_TRIALS",
    "MAX_SEEDS",
    "PHI_MAX_LIMIT",
    "RULES",
    "SearchConfig",
    "Budget",
    "ScaleConfig",
    "parse_count",
    "METHODS",
    "DEFAULT_CURVES_OUTPUT",
    "DEFAULT_CURVES_STUDY",
    "CurvesConfig",
]

DEFAULT_OUTPUT = "runs/search"
"""Where ``effnet search`` writes its SQLite study, trial runs and report by default."""
DEFAULT_STUDY = "effnet-search"
"""Default Optuna study name."""
DEFAULT_STEP = 0.1
"""Default grid step of the CLI (the quick study); the paper-like fine grid is ``--step 0.05 --tol 0.1``."""
DEFAULT_TOL = 0.05
"""Default tolerance on ``|α·β²·γ² − target|`` of the CLI (the quick study)."""
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
PHI_MAX_LIMIT = 16
"""Largest ``--phi-max`` of ``effnet scale`` and ``effnet curves`` (FLOPs × 2^16 at the paper's coefficients)."""
RULES = ("paper", "fast")
"""Scaling rules of ``effnet scale``: the paper's ``α^φ, β^φ, γ^φ`` and Dollár et al.'s fast compound scaling."""


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


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search study (grid, baseline, training budget) and how this worker runs.

    ``width``/``depth``/``resolution`` shape the *baseline* before the search scales it; ``epochs``,
    ``train_limit``, ``val_limit`` and ``batch_size`` are the per-trial training budget. ``storage`` None means
    ``sqlite:///<output>/study.db``. ``heartbeat`` is the liveness interval in seconds: a killed worker's trial is
    re-run after ``3 × heartbeat`` seconds without a heartbeat. ``threads`` limits torch threads per worker.
    ``strategy`` None becomes ``"halving"`` when ``epochs > min_epochs`` and ``"grid"`` otherwise, at construction.
    """

    data: str = "fashion-mnist"
    baseline: str = "efficientnet_b0"
    storage: str | None = None
    study: str = DEFAULT_STUDY
    target: float = 2.0
    tol: float = DEFAULT_TOL
    step: float = DEFAULT_STEP
    low: float = 1.0
    high: float = 2.0
    seeds: int = 3
    seed: int = 0
    include_baseline: bool = True
    width: float = 0.25
    depth: float = 0.5
    resolution: int | None = 32
    epochs: int = 3
    train_limit: int | None = 4000
    val_limit: int | None = 2000
    batch_size: int = 32
    data_root: str | None = None
    output: str = DEFAULT_OUTPUT
    heartbeat: int = 10
    threads: int | None = None
    strategy: str | None = None
    eta: int = 3
    min_epochs: int = 1
    keep: int = 3
    train_options: tuple[tuple[str, Any], ...] = (
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
    )

    def __post_init__(self) -> None:
        options = tuple((str(k), v) for k, v in dict(self.train_options).items())
        object.__setattr__(self, "train_options", options)
        reserved = sorted(set(dict(options)) & _RESERVED_OPTIONS)
        if reserved:
            raise ValueError(
                f"--train-option {', '.join(reserved)}: set by the search itself; use its own flags "
                "(--epochs, --batch-size, --train-limit, --width, --resolution, --seeds, --output, ...)"
            )
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"--seeds must be an integer >= 1, got {self.seeds!r}")
        if self.strategy is None:
            object.__setattr__(self, "strategy", _default_strategy(self.epochs, self.min_epochs))
        if self.strategy not in STRATEGIES:
            raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if isinstance(self.eta, bool) or not isinstance(self.eta, int) or self.eta < 2:
            raise ValueError(f"--eta must be an integer >= 2 (1/eta of the candidates go on), got {self.eta!r}")
        if isinstance(self.min_epochs, bool) or not isinstance(self.min_epochs, int) or not 1 <= self.min_epochs:
            raise ValueError(f"--min-epochs must be an integer >= 1, got {self.min_epochs!r}")
        if isinstance(self.keep, bool) or not isinstance(self.keep, int) or self.keep < 0:
            raise ValueError(
                f"--keep must be an integer >= 0 (trials never stopped while in the top K), got {self.keep!r}"
            )
        if not isinstance(self.heartbeat, int) or self.heartbeat < 1:
            raise ValueError(f"--heartbeat must be an integer number of seconds >= 1, got {self.heartbeat!r}")
        if not isinstance(self.study, str) or not self.study.strip():
            raise ValueError(f"--study must be a non-empty name, got {self.study!r}")
        self._check_grid()
        if not math.isfinite(self.target) or self.target < 1:
            raise ValueError(f"--target must be >= 1 (the FLOPs growth per unit of phi), got {self.target}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
        for name in ("train_limit", "val_limit", "resolution", "threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")

    def _check_grid(self) -> None:
        """Bounds that keep the grid finite (issue 11: ``--step 0.001`` used to hang)."""
        if not (isinstance(self.step, (int, float)) and MIN_STEP <= self.step <= 1):
            raise ValueError(f"--step must be a number in [{MIN_STEP}, 1] (finer never finishes), got {self.step!r}")
        if not (1 <= self.low <= self.high <= MAX_COEFFICIENT):
            raise ValueError(f"need 1 <= --low <= --high <= {MAX_COEFFICIENT:g}, got low={self.low}, high={self.high}")
        if self.seeds > MAX_SEEDS:
            raise ValueError(f"--seeds must be <= {MAX_SEEDS}, got {self.seeds}")
        values = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        if values > MAX_GRID_VALUES:
            raise ValueError(
                f"--step {self.step:g} on [{self.low:g}, {self.high:g}] gives {values} values per "
                f"coefficient, more than {MAX_GRID_VALUES}; use a coarser --step or a narrower range"
            )
        if self.strategy == "halving" and self.min_epochs >= self.epochs:
            raise ValueError(
                f"--min-epochs ({self.min_epochs}) must be below --epochs ({self.epochs}) with "
                "--strategy halving, or nothing can be stopped early"
            )

    @property
    def storage_url(self) -> str:
        """The storage URL this config uses (the default SQLite file when ``storage`` is None)."""
        return self.storage or default_storage(self.output)


def _default_strategy(epochs: object, min_epochs: object) -> str:
    """``halving`` when a trial can be stopped before its last epoch, else ``grid`` (bad values: checked later)."""
    if isinstance(epochs, bool) or isinstance(min_epochs, bool):
        return "grid"
    if isinstance(epochs, int) and isinstance(min_epochs, int) and epochs > min_epochs:
        return "halving"
    return "grid"


def default_storage(output: str) -> str:
    """``sqlite:///<output>/study.db`` (absolute path): a study's storage when no ``--storage`` is given."""
    return f"sqlite:///{(Path(output) / 'study.db').resolve()}"


def parse_count(text: str) -> float:
    """A positive count such as ``4e9``, ``400M``, ``5.3M``, ``2G``/``2B`` or ``12K`` as a float.

    ``ValueError`` naming the text and the accepted format otherwise (negative, zero, NaN or infinite included).
    """
    units = {"K": 1e3, "M": 1e6, "G": 1e9, "B": 1e9, "T": 1e12}
    value = str(text).strip()
    mult = units.get(value[-1:].upper(), 1.0) if value else 1.0
    number = value[:-1] if mult != 1.0 else value
    fmt = "a positive number with an optional K, M, G/B or T suffix, e.g. 4e9, 400M, 5.3M, 2G, 12K"
    try:
        out = float(number) * mult
    except ValueError:
        raise ValueError(f"not a count: {text!r}; expected {fmt}") from None
    if not math.isfinite(out) or not out > 0:
        raise ValueError(f"a budget must be positive and finite, got {text!r}; expected {fmt}")
    return out


@dataclass(frozen=True)
class Budget:
    """Hardware limits; None means unlimited. Latency in ms per batch, memory in MiB."""

    max_macs: float | None = None
    max_params: float | None = None
    max_latency_ms: float | None = None
    max_memory_mb: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_macs", "max_params", "max_latency_ms", "max_memory_mb"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"--{name.replace('_', '-')} must be a positive number, got {value!r}")

    @property
    def needs_measurement(self) -> bool:
        """True when a limit can only be checked by running the model."""
        return self.max_latency_ms is not None or self.max_memory_mb is not None

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready limits."""
        return {
            "max_macs": self.max_macs,
            "max_params": self.max_params,
            "max_latency_ms": self.max_latency_ms,
            "max_memory_mb": self.max_memory_mb,
        }


@dataclass(frozen=True)
class ScaleConfig:
    """Inputs of :func:`effnet.search.scaleup.scale_family`: coefficients, rule, baseline, measurement, budget.

    Measurement (``device`` set) is robust by construction: the members are measured in interleaved rounds (one
    round = every φ once, ``repeats`` timed runs each); rounds are added, at least ``min_rounds`` and at most
    ``max_rounds``, until every member's spread (max − min of its per-round medians, relative to their median)
    is at most ``max_spread``. A larger φ measuring faster than a smaller one gets one more round and is flagged
    if it still does.
    """

    alpha: float = PAPER_ALPHA
    beta: float = PAPER_BETA
    gamma: float = PAPER_GAMMA
    rule: str = "paper"
    phi_max: int = 7
    baseline: NetworkSpec | None = None
    device: str | None = None
    batch: int = 1
    warmup: int = 2
    repeats: int = 5
    threads: int | None = None
    runtime: str = "eager"
    budget: Budget = field(default_factory=Budget)
    min_rounds: int = 2
    max_rounds: int = 5
    max_spread: float = 0.10
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"--rule must be one of {', '.join(RULES)}; got {self.rule!r}")
        phi = self.phi_max
        if isinstance(phi, bool) or not isinstance(phi, int) or not 0 <= phi <= PHI_MAX_LIMIT:
            raise ValueError(f"--phi-max must be an integer in [0, {PHI_MAX_LIMIT}], got {phi!r}")
        if isinstance(self.min_rounds, bool) or not isinstance(self.min_rounds, int) or self.min_rounds < 1:
            raise ValueError(f"--min-rounds must be an integer >= 1, got {self.min_rounds!r}")
        if not isinstance(self.max_rounds, int) or not self.min_rounds <= self.max_rounds <= 20:
            raise ValueError(f"--max-rounds must be an integer in [--min-rounds, 20], got {self.max_rounds!r}")
        if not (isinstance(self.max_spread, (int, float)) and 0 < self.max_spread <= 1):
            raise ValueError(f"--max-spread must be a fraction in (0, 1], got {self.max_spread!r}")


METHODS = ("depth", "width", "resolution", "compound")
"""The lines of ``effnet curves``: the baseline scaled in one dimension only, or by the compound rule."""
DEFAULT_CURVES_OUTPUT = "runs/curves"
"""Where ``effnet curves`` writes its SQLite study, trial runs, table, CSV, JSON and plot by default."""
DEFAULT_CURVES_STUDY = "effnet-curves"
"""Default Optuna study name of ``effnet curves``."""


def _curves_training() -> SearchConfig:
    return SearchConfig(study=DEFAULT_CURVES_STUDY, output=DEFAULT_CURVES_OUTPUT)


@dataclass(frozen=True)
class CurvesConfig:
    """Inputs of :func:`effnet.search.curves.run_curves` (the paper's Figures 3 and 8 as a tool).

    ``training`` is a :class:`SearchConfig` used for what it shares with a search: data, baseline (``baseline``,
    ``width``, ``depth``, ``resolution``), per-point training budget (``epochs``, ``train_limit``, ``val_limit``,
    ``batch_size``, ``train_options``), seeds and the study's storage, name, output and worker settings; its grid
    fields are unused, and every point trains its full budget (its strategy is always ``grid``). For
    φ = 1..``phi_max`` each method in ``methods`` gives one point: depth-, width- or resolution-only multipliers
    solved on the exact cost model so that MACs are ``2^φ`` × the baseline's, and compound = ``(α^φ, β^φ, γ^φ)``.
    """

    training: SearchConfig = field(default_factory=_curves_training)
    phi_max: int = 3
    alpha: float = PAPER_ALPHA
    beta: float = PAPER_BETA
    gamma: float = PAPER_GAMMA
    methods: tuple[str, ...] = METHODS

    def __post_init__(self) -> None:
        if self.training.strategy != "grid":  # a curve compares fully trained points: nothing is stopped early
            object.__setattr__(self, "training", replace(self.training, strategy="grid"))
        phi = self.phi_max
        if isinstance(phi, bool) or not isinstance(phi, int) or not 1 <= phi <= PHI_MAX_LIMIT:
            raise ValueError(f"--phi-max must be an integer in [1, {PHI_MAX_LIMIT}], got {phi!r}")
        methods = tuple(self.methods)
        object.__setattr__(self, "methods", methods)
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods or len(set(methods)) != len(methods):
            raise ValueError(f"--methods must be distinct names among {', '.join(METHODS)}; got {', '.join(methods)}")
        for name in ("alpha", "beta", "gamma"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 1 <= value <= MAX_COEFFICIENT):
                raise ValueError(f"--{name} must be a number in [1, {MAX_COEFFICIENT:g}], got {value!r}")
