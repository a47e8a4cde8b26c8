"""Shared storage of the scaling search: an Optuna RDB storage with heartbeats and retry of stale trials.

Workers of one study coordinate only through Optuna's public mechanisms: the grid is enqueued once as WAITING
trials (``Study.enqueue_trial``), every worker takes the next WAITING trial (``Study.optimize`` pops it
atomically in the RDB storage), a running trial records heartbeats, and
:func:`optuna.storages.fail_stale_trials` (run by every worker before each trial and while it waits) fails the
trial of a killed worker, whereupon :class:`optuna.storages.RetryFailedTrialCallback` enqueues a copy of it.
SQLite (one machine) and PostgreSQL (many machines) are supported; there are no lock files.
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy import event
from sqlalchemy.engine import make_url

from effnet.errors import BadFile, EffnetError, InvalidValue, WriteFailed
from effnet.io import make_folder

__all__ = ["redact", "open_storage", "storage_write_errors"]

_CREATION_RACE = ("already exists", "UNIQUE constraint failed", "duplicate key", "database is locked")
_BACKENDS = "sqlite:///FILE or postgresql+psycopg://USER@HOST/DB"


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
    """An ``optuna.storages.RDBStorage`` with heartbeats (grace ``3 × heartbeat``) and stale-trial retry.

    SQLite: the parent folder is created and writers wait up to 60 s for the file lock. PostgreSQL: connecting
    gives up after 10 s. Workers starting together may race creating the tables; that is retried. Any failure
    to connect, to read the file as a database, or to create the tables is a ``ValueError`` naming the URL
    (:class:`~effnet.errors.BadFile` for a folder or a file that is not a database, else
    :class:`~effnet.errors.InvalidValue`).
    """
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
    optuna.logging.set_verbosity(optuna.logging.WARNING)
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
