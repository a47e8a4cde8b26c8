"""What this machine has, asked at run time (torch-free): usable CPU cores and available memory, and the one rule
that bounds every count of processes or threads a command starts by them.

- :func:`usable_cpus`: the cores this process may run on (its affinity mask, e.g. under ``taskset``).
- :func:`free_cpus`: how many threads a timed run may use now without oversubscribing the cores (usable cores,
  a cgroup CPU quota, less the cores busy now: :func:`busy_cores`).
- :func:`available_memory`: the bytes a new allocation can still get: ``MemAvailable`` of ``/proc/meminfo``, lowered
  to the room left under a cgroup (container) memory limit; None where neither can be read. A CUDA device's memory
  is :func:`effnet.serving.hardware.device_memory` (it asks torch).
- :func:`bound_count`: a count of processes or threads (``--jobs``, ``--workers``, ``--threads``) above what the
  machine has is lowered to it, with one :class:`~effnet.errors.Lowered` warning line naming both (the CLI prints
  it as ``effnet <command>: note: ...``); the work is done, at the parallelism the machine can give.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from pathlib import Path
from typing import NamedTuple

from effnet.errors import Lowered

__all__ = ["usable_cpus", "FreeCores", "busy_cores", "free_cpus", "available_memory", "bound_count"]

_CGROUP = Path("/sys/fs/cgroup")


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under ``taskset``), else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _cpu_quota() -> float | None:
    """The cgroup's CPU quota in cores (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``); None when unlimited or unknown."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    with contextlib.suppress(OSError, ValueError):
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 else None
    return None


class FreeCores(NamedTuple):
    """Threads that do not oversubscribe the cores, the cores this process may use (affinity and cgroup quota) and
    the busy cores they were judged by (:func:`busy_cores`)."""

    threads: int
    cores: int
    load: float


def _cpu_times(stat: str) -> tuple[int, int] | None:
    """(busy, total) jiffies of the aggregate ``cpu`` line of ``/proc/stat`` text; idle and iowait are not busy."""
    for line in stat.splitlines():
        fields = line.split()
        if fields[:1] == ["cpu"] and len(fields) >= 5 and all(f.isdigit() for f in fields[1:]):
            values = [int(f) for f in fields[1:9]]  # user nice system idle iowait irq softirq steal
            return sum(values) - values[3] - values[4], sum(values)
    return None


def busy_cores(window_s: float = 0.3, stat: Path = Path("/proc/stat")) -> float:
    """How many cores other work keeps busy *now*: the busy share of all CPUs over the next ``window_s`` seconds
    (``/proc/stat``) times their count; the 1-minute load average where that cannot be read. The load average lags
    by a minute, so right after a heavy command it would still count that command's cores as busy."""
    try:
        first = _cpu_times(stat.read_text())
        time.sleep(window_s)
        second = _cpu_times(stat.read_text())
    except OSError:
        first = second = None
    if first is not None and second is not None and second[1] > first[1]:
        share = (second[0] - first[0]) / (second[1] - first[1])
        return max(0.0, share) * (os.cpu_count() or 1)
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def free_cpus() -> FreeCores:
    """How many threads a timed run may use now without oversubscribing the cores: the usable cores (affinity, and a
    cgroup quota below it) less the cores other work keeps busy now (:func:`busy_cores`), rounded, at least 1. On a
    busy 2-core machine that is 1 thread, where 2 threads would make timings swing by 100x ."""
    cores = usable_cpus()
    quota = _cpu_quota()
    if quota is not None:
        cores = max(1, min(cores, math.floor(quota + 1e-9)))
    load = busy_cores()
    return FreeCores(max(1, min(cores, round(cores - load))), cores, round(load, 2))


def _meminfo_available(meminfo: str) -> int | None:
    for line in meminfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "MemAvailable":
            parts = value.split()
            if parts and parts[0].isdigit():
                return int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    return None


def _cgroup_room(root: Path) -> int | None:
    """Bytes left under the cgroup v2 (``memory.max`` − ``memory.current``) or v1 limit of this process."""
    for limit_name, usage_name in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        try:
            limit = (root / limit_name).read_text().strip()
            usage = (root / usage_name).read_text().strip()
        except OSError:
            continue
        if limit.isdigit() and usage.isdigit() and int(limit) < 1 << 60:  # "max" or a huge number: no limit
            return max(0, int(limit) - int(usage))
    return None


def available_memory(meminfo: str | None = None, cgroup: Path | None = None) -> int | None:
    """Bytes of memory a new allocation can get now: ``MemAvailable`` (from ``meminfo``, default this machine's
    ``/proc/meminfo``), lowered to the room under this process's cgroup memory limit (default ``/sys/fs/cgroup``);
    None where neither is known (then nothing is refused for memory)."""
    if meminfo is None:
        try:
            meminfo = Path("/proc/meminfo").read_text()
        except OSError:
            meminfo = ""
    known = [
        n for n in (_meminfo_available(meminfo), _cgroup_room(_CGROUP if cgroup is None else cgroup)) if n is not None
    ]
    return min(known) if known else None


def bound_count(flag: str, value: int, limit: int, why: str) -> int:
    """``value`` when it is at most ``limit``, else ``limit`` (at least 1) with one :class:`~effnet.errors.Lowered`
    warning: ``{flag} {value} lowered to {limit} ({why})``, e.g. ``--jobs 1000 lowered to 2 (2 usable CPU cores, 6
    trials)``."""
    limit = max(1, limit)
    if value <= limit:
        return value
    warnings.warn(Lowered(f"{flag} {value} lowered to {limit} ({why})"), stacklevel=2)
    return limit
