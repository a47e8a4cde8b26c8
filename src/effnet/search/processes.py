"""Process hygiene of ``effnet search|curves --jobs`` and ``effnet scale``: the cores a process may use and how
many of them are free; helpers die with their parent; SIGTERM acts as Ctrl-C.

A local worker process asks the Linux kernel to send it SIGTERM when its parent dies
(``prctl(PR_SET_PDEATHSIG)`` through ``ctypes``) and, on any system, runs a watchdog thread that sends it SIGTERM
once its parent process id changes (the parent is gone, whatever killed it). SIGTERM raises
``KeyboardInterrupt`` in the main thread, which Optuna's ``optimize`` turns into a FAILed trial at once (and the
search enqueues the point again), so neither a stray process nor a RUNNING trial is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["usable_cpus", "FreeCores", "free_cpus", "interrupt_on_sigterm", "die_with_parent"]

_PR_SET_PDEATHSIG = 1


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
    the 1-minute load average they were judged by."""

    threads: int
    cores: int
    load: float


def free_cpus() -> FreeCores:
    """How many threads a timed run may use now without oversubscribing the cores: the usable cores (affinity, and a
    cgroup quota below it) less the 1-minute load average, rounded, at least 1. On a busy 2-core machine that is 1
    thread, where 2 threads would make timings swing by 100x (issue 21)."""
    cores = usable_cpus()
    quota = _cpu_quota()
    if quota is not None:
        cores = max(1, min(cores, math.floor(quota + 1e-9)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return FreeCores(max(1, min(cores, round(cores - load))), cores, round(load, 2))


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` in the main thread (no-op in other threads)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def die_with_parent(parent: int, interval: float = 1.0) -> threading.Thread:
    """Send this process SIGTERM when process ``parent`` exits: kernel death signal on Linux plus a watchdog.

    Returns the (daemon) watchdog thread. If the parent is already gone, SIGTERM is sent at once.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    stop = threading.Event()

    def watch() -> None:
        while os.getppid() == parent and not stop.wait(interval):
            pass
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="effnet-parent-watchdog", daemon=True)
    thread.start()
    return thread
