"""The run directory of one training run: its exclusive lock, config, metrics log, checkpoint, weights and report.

Only one run may use a directory at a time: :class:`RunLock` holds an ``fcntl.flock`` on ``run.lock`` for the life
of the run (the file names the holder's pid and host) and removes the file when the run ends; a second run fails at
once with :class:`RunDirLocked`. The lock is released by the kernel when its holder dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from pathlib import Path
from typing import Any

from torch import nn

from effnet.errors import MissingFile, OutputConflict
from effnet.io import (
    append_line,
    atomic_write_json,
    atomic_write_text,
    json_text,
    make_folder,
    refuse_link,
    write_error,
)
from effnet.preprocessing import Preprocessing
from effnet.report import Panel, Series, plot_panels, write_table
from effnet.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from effnet.training.weights import export_weights

__all__ = ["LOCK_NAME", "RESULT_NAMES", "RunDirLocked", "RunLock", "RunDir"]

LOCK_NAME = "run.lock"
"""File in a run directory that a running ``effnet train`` holds locked."""
RESULT_NAMES = (
    CHECKPOINT_NAME,
    "best.safetensors",
    "last.safetensors",
    "ema.safetensors",
    "summary.json",
    "summary.md",
    "summary.csv",
    "curves.png",
    "metrics.jsonl",
)
"""Files in a run directory that hold a run's results: a new run refuses a folder holding any of them (an empty
``metrics.jsonl`` holds none) unless it resumes or overwrites."""


class RunDirLocked(OutputConflict):
    """Another process holds the run directory's lock (a second concurrent run into one ``--output``); a
    ``ValueError`` too, as every :class:`~effnet.errors.OutputConflict`."""


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``DIR/run.lock`` (a context manager); the directory is created.

    On release the lock file is removed, and so is the directory when this lock created it and it is still empty.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._fd: int | None = None
        self._created = False

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunDirLocked` naming its holder; never waits."""
        if self.directory.exists() and not self.directory.is_dir():
            raise OutputConflict(f"--output {self.directory} is a file, not a run directory")
        self._created = not self.directory.exists()
        make_folder(self.directory)
        while self._fd is None:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunDirLocked(
                    f"--output {self.directory} is in use by another effnet train run "
                    f"({self._holder()}); wait for it to end or choose another --output"
                ) from None
            if self._same_file(fd):
                self._fd = fd
            else:  # the previous holder removed the file after we opened it: lock the new one
                os.close(fd)
        try:
            os.ftruncate(self._fd, 0)
            os.write(self._fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        except OSError as exc:
            self.release()
            raise write_error(self.path, exc) from None

    def _open(self) -> int:
        """``run.lock`` opened without following a link; a planted link, device or hard link is refused."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                refuse_link(self.path)
            raise write_error(self.path, exc) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            kind = "is not a regular file" if not stat.S_ISREG(info.st_mode) else "has other hard links"
            raise OutputConflict(f"{self.path} {kind}; effnet writes only its own lock file there: remove it")
        return fd

    def _same_file(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def _holder(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8").strip() or "holder unknown"
        except OSError:
            return "holder unknown"

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):  # a read-only or vanished folder: the kernel still drops the lock
            if self._same_file(self._fd):
                self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None
        if self._created:
            with contextlib.suppress(OSError):
                self.directory.rmdir()  # only succeeds when the run failed before writing anything

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class RunDir:
    """The files of a run in ``path``; on other ranks than the main one (``main=False``) every write is skipped.

    ``overwrite``: a new run may replace the results of a finished one in ``path`` (they are removed at its start).
    """

    def __init__(self, path: str | os.PathLike[str], main: bool = True, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.main = main
        self.overwrite = overwrite
        self.checkpoint = self.path / CHECKPOINT_NAME

    def lock(self) -> contextlib.AbstractContextManager[Any]:
        """The run's exclusive lock (:class:`RunLock`), taken by the main process only."""
        return RunLock(self.path) if self.main else contextlib.nullcontext()

    def require_checkpoint(self) -> None:
        """``MissingFile`` when there is no checkpoint to resume (checked before anything is created)."""
        if not self.checkpoint.is_file():
            raise MissingFile(f"--resume: no checkpoint {self.checkpoint}; nothing to resume, nothing started")

    def results(self) -> list[str]:
        """Names of the :data:`RESULT_NAMES` files ``path`` holds (a link counts; an empty metrics log does not)."""
        found = []
        for name in RESULT_NAMES:
            file = self.path / name
            if file.is_symlink() or (file.exists() and (name != "metrics.jsonl" or file.stat().st_size > 0)):
                found.append(name)
        return found

    def start(self, resume: bool) -> dict[str, Any] | None:
        """The checkpoint to resume from (``resume``), or None for a fresh run: one in a folder holding no results,
        or, with ``overwrite``, one that first removes the results it replaces."""
        if resume:
            self.require_checkpoint()
            return load_checkpoint(self.checkpoint)
        results = self.results()
        if results and not self.overwrite:
            resume_hint = "--resume to continue it, " if CHECKPOINT_NAME in results else ""
            raise OutputConflict(
                f"--output {self.path} already holds a run ({', '.join(results)}); pass {resume_hint}--overwrite "
                "to replace its results, or choose another --output"
            )
        if self.main:
            for name in results:
                try:
                    (self.path / name).unlink()
                except OSError as exc:
                    raise write_error(self.path / name, exc) from None
        return None

    def save_checkpoint(self, payload: dict[str, Any]) -> None:
        """Write ``checkpoint.pt`` atomically."""
        if self.main:
            save_checkpoint(self.checkpoint, payload)

    def remove_checkpoint(self) -> None:
        """Remove ``checkpoint.pt`` (a finished run that keeps only its weights or metrics: ``--artifacts``)."""
        if self.main:
            self.checkpoint.unlink(missing_ok=True)

    def write_config(self, resolved: dict[str, Any]) -> None:
        """``config.json``: every resolved setting of the run."""
        if self.main:
            atomic_write_json(self.path / "config.json", resolved)

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """Rewrite ``metrics.jsonl`` to hold exactly ``history`` (empty at the start, the checkpoint's on resume)."""
        if self.main:
            atomic_write_text(self.path / "metrics.jsonl", "".join(json_text(r) + "\n" for r in history))

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one epoch's record to ``metrics.jsonl``."""
        if self.main:
            append_line(self.path / "metrics.jsonl", json_text(record))

    def export(self, model: nn.Module, name: str, preprocessing: Preprocessing, metadata: dict[str, Any]) -> None:
        """Write ``name`` (e.g. ``best.safetensors``): weights, spec and preprocessing."""
        if self.main:
            export_weights(model, self.path / name, preprocessing, metadata)

    def write_report(
        self, row: dict[str, Any], history: list[dict[str, Any]] | tuple[dict[str, Any], ...], title: str
    ) -> None:
        """``summary.{md,csv,json}`` (``row``) and ``curves.png`` (loss and accuracy per epoch of ``history``)."""
        if not self.main:
            return
        write_table([row], self.path / "summary", title=f"effnet train: {title}")
        epochs = [x["epoch"] for x in history]

        def series(label: str, key: str) -> Series:
            return Series(label, epochs, [x[key] for x in history])

        panels = [
            Panel(
                "loss",
                [series("train (label-smoothed)", "train_loss"), series("val", "val_loss")],
                "epoch",
                "cross-entropy",
            ),
            Panel(
                "accuracy",
                [
                    series("train top-1", "train_top1"),
                    series("val top-1", "val_top1"),
                    series("val top-5", "val_top5"),
                    series("EMA top-1", "ema_top1"),
                ],
                "epoch",
                "%",
            ),
        ]
        plot_panels(panels, self.path / "curves.png", title=title)
