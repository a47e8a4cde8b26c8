"""Shared storage for the scaling search: Optuna RDB storage, a claim lock across workers, trial heartbeats.

Workers of one study coordinate only through the storage: SQLite file (one machine; the claim lock is an
``flock`` on a file beside the database) or PostgreSQL (many machines; the claim lock is ``pg_advisory_lock``).
Trials record Optuna heartbeats, so the RUNNING trial of a killed worker goes stale and is failed by
:func:`optuna.storages.fail_stale_trials` in whichever worker claims next.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["default_storage", "redact", "open_storage", "claim_lock", "Heartbeat"]

_log = logging.getLogger(__name__)


def default_storage(output: str) -> str:
    """``sqlite:///<output>/study.db`` (absolute path)."""
    return f"sqlite:///{(Path(output) / 'study.db').resolve()}"


def redact(url: str) -> str:
    """``url`` with its password hidden (for messages and reports)."""
    with contextlib.suppress(Exception):
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    return url


def _normalise_url(url: str) -> str:
    """Map ``postgresql://`` to the installed psycopg 3 driver when psycopg2 is absent."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy.exc.ArgumentError
        raise ValueError(f"--storage {url!r} is not a database URL (e.g. sqlite:///study.db, "
                         f"postgresql+psycopg://user@host/db): {exc}") from None  # fmt: skip
    if parsed.drivername == "postgresql":
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def open_storage(url: str, heartbeat: int | None = 10) -> Any:
    """An ``optuna.storages.RDBStorage`` with heartbeats (grace ``3 × heartbeat``); clear error if unreachable.

    SQLite: the parent folder is created and writers wait up to 60 s for the file lock. PostgreSQL: connecting
    gives up after 10 s. Any failure to connect or create the tables is a ``ValueError`` naming the URL.
    """
    import optuna
    from sqlalchemy.engine import make_url

    url = _normalise_url(url)
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"--storage {redact(url)}: backend {backend!r} is not supported; use sqlite:///FILE "
                         "or postgresql+psycopg://USER@HOST/DB")  # fmt: skip
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        connect_args["timeout"] = 60
    else:
        connect_args["connect_timeout"] = 10
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna, and what this module relies on
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs={"connect_args": connect_args}, heartbeat_interval=heartbeat,
                grace_period=3 * heartbeat if heartbeat else None,
            )  # fmt: skip
    except Exception as exc:
        raise ValueError(f"cannot open --storage {redact(url)}: {_first_line(exc)}") from None


@contextlib.contextmanager
def claim_lock(url: str, study: str) -> Iterator[None]:
    """Mutual exclusion across every worker of ``study``: ``flock`` beside a SQLite file, advisory lock on PG.

    ``study=""`` locks the whole storage (used while creating tables and studies). Failing to connect is a
    ``ValueError`` naming the URL (password hidden).
    """
    from sqlalchemy.engine import make_url

    url = _normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if not database or database == ":memory:":
            with _MEMORY_LOCK:
                yield
            return
        lock_path = Path(f"{database}.{hashlib.sha1(study.encode()).hexdigest()[:12]}.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    key = int.from_bytes(hashlib.sha1(f"effnet-search:{study}".encode()).digest()[:8], "big", signed=True)
    engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 10})
    try:
        conn = engine.connect()
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
    except Exception as exc:
        engine.dispose()
        raise ValueError(f"cannot open --storage {redact(url)}: {_first_line(exc)}") from None
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # closing the connection releases the lock in any case
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        with contextlib.suppress(Exception):
            conn.close()
        engine.dispose()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_MEMORY_LOCK = threading.Lock()


class Heartbeat:
    """Records an Optuna heartbeat for one trial every ``interval`` seconds in a daemon thread."""

    def __init__(self, storage: Any, trial_id: int, interval: int) -> None:
        self._storage, self._trial_id, self._interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{trial_id}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception as exc:  # a transient storage error must not kill the training run
                _log.warning("heartbeat of trial %s failed: %s", self._trial_id, exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
