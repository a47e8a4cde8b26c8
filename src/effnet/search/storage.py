"""Shared storage of the scaling search, with Optuna's own mechanisms: a journal file on one machine, an RDB
server for many.

Workers of one study coordinate only through Optuna's public mechanisms: the grid is enqueued once as WAITING
trials (``Study.enqueue_trial``), every worker takes the next WAITING trial (``Study.optimize`` pops it
atomically) and a killed worker's trial is FAILed and re-queued by :class:`optuna.storages.RetryFailedTrialCallback`.

- **Journal file** (the default, ``OUTPUT/study.journal``; any ``--storage`` path ending ``.journal`` or ``.log``):
  Optuna's ``JournalStorage`` over a ``JournalFileBackend``, its recommended storage for many processes on one
  host; an append-only log written under a file lock, safe for enqueued trials. Journal storages have no
  heartbeats, so a worker's trial carries its owner (:func:`claim`: host, pid and the process's start time) and
  :func:`recover_dead_trials` FAILs and re-queues a RUNNING trial whose process on this host is gone. The file is
  what ``optuna-dashboard OUTPUT/study.journal`` opens.
- **RDB URLs**: ``sqlite:///FILE`` (still accepted: its transactions begin with ``BEGIN IMMEDIATE`` so that two
  workers never take one enqueued trial, optuna/optuna#4002; SQLite's file lock serialises every write and times
  out after 60 s under heavy load) and ``postgresql+psycopg://USER@HOST/DB``, the path for workers on many
  machines: running trials record heartbeats and :func:`optuna.storages.fail_stale_trials` FAILs one whose
  heartbeat stops.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import json
import logging
import os
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from sqlalchemy import event
from sqlalchemy.engine import make_url

from effnet.errors import BadFile, EffnetError, InvalidValue, WriteFailed
from effnet.io import make_folder, write_error

__all__ = [
    "OWNER",
    "JOURNAL_SUFFIXES",
    "is_journal",
    "redact",
    "open_storage",
    "storage_write_errors",
    "claim",
    "recover_dead_trials",
]

_CREATION_RACE = ("already exists", "UNIQUE constraint failed", "duplicate key", "database is locked")
_BACKENDS = "a journal file (PATH.journal or PATH.log), sqlite:///FILE or postgresql+psycopg://USER@HOST/DB"
_SQLITE_HEADER = b"SQLite format 3\x00"
OWNER = "effnet_owner"
"""The user attribute of a running trial naming the process that trains it (journal storages' liveness)."""


JOURNAL_SUFFIXES = (".journal", ".log")
"""What a journal file's name ends with (Optuna's examples use ``.log``); any other ``--storage`` is a URL."""


def is_journal(storage: str) -> bool:
    """Whether ``--storage`` names an Optuna journal file (a path ending in :data:`JOURNAL_SUFFIXES`), not a database
    URL (``scheme://...``)."""
    return "://" not in storage and storage.endswith(JOURNAL_SUFFIXES)


def redact(url: str) -> str:
    """``url`` with its password hidden (for messages and reports)."""
    with contextlib.suppress(Exception):
        return make_url(url).render_as_string(hide_password=True)
    return url


_DISK_ERRORS = {"database or disk is full": "No space left on device", "readonly database": "Read-only file system"}


@contextlib.contextmanager
def storage_write_errors(url: str) -> Iterator[None]:
    """An error of the study's storage that the disk caused (full, read-only), anywhere in the exception's chain,
    becomes one :class:`~effnet.errors.WriteFailed` line naming the storage; other errors pass unchanged."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, EffnetError):
            raise
        chain: list[BaseException] = []
        cause: BaseException | None = exc
        while cause is not None and cause not in chain:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        text = " ".join(str(e) for e in chain)
        for needle, reason in _DISK_ERRORS.items():
            if needle in text:
                raise WriteFailed(f"cannot write the study's storage {redact(url)}: {reason} ({needle})") from None
        raise


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _normalise_url(url: str) -> Any:
    """The parsed URL; ``postgresql://`` maps to the installed driver; clear errors for what cannot work."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy.exc.ArgumentError
        raise InvalidValue(f"--storage {url!r} is not a database URL ({_BACKENDS}): {_first_line(exc)}") from None
    backend, _, driver = parsed.drivername.partition("+")  # no dialect import: an unknown name stays a message
    if backend not in ("sqlite", "postgresql"):
        raise InvalidValue(f"--storage {redact(url)}: backend {backend!r} is not supported; use {_BACKENDS}")
    if "://" not in url:  # make_url accepts some bare words as a backend name
        raise InvalidValue(f"--storage {url!r} is neither a journal file nor a database URL; use {_BACKENDS}")
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            driver = "psycopg2" if _has_module("psycopg2") else "psycopg"
            parsed = parsed.set(drivername=f"postgresql+{driver}")
        if driver not in ("psycopg", "psycopg2"):
            raise InvalidValue(
                f"--storage {redact(url)}: driver {driver!r} is not supported; use "
                "postgresql+psycopg:// (pip install 'psycopg[binary]') or postgresql+psycopg2://"
            )
        if not _has_module(driver):
            package = "psycopg[binary]" if driver == "psycopg" else "psycopg2-binary"
            raise InvalidValue(
                f"--storage {redact(url)} needs the PostgreSQL driver {driver!r}, which is not "
                f"installed: pip install '{package}'"
            )
    return parsed


def open_storage(url: str, heartbeat: int | None = 10) -> Any:
    """A journal file's ``optuna.storages.JournalStorage`` (``url`` is a path), else an
    ``optuna.storages.RDBStorage`` with heartbeats (grace ``3 × heartbeat``) and stale-trial retry.

    Journal: the parent folder is created; a folder, an SQLite database or a file that is not an Optuna journal is
    a one-line :class:`~effnet.errors.BadFile`.

    SQLite: the parent folder is created and writers wait up to 60 s for the file lock. PostgreSQL: connecting
    gives up after 10 s. Workers starting together may race creating the tables; that is retried. Any failure
    to connect, to read the file as a database, or to create the tables is a ``ValueError`` naming the URL
    (:class:`~effnet.errors.BadFile` for a folder or a file that is not a database, else
    :class:`~effnet.errors.InvalidValue`).
    """
    if "://" not in url and Path(url).is_file() and _is_sqlite(Path(url)):
        raise BadFile(f"--storage {url} is an SQLite database; pass it as sqlite:///{Path(url).resolve()}")
    if is_journal(url):
        return _open_journal(url)
    parsed = _normalise_url(url)
    connect_args: dict[str, Any] = {}
    if parsed.drivername.partition("+")[0] == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            if Path(database).is_dir():
                raise BadFile(f"--storage {url}: {database} is a directory, not an SQLite file")
            make_folder(Path(database).parent)
        connect_args["timeout"] = 60
        connect_args["isolation_level"] = None  # transactions are begun by _serialize_sqlite, not by pysqlite
    else:
        connect_args["connect_timeout"] = 10
    _optuna_logging()
    text = parsed.render_as_string(hide_password=False)
    attempt = 0
    while True:
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna, and what this relies on
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    text,
                    engine_kwargs={"connect_args": connect_args},
                    heartbeat_interval=heartbeat,
                    grace_period=3 * heartbeat if heartbeat else None,
                    heartbeat_stale_trial_callback=_retry_callback() if heartbeat else None,
                )
            return _serialize_sqlite(storage) if "isolation_level" in connect_args else storage
        except Exception as exc:
            message = _first_line(exc)
            attempt += 1
            if any(m in message for m in _CREATION_RACE) and attempt < 5:  # another worker is creating the tables
                time.sleep(0.5)
                continue
            if "file is not a database" in message or "malformed" in message:
                raise BadFile(
                    f"--storage {redact(url)} is not a readable Optuna database (damaged or another "
                    f"kind of file): {message}; move it away or pass another --storage"
                ) from None
            raise InvalidValue(f"cannot open --storage {redact(url)}: {message}") from None


class _NoUserTraceback(logging.Filter):
    """Optuna logs a failed trial with its traceback; a user-caused error (an :class:`~effnet.errors.EffnetError`,
    e.g. a full disk) is one line: its message only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], EffnetError):
            record.exc_info = None
        return True


def _optuna_logging() -> None:
    """Optuna's own log: warnings and errors only, tracebacks only for what is not a user's error (once)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _NoUserTraceback) for f in handler.filters):
            handler.addFilter(_NoUserTraceback())


def _open_journal(path: str) -> Any:
    file = Path(path)
    if file.is_dir():
        raise BadFile(f"--storage {path} is a directory; a journal storage is a file (or pass a database URL)")
    if file.is_file():
        _check_journal(file)
    make_folder(file.parent)
    _optuna_logging()
    try:
        return optuna.storages.JournalStorage(JournalFileBackend(str(file)))
    except OSError as exc:  # a read-only or full file system, no permission
        raise write_error(file, exc) from None


def _is_sqlite(file: Path) -> bool:
    with open(file, "rb") as handle:
        return handle.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER


def _check_journal(file: Path) -> None:
    """A journal's first record is a JSON object with an ``op_code`` (Optuna skips unreadable lines silently)."""
    with open(file, "rb") as handle:
        first = handle.readline(1 << 20)
    if not first.strip():
        return
    try:
        record = json.loads(first)
    except ValueError:
        record = None
    if not isinstance(record, dict) or "op_code" not in record:
        raise BadFile(
            f"--storage {file} is not a readable Optuna journal (damaged or another kind of file); move it away or "
            "pass another --storage"
        )


def _start_time(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), 0 where unknown, or ``None``
    when no such process exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0


def claim(trial: optuna.Trial) -> None:
    """Record this process as the owner of running ``trial`` (:data:`OWNER`: trial number, host, pid, start)."""
    pid = os.getpid()
    owner = {"trial": trial.number, "host": socket.gethostname(), "pid": pid, "started": _start_time(pid) or 0}
    trial.set_user_attr(OWNER, owner)


def _dead(owner: Any, number: int) -> bool | None:
    """Whether a trial's owner process is gone: ``True``/``False``, ``None`` when unclaimed (or a copy's claim)."""
    if not isinstance(owner, dict) or owner.get("trial") != number:
        return None
    if owner.get("host") != socket.gethostname():
        return False  # another machine's process cannot be checked from here: taken as alive
    started = _start_time(int(owner.get("pid", -1)))
    return started is None or (bool(started) and bool(owner.get("started")) and started != owner["started"])


def recover_dead_trials(study: optuna.Study, grace_s: float) -> list[int]:
    """FAIL every RUNNING trial whose owner process on this host is gone (or that no worker claimed within
    ``grace_s`` seconds of starting) and re-queue a copy (Optuna's ``RetryFailedTrialCallback``); the numbers.

    For journal storages, which have no heartbeats. Two workers recovering one trial at once: Optuna's journal
    lets only the first FAIL it, and only that one re-queues it.
    """
    recovered = []
    now = datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        dead = _dead(trial.user_attrs.get(OWNER), trial.number)
        if dead is None:
            started = trial.datetime_start
            dead = started is not None and (now - started).total_seconds() > grace_s
        if not dead:
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # another worker failed it first
            continue
        failed = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        with warnings.catch_warnings():  # the retry callback is "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            _retry_callback()(study, failed)
        recovered.append(trial.number)
    return recovered


def _serialize_sqlite(storage: Any) -> Any:
    """Every SQLite transaction of ``storage`` starts with ``BEGIN IMMEDIATE`` (SQLAlchemy's recipe for pysqlite).

    pysqlite begins a transaction only at the first write, so the read in which Optuna finds a WAITING trial and
    the write that marks it RUNNING were not one transaction: two workers could both read WAITING and both take
    the same trial. ``BEGIN IMMEDIATE``
    takes the database's write lock first, so the second worker reads RUNNING and moves on.
    """

    def begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(storage.engine, "begin", begin)
    storage.engine.dispose()  # connections made while the tables were created start afresh
    return storage


def _retry_callback() -> Any:
    """Optuna's callback that enqueues a copy of a heartbeat-stale trial (renamed in Optuna 4.9)."""
    st = optuna.storages
    cls = getattr(st, "RetryHeartbeatStaleTrialCallback", None) or st.RetryFailedTrialCallback
    return cls(max_retry=None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
