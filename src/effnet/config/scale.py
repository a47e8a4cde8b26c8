"""Every choice and default of ``effnet scale`` (torch-free): the family, its measurement, the budget, the output.

:class:`ScaleConfig` holds what :func:`effnet.search.scaleup.scale_family` needs; ``effnet scale`` builds its
flags from the settings of :class:`CoefficientSource`, :class:`ScaleOptions`, :class:`ScaleConfig` and
:class:`Budget` (:mod:`effnet.cli.flags`). A ``--phi-max`` above :data:`PHI_MAX_LIMIT` is refused before any work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from effnet.config.fields import Range, setting
from effnet.config.serving import DEFAULT_PRECISION, PRECISIONS, RUNTIMES, Precision
from effnet.errors import InvalidValue, check_type
from effnet.limits import check_int, check_number
from effnet.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA
from effnet.specs import NetworkSpec

__all__ = [
    "PHI_MAX_LIMIT",
    "PREDICTED_MARGIN",
    "RULES",
    "SCALE_GROUPS",
    "parse_count",
    "CoefficientSource",
    "ScaleOptions",
    "Budget",
    "ScaleConfig",
]

PHI_MAX_LIMIT = 16
"""Largest ``--phi-max`` of ``effnet scale`` and ``effnet curves`` (FLOPs × 2^16 at the paper's coefficients)."""
_MAX_INT = 2**31 - 1  # the integer flags' bound here; the memory estimate bounds --batch (effnet.memory)
PREDICTED_MARGIN = 1.5
"""``effnet scale --profile``: a member whose predicted latency or memory is more than this × its budget is reported
as predicted and never built (a profile predicts within about ±10 %, see ``docs/hardware-aware.md``)."""
RULES = ("paper", "fast")
"""Scaling rules of ``effnet scale``: the paper's ``α^φ, β^φ, γ^φ`` and Dollár et al.'s fast compound scaling."""

SCALE_GROUPS = (
    ("coefficients", "compound coefficients (the paper's by default, flags, or a finished search study)"),
    ("family", "family"),
    ("measurement", "measurement (imports torch)"),
    ("budget", "budget: the chosen model is the largest phi that satisfies all of them"),
    ("output", "output"),
)
"""Flag groups of ``effnet scale --help`` (key, title), in order."""


def parse_count(text: str) -> float:
    """A positive count such as ``4e9``, ``400M``, ``5.3M``, ``2G``/``2B`` or ``12K`` as a float.

    :class:`~effnet.errors.InvalidValue` naming the text and the accepted format otherwise (negative, zero, NaN or
    infinite included).
    """
    units = {"K": 1e3, "M": 1e6, "G": 1e9, "B": 1e9, "T": 1e12}
    value = str(text).strip()
    mult = units.get(value[-1:].upper(), 1.0) if value else 1.0
    number = value[:-1] if mult != 1.0 else value
    fmt = "a positive number with an optional K, M, G/B or T suffix, e.g. 4e9, 400M, 5.3M, 2G, 12K"
    try:
        out = float(number) * mult
    except ValueError:
        raise InvalidValue(f"not a count: {text!r}; expected {fmt}") from None
    if not math.isfinite(out) or not out > 0:
        raise InvalidValue(f"a budget must be positive and finite, got {text!r}; expected {fmt}")
    return out


@dataclass(frozen=True)
class CoefficientSource:
    """Where ``effnet scale`` and ``effnet curves`` take α, β, γ from: the paper's (all None), the three flags, or a
    finished ``effnet search`` study (``study``, in ``storage``; default: the search's default storage)."""

    alpha: float | None = setting(None, f"depth coefficient (default {PAPER_ALPHA})", "coefficients")
    beta: float | None = setting(None, f"width coefficient (default {PAPER_BETA})", "coefficients")
    gamma: float | None = setting(None, f"resolution coefficient (default {PAPER_GAMMA})", "coefficients")
    study: str | None = setting(
        None,
        "take alpha, beta, gamma from this effnet search study (effnet scale also takes its baseline unless "
        "--baseline is given)",
        "coefficients",
    )
    storage: str | None = setting(
        None, "storage of --study: a journal file or database URL (default runs/search/study.journal)", "coefficients"
    )

    def __post_init__(self) -> None:
        given = [self.alpha, self.beta, self.gamma]
        if self.study and any(v is not None for v in given):
            raise InvalidValue("give either --study or --alpha/--beta/--gamma, not both")
        if self.storage and not self.study:
            raise InvalidValue("--storage is only used with --study")
        if any(v is None for v in given) and any(v is not None for v in given):
            raise InvalidValue(
                f"give all of --alpha, --beta and --gamma (or none for the paper's {PAPER_ALPHA}, {PAPER_BETA}, "
                f"{PAPER_GAMMA})"
            )


@dataclass(frozen=True)
class ScaleOptions:
    """What ``effnet scale`` adds to :class:`ScaleConfig`: the baseline as named on the command line (scaled by
    ``width``/``depth``, at ``resolution`` with ``num_classes``; None: the baseline's own) and the output."""

    baseline: str | None = setting(
        None,
        "efficientnet_b0 (default), resnet50, mobilenetv2, any registered model, or a NetworkSpec JSON file "
        "(with --study: the study's baseline)",
        "family",
    )
    width: float = setting(1.0, "baseline width multiplier", "family")
    depth: float = setting(1.0, "baseline depth multiplier", "family")
    resolution: int | None = setting(None, "baseline input size (default: the baseline's)", "family")
    num_classes: int | None = setting(None, "classifier outputs (default: the baseline's)", "family")
    json: bool = setting(False, "print JSON instead of a table", "output")
    output_spec: str | None = setting(
        None, "write the chosen NetworkSpec JSON here (train it with: effnet train --spec FILE)", "output"
    )
    overwrite: bool = setting(False, "replace an existing --output-spec file", "output")


@dataclass(frozen=True)
class Budget:
    """Hardware limits; None means unlimited. Latency in ms per batch, memory in MiB."""

    max_macs: float | None = setting(None, "e.g. 1e9, 400M, 2G", "budget", parse=parse_count)
    max_params: float | None = setting(None, "e.g. 5.3M", "budget", parse=parse_count)
    max_latency_ms: float | None = setting(None, "median ms per batch (needs --device)", "budget")
    max_memory_mb: float | None = setting(None, "peak MiB (needs --device)", "budget")

    def __post_init__(self) -> None:
        for name in ("max_macs", "max_params", "max_latency_ms", "max_memory_mb"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InvalidValue(f"--{name.replace('_', '-')} must be a positive number, got {value!r}")

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
    round = every measured φ once, ``repeats`` timed runs each); rounds are added, at least ``min_rounds`` and at
    most ``max_rounds``, until every member's spread (max − min of its per-round medians, relative to their median)
    is at most ``max_spread``. A larger φ measuring faster than a smaller one gets one more round and is flagged
    if it still does. Only the members that can matter are measured: from φ = 0 up to the first that misses the
    budget and one above it (``measure_all`` measures every member). ``alpha``, ``beta``, ``gamma``, ``baseline``
    and ``budget`` are not flags of their own: ``effnet scale`` sets them from :class:`CoefficientSource`,
    :class:`ScaleOptions` and :class:`Budget`.
    """

    alpha: float = PAPER_ALPHA
    beta: float = PAPER_BETA
    gamma: float = PAPER_GAMMA
    rule: str = setting(
        "paper",
        "paper: d=alpha^phi, w=beta^phi, r=gamma^phi; fast: Dollar et al. 2021 at the same FLOPs target (width 80% "
        "of the growth)",
        "family",
        choices=RULES,
    )
    phi_max: int = setting(7, f"largest phi (default {{default}}, at most {PHI_MAX_LIMIT})", "family")
    baseline: NetworkSpec | None = None
    device: str | None = setting(None, "cpu or cuda[:N]: measure latency, throughput and peak memory", "measurement")
    batch: int = setting(1, "batch size of the measurement", "measurement")
    warmup: int = setting(2, "untimed runs before timing", "measurement")
    repeats: int = setting(5, "timed runs per member and round; a round's latency is their median", "measurement")
    threads: int | None = setting(
        None,
        "CPU threads of each timed run (default: the cores not busy now, i.e. usable cores less those busy over 0.3 s, "
        "at least 1: never more threads than free cores; the result says how many)",
        "measurement",
    )
    profile: str | None = setting(
        None,
        "a latency profile of this machine and engine (made by effnet profile): predicts every member's latency and "
        f"memory first; members predicted over {PREDICTED_MARGIN:g}x the budget are not built; without --device the "
        "choice is by the predictions",
        "measurement",
    )
    accept_foreign_profile: bool = setting(
        False, "use a --profile made on another machine or engine version (its predictions may be off)", "measurement"
    )
    measure_all: bool = setting(
        False,
        "measure every member (slow; by default members are measured from phi = 0 up to the first that misses the "
        "budget and one above it, and members over an exact budget are never built)",
        "measurement",
    )
    max_memory: float | None = setting(
        None,
        "do not measure a member whose estimated memory at --batch exceeds this many GiB (default: what the device "
        "has available); refused when even phi=0 does",
        "measurement",
        limits=Range(0, low_open=True),
        metavar="GIB",
    )
    runtime: str = setting(
        "eager",
        "how each model runs while measured: eager (the module; default) or the runtime you will deploy, as in "
        "effnet predict (e.g. openvino)",
        "measurement",
        choices=RUNTIMES,
    )
    budget: Budget = field(default_factory=Budget)
    min_rounds: int = setting(2, "interleaved rounds (every phi once each) at least", "measurement")
    max_rounds: int = setting(
        5, "rounds at most while a member's spread is above --max-spread (default {default}, at most 20)", "measurement"
    )
    max_spread: float = setting(
        0.10,
        "accepted (max - min) / median of a member's per-round latencies (default {default}); a larger phi faster "
        "than a smaller one by more than this gets one extra round and is flagged if it still is",
        "measurement",
    )
    precision: Precision = setting(
        DEFAULT_PRECISION,
        "precision of the measured runtime (bf16: native hardware bf16 only; int8: calibrated on random inputs, as "
        "only speed is measured)",
        "measurement",
        choices=PRECISIONS,
    )

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise InvalidValue(f"--rule must be one of {', '.join(RULES)}; got {self.rule!r}")
        if self.max_memory is not None:
            check_number("--max-memory", self.max_memory, 0, math.inf, low_open=True)
        for flag, value, low in (
            ("--batch", self.batch, 1),
            ("--warmup", self.warmup, 0),
            ("--repeats", self.repeats, 1),
        ):
            check_int(flag, value, low, _MAX_INT)
        check_type("baseline", self.baseline, (NetworkSpec, type(None)), "a NetworkSpec or None")
        check_type("budget", self.budget, Budget, "a Budget")
        phi = self.phi_max
        if isinstance(phi, bool) or not isinstance(phi, int) or not 0 <= phi <= PHI_MAX_LIMIT:
            raise InvalidValue(f"--phi-max must be an integer in [0, {PHI_MAX_LIMIT}], got {phi!r}")
        if isinstance(self.min_rounds, bool) or not isinstance(self.min_rounds, int) or self.min_rounds < 1:
            raise InvalidValue(f"--min-rounds must be an integer >= 1, got {self.min_rounds!r}")
        if not isinstance(self.max_rounds, int) or not self.min_rounds <= self.max_rounds <= 20:
            raise InvalidValue(f"--max-rounds must be an integer in [--min-rounds, 20], got {self.max_rounds!r}")
        if not (isinstance(self.max_spread, (int, float)) and 0 < self.max_spread <= 1):
            raise InvalidValue(f"--max-spread must be a fraction in (0, 1], got {self.max_spread!r}")
        threads = self.threads
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InvalidValue(f"--threads must be an integer >= 1, got {threads!r}")
