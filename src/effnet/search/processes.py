"""Process hygiene of ``effnet search|curves --jobs``: helpers die with their parent; SIGTERM acts as Ctrl-C (the
cores a process may use: :func:`effnet.machine.usable_cpus`).

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
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["interrupt_on_sigterm", "die_with_parent"]

_PR_SET_PDEATHSIG = 1


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
