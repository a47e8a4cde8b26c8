"""A device + engine profile: its fingerprint, the fitted latency model and the fastest engine per batch (JSON).

A profile is a frozen :class:`Profile` (``to_dict``/``from_dict``, JSON). :func:`load_profile` reads one and refuses,
in one line naming the difference, a profile made on another machine, with other threads or another engine version
(unless ``accept_foreign``), and a damaged, oversized or foreign-format file. ``effnet profile`` saves its profile
to :func:`default_profile_path` unless told otherwise: ``$EFFNET_PROFILES`` or ``$XDG_CACHE_HOME/effnet/profiles``
(``~/.cache/effnet/profiles``), one folder per machine (:meth:`Fingerprint.machine_key`), one file per runtime,
precision and batch. :func:`fastest_engines` reads, from there, what ``--runtime default`` should run.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effnet.errors import BadFile, InvalidValue
from effnet.io import atomic_write_json
from effnet.latency.features import DEFAULT_CACHE_BYTES, FEATURES
from effnet.latency.fingerprint import CPU_ENGINES, MACHINE_FIELDS, Fingerprint, current_fingerprint
from effnet.limits import read_json_file

__all__ = [
    "PROFILE_FORMAT",
    "LatencyModel",
    "EngineTiming",
    "Profile",
    "profiles_dir",
    "default_profile_path",
    "load_profile",
    "save_profile",
    "fastest_engines",
    "nearest_engine",
]

PROFILE_FORMAT = 1
"""The profile JSON's format version; a profile of another format is refused (re-run ``effnet profile``)."""
_MAX_ENGINE_ROWS = 64


def _number(name: str, value: Any, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < low:
        raise InvalidValue(f"{name} must be a finite number >= {low:g}, got {value!r}"[:200])
    return float(value)


@dataclass(frozen=True)
class LatencyModel:
    """The fitted model at the profile's batch: ``coefficients[i]`` ms per unit of ``features[i]``
    (:data:`effnet.latency.features.FEATURES`), fitted on blocks timed alone; a whole network takes ``scale`` ×
    the sum over its parts + ``weights_ms`` × its weights (read from memory, where a block timed alone keeps them
    in cache) + ``offset_ms`` (fitted on whole networks: what a block alone does not show). Peak
    memory MiB = ``memory_base_mb`` + ``memory_factor`` × (weights + peak activations at the profile's precision and
    batch, in MiB). ``cache_bytes``: the cache a tensor must fit in not to count as ``spill``."""

    features: tuple[str, ...]
    coefficients: tuple[float, ...]
    scale: float = 1.0
    offset_ms: float = 0.0
    memory_base_mb: float = 0.0
    memory_factor: float = 1.0
    cache_bytes: int = DEFAULT_CACHE_BYTES
    weights_ms: float = 0.0

    def __post_init__(self) -> None:
        if len(self.features) != len(self.coefficients):
            raise InvalidValue(f"model has {len(self.features)} features and {len(self.coefficients)} coefficients")
        unknown = sorted(set(self.features) - set(FEATURES))
        if unknown:
            raise InvalidValue(f"model has features this effnet does not compute: {', '.join(unknown)[:120]}")
        for name, value in zip(self.features, self.coefficients, strict=True):
            _number(f"coefficient of {name}", value)
        _number("scale", self.scale, 1e-6)
        _number("offset_ms", self.offset_ms)
        _number("weights_ms", self.weights_ms)
        _number("memory_base_mb", self.memory_base_mb)
        _number("memory_factor", self.memory_factor)
        if isinstance(self.cache_bytes, bool) or not isinstance(self.cache_bytes, int) or self.cache_bytes < 1:
            raise InvalidValue(f"cache_bytes must be a positive integer, got {self.cache_bytes!r}")

    def coefficient(self, feature: str) -> float:
        """The coefficient of ``feature`` (0 for a feature the model does not use)."""
        return dict(zip(self.features, self.coefficients, strict=True)).get(feature, 0.0)


@dataclass(frozen=True)
class EngineTiming:
    """One row of the engine table: each CPU engine's median ms on the reference network at ``batch`` and
    ``precision``, and the fastest of them."""

    precision: str
    batch: int
    ms: tuple[tuple[str, float], ...]

    def __post_init__(self) -> None:
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise InvalidValue(f"engine table batch must be an integer >= 1, got {self.batch!r}")
        if not self.ms or any(engine not in CPU_ENGINES for engine, _ in self.ms):
            raise InvalidValue(f"engine table rows name engines among {', '.join(CPU_ENGINES)}")
        for engine, ms in self.ms:
            _number(f"engine table ms of {engine}", ms, 1e-9)

    @property
    def fastest(self) -> str:
        """The engine with the lowest median."""
        return min(self.ms, key=lambda pair: pair[1])[0]


@dataclass(frozen=True)
class Profile:
    """What ``effnet profile`` measured on one machine and engine (:class:`Fingerprint`), the fitted
    :class:`LatencyModel`, the engine table (``engines``), the reference network of that table, and the fit's
    quality on the measured samples (``quality``: name -> value, e.g. the fraction within ±10 %)."""

    fingerprint: Fingerprint
    model: LatencyModel
    engines: tuple[EngineTiming, ...] = ()
    reference: str = "efficientnet_b0"
    quality: tuple[tuple[str, float], ...] = ()
    created: str = ""
    format: int = field(default=PROFILE_FORMAT)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it."""
        return {
            "format": self.format,
            "created": self.created,
            "fingerprint": self.fingerprint.to_dict(),
            "model": {
                "coefficients": dict(zip(self.model.features, self.model.coefficients, strict=True)),
                "scale": self.model.scale,
                "offset_ms": self.model.offset_ms,
                "weights_ms": self.model.weights_ms,
                "memory_base_mb": self.model.memory_base_mb,
                "memory_factor": self.model.memory_factor,
                "cache_bytes": self.model.cache_bytes,
            },
            "reference": self.reference,
            "engines": [{"precision": e.precision, "batch": e.batch, "ms": dict(e.ms)} for e in self.engines],
            "quality": dict(self.quality),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Profile:
        """Rebuild from :meth:`to_dict`; anything missing, mistyped or out of range is an ``InvalidValue``."""
        if not isinstance(data, dict):
            raise InvalidValue(f"a profile must be a JSON object, got {type(data).__name__}")
        if data.get("format") != PROFILE_FORMAT:
            raise InvalidValue(
                f"profile format {data.get('format')!r} is not this effnet's ({PROFILE_FORMAT}); "
                "run effnet profile again"
            )
        model = data.get("model")
        if not isinstance(model, dict) or not isinstance(model.get("coefficients"), dict):
            raise InvalidValue("a profile needs model.coefficients (feature -> ms per unit)")
        engines = data.get("engines", [])
        if not isinstance(engines, list) or len(engines) > _MAX_ENGINE_ROWS:
            raise InvalidValue(f"a profile's engines must be a list of at most {_MAX_ENGINE_ROWS} rows")
        rows = []
        for row in engines:
            if not isinstance(row, dict) or not isinstance(row.get("ms"), dict):
                raise InvalidValue("each engine row needs precision, batch and ms (engine -> ms)")
            rows.append(EngineTiming(str(row.get("precision")), row.get("batch", 0), tuple(row["ms"].items())))
        quality = data.get("quality", {})
        if not isinstance(quality, dict):
            raise InvalidValue("a profile's quality must be an object")
        return cls(
            fingerprint=Fingerprint.from_dict(data.get("fingerprint")),
            model=LatencyModel(
                tuple(model["coefficients"]),
                tuple(model["coefficients"].values()),
                model.get("scale", 1.0),
                model.get("offset_ms", 0.0),
                model.get("memory_base_mb", 0.0),
                model.get("memory_factor", 1.0),
                model.get("cache_bytes", DEFAULT_CACHE_BYTES),
                model.get("weights_ms", 0.0),
            ),
            engines=tuple(rows),
            reference=str(data.get("reference", "")),
            quality=tuple((str(k), _number(f"quality {k}", v, -math.inf)) for k, v in quality.items()),
            created=str(data.get("created", "")),
        )

    def fastest(self, precision: str) -> dict[int, str]:
        """Batch size -> the fastest engine measured at ``precision`` (empty if none was)."""
        return {e.batch: e.fastest for e in sorted(self.engines, key=lambda e: e.batch) if e.precision == precision}


def nearest_engine(table: dict[int, str], batch: int) -> str | None:
    """The engine of ``table`` (batch -> fastest engine) at the batch size nearest ``batch`` by ratio (a tie: the
    smaller), or None for an empty table."""
    if not table:
        return None
    return table[min(table, key=lambda b: (abs(math.log(b / batch)), b))]


def profiles_dir() -> Path:
    """Where default profiles live: ``$EFFNET_PROFILES``, else ``$XDG_CACHE_HOME/effnet/profiles`` (default
    ``~/.cache``)."""
    if os.environ.get("EFFNET_PROFILES"):
        return Path(os.environ["EFFNET_PROFILES"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "effnet" / "profiles"


def default_profile_path(fingerprint: Fingerprint) -> Path:
    """``<profiles_dir>/<machine key>/<runtime>-<precision>-b<batch>.json`` for ``fingerprint``."""
    name = f"{fingerprint.runtime}-{fingerprint.precision}-b{fingerprint.batch}.json"
    return profiles_dir() / fingerprint.machine_key() / name


def save_profile(profile: Profile, path: str | os.PathLike[str] | None = None) -> Path:
    """Write ``profile`` as JSON (atomically) to ``path`` (default: :func:`default_profile_path`); return the path."""
    target = Path(path) if path is not None else default_profile_path(profile.fingerprint)
    atomic_write_json(target, profile.to_dict())
    return target


def load_profile(
    path: str | os.PathLike[str],
    *,
    accept_foreign: bool = False,
    threads: int | None = None,
    cpuinfo: str | None = None,
) -> Profile:
    """Read the profile at ``path``, refusing one made on another machine or engine version.

    The machine (CPU model, vector extensions, CPUs) and the version of the profile's engine must equal this
    machine's (``cpuinfo``: a ``/proc/cpuinfo`` text to compare with instead), and so must the threads when
    ``threads`` is given (the profile predicts at its own threads); else a one-line :class:`~effnet.errors.BadFile`
    names the differences, unless ``accept_foreign``. A damaged, oversized (over
    :data:`effnet.limits.MAX_JSON_BYTES`) or other-format file is one line too.
    """
    data = read_json_file(path, "profile")
    try:
        profile = Profile.from_dict(data)
    except InvalidValue as exc:
        raise BadFile(f"profile {path}: {exc}") from None
    if not accept_foreign:
        here = current_fingerprint(threads=threads, cpuinfo=cpuinfo)
        fields = MACHINE_FIELDS if threads is not None else tuple(f for f in MACHINE_FIELDS if f != "threads")
        differences = profile.fingerprint.differences(here, fields)
        if differences:
            raise BadFile(
                f"profile {path} was measured elsewhere: {'; '.join(differences)}; run effnet profile here, or accept "
                "it explicitly (--accept-foreign-profile)"
            )
    return profile


def fastest_engines(precision: str, threads: int | None = None) -> dict[int, str]:
    """Batch -> fastest CPU engine at ``precision``, from this machine's newest default profile that measured it
    (same CPUs, threads and engine versions: :meth:`Fingerprint.machine_key`); empty when there is none or it is
    unreadable (serving then keeps its fixed crossover)."""
    folder = profiles_dir() / current_fingerprint(threads=threads).machine_key()
    try:
        candidates = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return {}
    for candidate in candidates:
        try:
            table = load_profile(candidate, threads=threads).fastest(precision)
        except (OSError, ValueError):  # a damaged or foreign file in the cache is skipped, not fatal
            continue
        if table:
            return table
    return {}
