"""The deadline and stall detector of a download (:class:`Watch`), a blocking call run under one
(:func:`watched`), and the removal of partial files a killed download left (:func:`remove_stale`).

:mod:`effnet.models.download` watches both of its paths with these; the bounds are :mod:`effnet.limits`'
``DOWNLOAD_DEADLINE_S``, ``DOWNLOAD_STALL_WINDOW_S`` and ``DOWNLOAD_MIN_BYTES_PER_S``, read when a watch is made.
Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import effnet.limits as limits

__all__ = [
    "PROBE_TIMEOUT_S",
    "Stalled",
    "Watch",
    "watched",
    "run_helper",
    "remove_stale",
    "unreachable",
    "describe_error",
]

T = TypeVar("T")

PROBE_TIMEOUT_S = 5.0
"""How long :func:`unreachable` waits for a TCP connection to a download host before it says there is no network."""


class Stalled(Exception):
    """A download given up on by its :class:`Watch` (the reason is the message)."""


class Watch:
    """The deadline and stall detector of one download: :meth:`add` counts bytes as they arrive, :meth:`problem`
    says why to give up (run past ``deadline_s``; fewer than ``min_rate × window_s`` bytes in the last
    ``window_s``), :meth:`check` raises it as :class:`Stalled`. Thread-safe for one writer and one reader."""

    def __init__(self, deadline_s: float, window_s: float, min_rate: float) -> None:
        self.deadline_s, self.window_s, self.min_rate = deadline_s, window_s, min_rate
        self.start = time.monotonic()
        self.total = 0
        self._samples: deque[tuple[float, int]] = deque([(self.start, 0)])  # (time, bytes so far), 1/16 window apart
        self._lock = threading.Lock()
        self.cancelled: str | None = None

    def bounds(self) -> dict[str, float]:
        """The keyword arguments that make a watch with these bounds (for a helper process)."""
        return {"deadline_s": self.deadline_s, "window_s": self.window_s, "min_rate": self.min_rate}

    def helper_timeout_s(self) -> float:
        """How long a helper process that runs a download under such a watch may live: the deadline, two stall
        windows for the download to end, and a minute to start and answer."""
        return self.deadline_s + 2 * self.window_s + 60

    @classmethod
    def from_limits(cls) -> Watch:
        """A watch with :mod:`effnet.limits`' download bounds (read when called)."""
        return cls(limits.DOWNLOAD_DEADLINE_S, limits.DOWNLOAD_STALL_WINDOW_S, limits.DOWNLOAD_MIN_BYTES_PER_S)

    def add(self, n: int) -> None:
        """Count ``n`` more bytes received now."""
        now = time.monotonic()
        with self._lock:
            self.total += n
            if now - self._samples[-1][0] >= self.window_s / 16:
                self._samples.append((now, self.total))
            while len(self._samples) > 2 and self._samples[1][0] <= now - self.window_s:
                self._samples.popleft()

    def wait_s(self) -> float:
        """How long one wait (to connect, for a response, for the next bytes) may block: the window, or less when
        the deadline is nearer."""
        return max(0.01, min(self.window_s, self.deadline_s - (time.monotonic() - self.start)))

    def problem(self) -> str | None:
        """Why this download must stop now, else None."""
        if self.cancelled:
            return self.cancelled
        elapsed = time.monotonic() - self.start
        if elapsed > self.deadline_s:
            return f"not finished after {self.deadline_s:g} s (effnet.limits.DOWNLOAD_DEADLINE_S)"
        if elapsed < self.window_s:
            return None
        since = time.monotonic() - self.window_s
        with self._lock:
            before = next((total for t, total in reversed(self._samples) if t <= since), 0)
            got = self.total - before
        if got < self.min_rate * self.window_s:
            return (
                f"stalled: {got:,} bytes in the last {self.window_s:g} s, below {self.min_rate:,g} bytes/s "
                "(effnet.limits.DOWNLOAD_STALL_WINDOW_S, DOWNLOAD_MIN_BYTES_PER_S)"
            )
        return None

    def check(self) -> None:
        """Raise :class:`Stalled` when :meth:`problem` has a reason."""
        reason = self.problem()
        if reason:
            self.cancelled = reason
            raise Stalled(reason)


def remove_stale(folder: Path, pattern: str, window_s: float | None = None) -> list[Path]:
    """Remove the files matching ``pattern`` in ``folder`` untouched for two stall windows: partial downloads of
    a killed run (a live download writes at least every window, or stops). Returns those removed."""
    age = 2 * (limits.DOWNLOAD_STALL_WINDOW_S if window_s is None else window_s)
    removed = []
    try:
        candidates = list(folder.glob(pattern))
    except OSError:
        return removed
    for path in candidates:
        try:
            if path.is_file() and not path.is_symlink() and time.time() - path.stat().st_mtime > age:
                path.unlink()
                removed.append(path)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    return removed


def watched(call: Callable[[], T], watch: Watch) -> T:
    """``call()`` in a helper thread, given up on (:class:`Stalled`) as soon as ``watch`` has a reason."""
    result: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            result["path"] = call()
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="effnet-download", daemon=True).start()
    poll = max(0.01, min(0.25, watch.window_s / 8))
    while not done.wait(poll):
        reason = watch.problem()
        if reason:
            watch.cancelled = reason  # the helper stops at its next chunk and removes its partial file
            done.wait(min(1.0, watch.window_s))
            raise Stalled(reason)
    if "error" in result:
        raise result["error"]
    return result["path"]


def run_helper(code: str, payload: Mapping[str, Any], timeout_s: float) -> dict[str, Any] | None:
    """Run ``python -c code`` with ``payload`` as JSON on its stdin and return the JSON object of the last line it
    prints (its stderr is this process's: progress bars show); ``{"exit": status}`` when it ends without one.
    Killed, and None returned, if it runs past ``timeout_s``; killed too if this process is interrupted meanwhile.
    The helper imports this copy of effnet (its folder leads ``PYTHONPATH``)."""
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        out, _ = child.communicate(json.dumps(dict(payload)), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    lines = out.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        answer = None
    return answer if isinstance(answer, dict) else {"exit": child.returncode}


def describe_error(exc: BaseException | None) -> str:
    """An exception as one short phrase (its type and first line) for a download's error message."""
    if exc is None:
        return "no response"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text and text[0] else type(exc).__name__


def unreachable(url: str) -> str | None:
    """Why ``url``'s host (or the proxy the environment names for it) takes no TCP connection within
    :data:`PROBE_TIMEOUT_S`, e.g. no network or no DNS; None when it does. One quick probe, so that a machine
    without network says so once instead of through a client's retries."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        via = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = via.hostname or "", via.port or 80
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return None
    except (OSError, UnicodeError) as exc:
        return describe_error(exc)
