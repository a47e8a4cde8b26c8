"""What makes two latency measurements comparable: the machine, the engine and its version, threads, precision, batch.

:func:`current_fingerprint` reads this machine without importing torch (``/proc/cpuinfo``, the CPUs this process
may run on, package versions from ``importlib.metadata``); :meth:`Fingerprint.differences` names what differs
between a profile's fingerprint and this machine's, so a profile made elsewhere is refused in one line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effnet.errors import InvalidValue
from effnet.latency.features import DEFAULT_CACHE_BYTES

__all__ = [
    "CPU_ENGINES",
    "ENGINE_PACKAGES",
    "MACHINE_FIELDS",
    "Fingerprint",
    "cpu_info",
    "cache_bytes",
    "cpu_flags",
    "cpu_model",
    "package_versions",
    "current_fingerprint",
]

CPU_ENGINES: tuple[str, ...] = ("onnxruntime", "openvino")
"""The CPU engines a profile measures (``--runtime default`` chooses between them)."""
ENGINE_PACKAGES: tuple[str, ...] = ("effnet", "onnxruntime", "openvino", "torch")
"""Packages whose versions a fingerprint records."""
_SIMD_PREFIXES = ("avx", "amx", "fma", "sse", "ssse", "f16c", "asimd", "sve", "neon", "vnni", "bf16", "i8mm")
"""The CPU flags that change how fast a kernel runs (vector and matrix extensions); the others (mitigations,
virtualisation) differ between kernels of one machine and are not recorded."""
MACHINE_FIELDS = ("device", "cpu_model", "cpu_flags", "cpus", "threads")
"""The fields that say which machine (with which threads) a profile describes."""


def cpu_info() -> str:
    """This machine's ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def _first(cpuinfo: str, keys: tuple[str, ...]) -> str:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys:
            return value.strip()
    return ""


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The flags of the first processor in ``cpuinfo`` (default: this machine's ``/proc/cpuinfo``; empty if absent)."""
    text = cpu_info() if cpuinfo is None else cpuinfo
    return frozenset(_first(text, ("flags", "Features")).split())


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name (``/proc/cpuinfo``; else the platform's processor or architecture)."""
    text = cpu_info() if cpuinfo is None else cpuinfo
    return _first(text, ("model name", "Hardware", "Model")) or platform.processor() or platform.machine()


def package_versions(names: tuple[str, ...] = ENGINE_PACKAGES) -> tuple[tuple[str, str], ...]:
    """``(package, version)`` of each installed package among ``names`` (``importlib.metadata``; no import)."""
    found = []
    for name in names:
        try:
            found.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            continue
    return tuple(found)


def cache_bytes(level: int = 2) -> int:
    """The size in bytes of this CPU's level-``level`` data or unified cache (Linux ``/sys``), else
    :data:`~effnet.latency.features.DEFAULT_CACHE_BYTES`."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if int((index / "level").read_text()) != level or (index / "type").read_text().strip() == "Instruction":
                continue
            text = (index / "size").read_text().strip()
            return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
        except (OSError, ValueError):
            continue
    return DEFAULT_CACHE_BYTES


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Fingerprint:
    """The hardware and software a profile was measured on.

    ``runtime`` is what was asked (``default``, ``onnxruntime``, ``openvino``), ``engine`` what ran; ``versions``
    are ``(package, version)`` pairs; ``cpu_flags`` only the vector/matrix extensions.
    """

    device: str
    cpu_model: str
    cpu_flags: tuple[str, ...]
    cpus: int
    threads: int
    runtime: str
    engine: str
    precision: str
    batch: int
    versions: tuple[tuple[str, str], ...]

    def version(self, package: str) -> str | None:
        """The recorded version of ``package`` (None if it was not installed)."""
        return dict(self.versions).get(package)

    def machine_key(self) -> str:
        """A short hash of the machine, its threads and the engines' versions: the folder of its default profiles."""
        engines = [(p, v) for p, v in self.versions if p in CPU_ENGINES]
        text = repr([getattr(self, f) for f in MACHINE_FIELDS] + engines)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def differences(self, other: Fingerprint, fields: tuple[str, ...] = MACHINE_FIELDS) -> list[str]:
        """What differs, as ``"<field> <mine> (here <other's>)"`` phrases: the ``fields`` and the engine's version."""
        out = []
        for name in fields:
            mine, theirs = getattr(self, name), getattr(other, name)
            if name == "cpu_flags" and mine != theirs:
                only_mine, only_theirs = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
                out.append(f"cpu flags {' '.join(only_mine) or '-'} (here {' '.join(only_theirs) or '-'})")
            elif mine != theirs:
                out.append(f"{name.replace('_', ' ')} {mine!r} (here {theirs!r})")
        for package in CPU_ENGINES if self.engine not in CPU_ENGINES else (self.engine,):
            if self.version(package) != other.version(package):
                out.append(f"{package} {self.version(package)} (here {other.version(package)})")
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it."""
        data = dataclasses.asdict(self)
        data["cpu_flags"] = list(self.cpu_flags)
        data["versions"] = dict(self.versions)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Fingerprint:
        """Rebuild from :meth:`to_dict`; a missing or mistyped field is an :class:`~effnet.errors.InvalidValue`."""
        if not isinstance(data, dict):
            raise InvalidValue(f"fingerprint must be an object, got {type(data).__name__}")
        kinds = {"cpus": int, "threads": int, "batch": int, "cpu_flags": list, "versions": dict}
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = data.get(f.name)
            kind = kinds.get(f.name, str)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise InvalidValue(f"fingerprint.{f.name} must be a {kind.__name__}, got {value!r}"[:200])
            values[f.name] = value
        if not all(isinstance(x, str) for x in values["cpu_flags"]):
            raise InvalidValue("fingerprint.cpu_flags must be a list of strings")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in values["versions"].items()):
            raise InvalidValue("fingerprint.versions must map package names to version strings")
        values["cpu_flags"] = tuple(values["cpu_flags"])
        values["versions"] = tuple(sorted(values["versions"].items()))
        return cls(**values)


def current_fingerprint(
    runtime: str = "default",
    engine: str = "",
    precision: str = "fp32",
    batch: int = 1,
    threads: int | None = None,
    device: str = "cpu",
    cpuinfo: str | None = None,
) -> Fingerprint:
    """This machine's fingerprint for a measurement by ``engine`` (asked as ``runtime``) at ``precision``, ``batch``
    and ``threads`` (default: the CPUs this process may use, which is what torch and the engines use by default).

    Torch-free: the CPU from ``cpuinfo`` (default ``/proc/cpuinfo``), versions from ``importlib.metadata``.
    """
    text = cpu_info() if cpuinfo is None else cpuinfo
    flags = sorted(f for f in cpu_flags(text) if f.startswith(_SIMD_PREFIXES))
    return Fingerprint(
        device=device,
        cpu_model=cpu_model(text),
        cpu_flags=tuple(flags),
        cpus=_cpus(),
        threads=threads if threads is not None else _cpus(),
        runtime=runtime,
        engine=engine,
        precision=precision,
        batch=batch,
        versions=tuple(sorted(package_versions())),
    )
