"""Atomic file writes: a temp file in the same folder, fsync, then rename over the target.

A kill at any moment leaves either the old file or the new one, never a partial one.
Nothing here imports torch; ``atomic_path`` lets torch/safetensors writers use the same guarantee.
:func:`check_output` refuses, before any work, an output that is also an input (same path after symlinks,
or the same inode) or that is a file where a folder is expected (or the reverse).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from effnet.errors import OutputConflict

__all__ = [
    "check_output",
    "same_file",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "append_line",
    "json_safe",
    "json_text",
]


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file: equal after resolving symlinks, or one inode (hard links)."""
    pa, pb = Path(a), Path(b)
    if pa.resolve() == pb.resolve():
        return True
    try:
        return os.path.samefile(pa, pb)
    except OSError:  # one of them does not exist yet
        return False


def check_output(
    output: str | os.PathLike[str] | None,
    flag: str = "--output",
    *,
    folder: bool = False,
    inputs: dict[str, str | os.PathLike[str] | None] | None = None,
) -> None:
    """Refuse ``output`` before work starts when writing it would lose a file or cannot work.

    ``folder``: the output is a directory (a run folder), else a file. ``inputs``: ``{flag: path}`` of what the
    command reads; an output naming one of them (or, for a folder, an input file that is the folder itself)
    is an :class:`~effnet.errors.OutputConflict` naming both flags, and so is, for a folder, an input inside it.
    ``None`` outputs and inputs are skipped.
    """
    if output is None:
        return
    target = Path(output)
    for name, source in (inputs or {}).items():
        if source is not None and same_file(target, source):
            raise OutputConflict(f"{flag} {target} is also the {name} input; choose another {flag} path")
        if source is not None and folder and _inside(Path(source), target):
            raise OutputConflict(
                f"{name} {source} lies inside {flag} {target}, which this run writes into; copy it "
                f"elsewhere or choose another {flag}"
            )
    if folder and target.exists() and not target.is_dir():
        raise OutputConflict(f"{flag} {target} is an existing file; expected a folder (new or existing)")
    if not folder and target.is_dir():
        raise OutputConflict(f"{flag} {target} is an existing folder; expected a file path")
    if not folder and target.exists() and not target.is_file():
        raise OutputConflict(f"{flag} {target} is not a regular file (a FIFO or device); expected a file path")


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is strictly inside ``folder`` (both resolved; symlinks followed)."""
    try:
        return path.resolve().is_relative_to(folder.resolve()) and path.resolve() != folder.resolve()
    except (OSError, RuntimeError):
        return False


def _umask() -> int:
    """The process umask, read without changing it (Linux ``/proc``; else the common 022)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on clean exit fsync it and rename it onto ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600; give the file the mode an ordinary open() would (or keep the target's).
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        with contextlib.suppress(OSError):  # make the rename itself durable
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """A copy of ``obj`` that strict JSON can hold: NaN and ±inf floats become ``None`` (``null``), tuples lists,
    mapping keys strings; everything else as is."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def json_text(obj: Any, indent: int | None = None) -> str:
    """``obj`` as strict JSON text (what every JSON file and ``--json`` output of effnet is written with): a
    non-finite float is written ``null``, never as the ``NaN``/``Infinity`` that JSON parsers refuse."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented strict JSON (:func:`json_text`) to ``path`` atomically."""
    atomic_write_text(path, json_text(obj, indent=2) + "\n")


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append one line (a JSONL record) with a single ``write`` and fsync, so a kill cannot split it.

    A torn last line left by an earlier crash (no trailing newline) is discarded first.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and target.stat().st_size:
        data = target.read_bytes()
        if not data.endswith(b"\n"):
            atomic_write_bytes(target, data[: data.rfind(b"\n") + 1])
    with open(target, "ab") as handle:
        handle.write((line.rstrip("\n") + "\n").encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
