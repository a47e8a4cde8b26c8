"""Every choice and default of ``effnet curves`` (torch-free): the paper's Figures 3 and 8 as a tool.

``effnet curves`` builds its flags from :class:`CurvesConfig`'s own settings (``--phi-max``, ``--methods``), from
:class:`~effnet.config.scale.CoefficientSource` and from the per-point budget fields of
:class:`~effnet.config.search.SearchConfig` (defaults: :data:`CURVES_TRAINING`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from effnet.config.fields import setting
from effnet.config.scale import PHI_MAX_LIMIT
from effnet.config.search import MAKE_PROFILE, MAX_COEFFICIENT, SearchConfig
from effnet.errors import InvalidValue, check_type
from effnet.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA

__all__ = [
    "METHODS",
    "CURVE_COSTS",
    "DEFAULT_CURVES_OUTPUT",
    "DEFAULT_CURVES_STUDY",
    "CURVES_TRAINING",
    "CURVES_GROUPS",
    "parse_methods",
    "CurvesConfig",
]

METHODS = ("depth", "width", "resolution", "compound")
"""The lines of ``effnet curves``: the baseline scaled in one dimension only, or by the compound rule."""
CURVE_COSTS = ("macs", "latency")
"""``effnet curves --cost``: the single-dimension points at 2^φ × the baseline's exact MACs, or at 2^φ × its latency
predicted by ``--profile``, drawn against the latency measured on this machine with the profile's engine."""
DEFAULT_CURVES_OUTPUT = "runs/curves"
"""Where ``effnet curves`` writes its SQLite study, trial runs, table, CSV, JSON and plot by default."""
DEFAULT_CURVES_STUDY = "effnet-curves"
"""Default Optuna study name of ``effnet curves``."""
CURVES_TRAINING = SearchConfig(study=DEFAULT_CURVES_STUDY, output=DEFAULT_CURVES_OUTPUT, depth=0.5, resolution=32)
"""The default :attr:`CurvesConfig.training`: the quick search's budget on B0 at width 0.25, depth 0.5 and 32 px, in
its own study and folder."""

CURVES_GROUPS = (
    ("curves", "curves"),
    ("coefficients", "compound coefficients (the paper's by default, flags, or a finished search study)"),
    ("budget", "baseline and training budget of every point (as in effnet search)"),
    ("worker", "study and worker"),
)
"""Flag groups of ``effnet curves --help`` (key, title), in order."""


def parse_methods(text: str) -> tuple[str, ...]:
    """``depth,compound`` as ``("depth", "compound")`` (checked by :class:`CurvesConfig`)."""
    return tuple(m.strip() for m in text.split(",") if m.strip())


@dataclass(frozen=True)
class CurvesConfig:
    """Inputs of :func:`effnet.search.curves.run_curves` (the paper's Figures 3 and 8 as a tool).

    ``training`` is a :class:`SearchConfig` used for what it shares with a search: data, baseline (``baseline``,
    ``width``, ``depth``, ``resolution``), per-point training budget (``epochs``, ``train_limit``, ``val_limit``,
    ``batch_size``, ``train_options``), seeds and the study's storage, name, output and worker settings; its grid
    fields are unused, and every point trains its full budget (its strategy is always ``grid``). For
    φ = 1..``phi_max`` each method in ``methods`` gives one point: depth-, width- or resolution-only multipliers
    solved on the exact cost model so that MACs are ``2^φ`` × the baseline's, and compound = ``(α^φ, β^φ, γ^φ)``.
    ``training``, ``alpha``, ``beta`` and ``gamma`` are not flags of their own (``effnet curves`` sets them from
    the budget flags and :class:`~effnet.config.scale.CoefficientSource`).
    """

    training: SearchConfig = CURVES_TRAINING
    phi_max: int = setting(
        3, f"points at FLOPs x 2^phi for phi = 1..N (default {{default}}, at most {PHI_MAX_LIMIT})", "curves"
    )
    alpha: float = PAPER_ALPHA
    beta: float = PAPER_BETA
    gamma: float = PAPER_GAMMA
    methods: tuple[str, ...] = setting(
        METHODS,
        f"comma-separated lines among {', '.join(METHODS)} (default: all)",
        "curves",
        parse=parse_methods,
    )
    cost: str = setting(
        "macs",
        "macs: single-dimension points at 2^phi x the baseline's exact MACs, top-1 against MACs (default); latency: "
        "at 2^phi x its latency predicted by --profile, top-1 against the latency measured here with the profile's "
        "engine, threads and batch",
        "curves",
        choices=CURVE_COSTS,
    )
    profile: str | None = setting(
        None, f"latency profile of this machine and engine for --cost latency (made by: {MAKE_PROFILE})", "curves"
    )
    accept_foreign_profile: bool = setting(
        False, "use a --profile made on another machine or engine version (its predictions may be off)", "curves"
    )

    def __post_init__(self) -> None:
        check_type("training", self.training, SearchConfig, "a SearchConfig (the budget of each point)")
        if self.training.strategy != "grid":  # a curve compares fully trained points: nothing is stopped early
            object.__setattr__(self, "training", replace(self.training, strategy="grid"))
        phi = self.phi_max
        if isinstance(phi, bool) or not isinstance(phi, int) or not 1 <= phi <= PHI_MAX_LIMIT:
            raise InvalidValue(f"--phi-max must be an integer in [1, {PHI_MAX_LIMIT}], got {phi!r}")
        methods = tuple(self.methods)
        object.__setattr__(self, "methods", methods)
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods or len(set(methods)) != len(methods):
            raise InvalidValue(f"--methods must be distinct names among {', '.join(METHODS)}; got {', '.join(methods)}")
        if self.cost not in CURVE_COSTS:
            raise InvalidValue(f"--cost must be one of {', '.join(CURVE_COSTS)}, got {self.cost!r}")
        if self.cost == "latency" and not self.profile:
            raise InvalidValue(
                f"--cost latency needs --profile FILE, a latency profile of this machine and engine: make one with "
                f"'{MAKE_PROFILE}' (it prints where it saved it)"
            )
        for name in ("alpha", "beta", "gamma"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 1 <= value <= MAX_COEFFICIENT):
                raise InvalidValue(f"--{name} must be a number in [1, {MAX_COEFFICIENT:g}], got {value!r}")
