"""Atomic file writes: a temp file in the same folder, fsync, then rename over the target.

A kill at any moment leaves either the old file or the new one, never a partial one. A write that fails (disk full,
read-only file system, permission denied) is one :class:`~effnet.errors.WriteFailed` line naming the path and the OS
error, and leaves the target as it was: its temp file is removed, an append is cut back to the previous end.
effnet never writes through a link: a target that is a symbolic link is refused (:class:`OutputConflict` naming it),
appends open with ``O_NOFOLLOW`` and first give a file with other hard links a copy of its own.
Nothing here imports torch; ``atomic_path`` lets torch/safetensors writers use the same guarantee.
:func:`check_output` refuses, before any work, an output (or a file it writes beside itself) that is also an input
(same path after symlinks, or the same inode) or that is a file where a folder is expected (or the reverse).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from effnet.errors import EffnetError, OutputConflict, WriteFailed

__all__ = [
    "InputPaths",
    "check_output",
    "refuse_existing",
    "same_file",
    "write_error",
    "refuse_link",
    "make_folder",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "append_line",
    "json_safe",
    "json_text",
]

PathLike = str | os.PathLike[str]
InputPaths = PathLike | Iterable[PathLike] | None
"""What a command reads under one flag: a file or folder, or the list of files it reads (e.g. every image of
``--data``), or None."""


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether two paths name one file: equal after resolving symlinks, or one inode (hard links)."""
    pa, pb = Path(a), Path(b)
    with contextlib.suppress(OSError, RuntimeError):  # RuntimeError: a symlink loop
        if pa.resolve() == pb.resolve():
            return True
    try:
        return os.path.samefile(pa, pb)
    except OSError:  # one of them does not exist yet
        return False


def _identity(path: PathLike) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def _read_by(target: Path, source: InputPaths) -> bool:
    """Whether writing ``target`` would write a file of ``source`` (one path, or the files a command reads)."""
    if source is None:
        return False
    if isinstance(source, (str, os.PathLike)):
        return same_file(target, source)
    key = _identity(target)  # an output that does not exist yet is no file a command reads
    return key is not None and any(_identity(file) == key for file in source)


def check_output(
    output: PathLike | None,
    flag: str = "--output",
    *,
    folder: bool = False,
    inputs: Mapping[str, InputPaths] | None = None,
    companions: Iterable[PathLike] = (),
) -> None:
    """Refuse ``output`` before work starts when writing it would lose a file or cannot work.

    ``folder``: the output is a directory (a run folder), else a file. ``inputs``: ``{flag: path or files}`` of what
    the command reads; an output naming one of them (or, for a folder, an input file that is the folder itself)
    is an :class:`~effnet.errors.OutputConflict` naming both flags, and so is, for a folder, an input inside it.
    ``companions``: the other files the command writes (beside the output, e.g. OpenVINO's ``.bin``), held to the
    same rules. ``None`` outputs and inputs are skipped. A new file inside an input folder is allowed.
    """
    if output is None:
        return
    target = Path(output)
    sources = {k: v if v is None or isinstance(v, (str, os.PathLike)) else list(v) for k, v in (inputs or {}).items()}
    for written in (target, *map(Path, companions)):
        what = f"{flag} {target}" if written == target else f"{written}, which {flag} {target} writes beside it,"
        for name, source in sources.items():
            if _read_by(written, source):
                read = "" if isinstance(source, (str, os.PathLike)) else " (a file it reads)"
                raise OutputConflict(f"{what} is also the {name} input{read}; choose another {flag} path")
    for name, source in sources.items():
        if isinstance(source, (str, os.PathLike)) and folder and _inside(Path(source), target):
            raise OutputConflict(
                f"{name} {source} lies inside {flag} {target}, which this run writes into; copy it "
                f"elsewhere or choose another {flag}"
            )
    if folder and target.exists() and not target.is_dir():
        raise OutputConflict(f"{flag} {target} is an existing file; expected a folder (new or existing)")
    for written in () if folder else (target, *map(Path, companions)):
        if written.is_dir():
            raise OutputConflict(f"{flag} {written} is an existing folder; expected a file path")
        if written.exists() and not written.is_file():
            raise OutputConflict(f"{flag} {written} is not a regular file (a FIFO or device); expected a file path")
        refuse_link(written)


def refuse_existing(
    output: str | os.PathLike[str] | None,
    flag: str = "--output",
    *,
    overwrite: bool,
    companions: tuple[str | os.PathLike[str], ...] = (),
) -> None:
    """The rule for outputs that exist: no command replaces a result unless told. An existing ``output`` (or a
    file it writes beside itself, ``companions``) is an :class:`~effnet.errors.OutputConflict` naming it, unless
    ``overwrite`` (``--overwrite``). Continuing the same work is not replacing: ``train --resume`` and a search or
    curves study re-run into its own folder."""
    if output is None or overwrite:
        return
    for path in (Path(output), *map(Path, companions)):
        if path.exists() or path.is_symlink():
            raise OutputConflict(
                f"{flag} {output}: {path} exists (an earlier result); pass --overwrite to replace it or choose "
                f"another {flag}"
            )


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is strictly inside ``folder`` (both resolved; symlinks followed)."""
    try:
        return path.resolve().is_relative_to(folder.resolve()) and path.resolve() != folder.resolve()
    except (OSError, RuntimeError):
        return False


def write_error(path: PathLike, exc: BaseException) -> WriteFailed:
    """The one-line :class:`WriteFailed` for ``exc`` raised while writing ``path``: the path and the OS error."""
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    else:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return WriteFailed(f"cannot write {path}: {reason}")


def refuse_link(path: PathLike) -> None:
    """:class:`OutputConflict` naming ``path`` when it is a symbolic link: effnet never writes through one."""
    if os.path.islink(path):
        try:
            where = f" (to {os.readlink(path)})"
        except OSError:
            where = ""
        raise OutputConflict(
            f"{path} is a symbolic link{where}; effnet does not write through links: remove it or choose another path"
        )


def make_folder(path: PathLike) -> None:
    """Create folder ``path`` and its parents if missing; a failure is one :class:`WriteFailed` line naming it."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputConflict(f"{folder} is an existing file; expected a folder") from None
    except OSError as exc:
        raise write_error(folder, exc) from None


def _umask() -> int:
    """The process umask, read without changing it (Linux ``/proc``; else the common 022)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _disk_full(folder: Path) -> bool:
    """Whether the file system holding ``folder`` has no block left (what a failed C-level writer ran into)."""
    try:
        return os.statvfs(folder).f_bavail == 0
    except (OSError, AttributeError):
        return False


_WRITE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EIO, errno.EFBIG)


def _failure(target: Path, exc: BaseException) -> WriteFailed | None:
    """The :class:`WriteFailed` for an error raised while writing ``target``'s temp file, or None for another error.

    Writers in C or Rust (torch.save, safetensors, OpenVINO) raise their own exception types: one whose message
    names an OS write error (``os error 28``, ``No space left on device``), or any after which the file system is
    full, is taken as that error.
    """
    if isinstance(exc, EffnetError) or not isinstance(exc, Exception):
        return None
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        return write_error(target, exc)
    if isinstance(exc, (ConnectionError, TimeoutError)):  # a peer's fault while the caller fills the file, not ours
        return None
    if isinstance(exc, OSError) and exc.errno is not None:
        return write_error(target, exc)
    text = str(exc)
    for code in _WRITE_ERRNOS:
        if f"os error {code})" in text or os.strerror(code) in text:
            return write_error(target, OSError(code, os.strerror(code)))
    if _disk_full(target.parent):
        return write_error(target, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    return None


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on clean exit fsync it and rename it onto ``path``.

    A symbolic link at ``path`` is refused; a failure to write is one :class:`WriteFailed` line naming ``path``, and
    the temp file is removed whatever happens.
    """
    target = Path(path)
    refuse_link(target)
    make_folder(target.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise write_error(target, exc) from None
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
    except BaseException as exc:
        failure = _failure(target, exc)
        if failure is None:
            raise
        raise failure from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: PathLike, text: str) -> None:
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


def _open_append(target: Path) -> int:
    """A read-write, append-only descriptor of ``target`` (created if missing) that followed no link; a file with
    other hard links is first replaced by a copy of its own (the other names keep the old content)."""
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    for _ in range(2):
        try:
            fd = os.open(target, flags, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP or os.path.islink(target):
                refuse_link(target)
            raise write_error(target, exc) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise OutputConflict(
                f"{target} is not a regular file (a FIFO or device); effnet appends to files: remove it"
            )
        if info.st_nlink == 1:
            return fd
        try:
            data = os.pread(fd, info.st_size, 0)
        finally:
            os.close(fd)
        atomic_write_bytes(target, data)  # a new inode under this name only
    raise OutputConflict(f"{target} keeps other hard links; effnet appends only to its own files: remove it")


def append_line(path: PathLike, line: str) -> None:
    """Append one line (a JSONL record) with a single ``write`` and fsync, so a kill cannot split it.

    A torn last line left by an earlier crash (no trailing newline) is discarded first. A write that fails (disk
    full, ...) cuts the file back to its previous end and raises :class:`WriteFailed`: earlier lines stay intact.
    A symbolic link or a non-regular file at ``path`` is refused, never written; a file with other hard links is
    replaced by a copy of its own first.
    """
    target = Path(path)
    make_folder(target.parent)
    fd = _open_append(target)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = os.pread(fd, size, 0)
            size = data.rfind(b"\n") + 1
            os.ftruncate(fd, size)
        data = (line.rstrip("\n") + "\n").encode("utf-8")
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    except OSError as exc:
        raise write_error(target, exc) from None
    finally:
        os.close(fd)
