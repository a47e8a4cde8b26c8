"""Fault injection for tests: the Nth write under a folder, and every one after it, fails with an OS error.

``inject(root, errno.ENOSPC, nth)`` patches, for paths under ``root`` only, every Python-level way effnet writes a
file: ``open``/``io.open`` for writing (the open and each ``write`` of the file it returns), ``os.open`` with write
flags (and ``os.write`` on the descriptors it returns), ``os.replace``/``os.rename`` onto a path under ``root``,
``os.mkdir`` and ``os.link``. Each such call is one operation; from the ``nth`` on, each raises
``OSError(error)``, as a full disk or a read-only mount does. A failing ``write`` first writes half its data (a
full disk accepts what fits), so a writer that leaves a torn file behind is caught. Writers in C (torch.save,
safetensors, OpenVINO) are not patched; a real full tmpfs (``conftest.small_tmpfs``) covers them.
``Injector.count`` is the number of operations seen, so a test can fail each of them in turn. :func:`run_child` runs
the CLI in a child process with the same patches installed.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Injector", "inject", "install", "run_child", "ERRORS", "TINY_TRAIN"]

TINY_TRAIN = ["--model", "efficientnet_b0", "--width", "0.25", "--depth", "0.25", "--resolution", "16"]
TINY_TRAIN += ["--epochs", "1", "--batch-size", "8", "--threads", "1", "--augment", "none"]
"""``effnet train`` flags of the smallest quick run the fault tests train."""

ERRORS = {"ENOSPC": errno.ENOSPC, "EROFS": errno.EROFS, "EACCES": errno.EACCES}
"""The faults the tests inject: disk full, read-only file system, permission denied."""

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_ORIGINAL = {
    "open": builtins.open,
    "os.open": os.open,
    "os.write": os.write,
    "os.close": os.close,
    "os.replace": os.replace,
    "os.rename": os.rename,
    "os.mkdir": os.mkdir,
    "os.link": os.link,
}


class Injector:
    """Counts write operations under ``root`` and fails the ``nth`` and later ones with ``error`` (0: never);
    ``names``: only files whose name starts with one of these (a temp file's leading dot ignored)."""

    def __init__(self, root: str | os.PathLike[str], error: int, nth: int, names: tuple[str, ...] = ()) -> None:
        self.root = os.path.realpath(root)
        self.error, self.nth, self.names = error, nth, names
        self.count = 0
        self.failed = 0
        self.fds: set[int] = set()

    def under(self, path: Any) -> bool:
        """Whether ``path`` (a path, not a descriptor) lies under the root."""
        if isinstance(path, int) or path is None:
            return False
        try:
            full = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        if self.names and not os.path.basename(full).lstrip(".").startswith(self.names):
            return False
        return full == self.root or full.startswith(self.root + os.sep)

    def tick(self, path: Any, partial: Any = None) -> None:
        """One operation on ``path``; raises the fault once the count reaches ``nth`` (``partial()`` runs first)."""
        self.count += 1
        if self.nth and self.count >= self.nth:
            self.failed += 1
            if partial is not None:
                partial()
            raise OSError(self.error, os.strerror(self.error), os.fsdecode(path) if path is not None else None)

    # the patched functions -------------------------------------------------------------------------------------

    def open(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        writing = any(c in mode for c in "wax+")
        if not (writing and self.under(file)):
            return _ORIGINAL["open"](file, mode, *args, **kwargs)
        self.tick(file)
        return _File(_ORIGINAL["open"](file, mode, *args, **kwargs), self, file)

    def os_open(self, path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        watched = bool(flags & _WRITE_FLAGS) and self.under(path)
        if watched:
            self.tick(path)
        fd = _ORIGINAL["os.open"](path, flags, *args, **kwargs)
        if watched:
            self.fds.add(fd)
        return fd

    def os_write(self, fd: int, data: Any) -> int:
        if fd in self.fds and self.under(f"/proc/self/fd/{fd}"):  # the descriptor still names a file under root
            view = memoryview(data)
            self.tick(f"fd {fd}", partial=lambda: _ORIGINAL["os.write"](fd, view[: len(view) // 2]))
        return _ORIGINAL["os.write"](fd, data)

    def os_close(self, fd: int) -> None:
        self.fds.discard(fd)
        _ORIGINAL["os.close"](fd)

    def replace(self, src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if self.under(dst):
            self.tick(dst)
        _ORIGINAL["os.replace"](src, dst, *args, **kwargs)

    def rename(self, src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if self.under(dst):
            self.tick(dst)
        _ORIGINAL["os.rename"](src, dst, *args, **kwargs)

    def mkdir(self, path: Any, *args: Any, **kwargs: Any) -> None:
        if self.under(path):
            self.tick(path)
        _ORIGINAL["os.mkdir"](path, *args, **kwargs)

    def link(self, src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if self.under(dst):
            self.tick(dst)
        _ORIGINAL["os.link"](src, dst, *args, **kwargs)


class _File:
    """A file opened for writing under the root: each ``write`` is one operation."""

    def __init__(self, handle: Any, injector: Injector, path: Any) -> None:
        self._handle, self._injector, self._path = handle, injector, path

    def write(self, data: Any) -> int:
        half = data[: len(data) // 2]
        self._injector.tick(self._path, partial=lambda: (self._handle.write(half), self._handle.flush()))
        return self._handle.write(data)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._handle)

    def __enter__(self) -> _File:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.close()


def _patches(injector: Injector) -> list[tuple[Any, str, Any]]:
    return [
        (builtins, "open", injector.open),
        (io, "open", injector.open),
        (os, "open", injector.os_open),
        (os, "write", injector.os_write),
        (os, "close", injector.os_close),
        (os, "replace", injector.replace),
        (os, "rename", injector.rename),
        (os, "mkdir", injector.mkdir),
        (os, "link", injector.link),
    ]


def install(root: str | os.PathLike[str], error: int, nth: int) -> Injector:
    """Patch this process for good (a child process's preamble); returns the injector."""
    injector = Injector(root, error, nth)
    for module, name, value in _patches(injector):
        setattr(module, name, value)
    return injector


@contextlib.contextmanager
def inject(
    root: str | os.PathLike[str], error: int = errno.ENOSPC, nth: int = 0, names: tuple[str, ...] = ()
) -> Iterator[Injector]:
    """Within the block, the ``nth`` write operation under ``root`` (on files named ``names*``, if given) and every
    later one fail with ``error`` (``nth=0``: none fails; ``count`` then says how many there are)."""
    injector = Injector(root, error, nth, names)
    saved = [(module, name, getattr(module, name)) for module, name, _ in _patches(injector)]
    for module, name, value in _patches(injector):
        setattr(module, name, value)
    try:
        yield injector
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
import faults
injector = faults.install({root!r}, {error!r}, {nth!r})
from effnet.cli import main
try:
    status = main({argv!r})
finally:
    print(f"faults: {{injector.count}} operations, {{injector.failed}} failed", file=sys.stderr)
sys.exit(status)
"""


def run_child(
    argv: Sequence[str], root: str | os.PathLike[str], error: int, nth: int, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``effnet ARGV`` in a child process whose ``nth`` and later writes under ``root`` fail with ``error``; its
    last stderr line is ``faults: N operations, M failed``."""
    code = _CHILD.format(tests=str(Path(__file__).parent), root=str(root), error=error, nth=nth, argv=list(argv))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), *sys.path])}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
