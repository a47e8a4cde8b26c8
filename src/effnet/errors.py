"""effnet's own exceptions: every error a user can cause, as one line naming the value or file and what is accepted.

Each class also subclasses the built-in exception a caller would expect (``ValueError``, ``TypeError``,
``FileNotFoundError``, ``RuntimeError``), so ``except ValueError`` keeps working; the CLI prints any
:class:`EffnetError` as ``effnet <command>: error: <message>`` without a traceback. Nothing here imports torch.
"""

from __future__ import annotations

__all__ = [
    "EffnetError",
    "InvalidValue",
    "WrongType",
    "MissingFile",
    "BadFile",
    "OutputConflict",
    "Unsupported",
    "DownloadFailed",
    "WriteFailed",
    "TrainingDiverged",
    "Lowered",
    "check_type",
]


class EffnetError(Exception):
    """Base of effnet's user-facing errors; the message is kept to its first line."""

    def __init__(self, message: str) -> None:
        lines = str(message).strip().splitlines()
        super().__init__(lines[0] if lines else type(self).__name__)


class InvalidValue(EffnetError, ValueError):
    """A value (argument, flag, field of a spec or header) outside what is accepted."""


class WrongType(InvalidValue, TypeError):
    """An argument of the wrong type (e.g. ``scale(None)``); also a ``ValueError`` for the CLI's sake."""


class MissingFile(EffnetError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class BadFile(EffnetError, ValueError):
    """A file that exists but cannot be used: empty, truncated, of another format, too large, not a regular file."""


class OutputConflict(EffnetError, ValueError):
    """An output path that would overwrite an input, or is a file where a folder is expected (or the reverse)."""


class Unsupported(EffnetError, RuntimeError):
    """A request this installation or machine cannot serve (a missing optional package, device or feature)."""


class DownloadFailed(EffnetError, ConnectionError):
    """A download that could not complete: host unreachable, connection dropped mid-file, server error."""


class WriteFailed(EffnetError, OSError):
    """An output that could not be written (disk full, read-only file system, permission denied): the message names
    the path and the OS error; the file keeps its previous content (or stays absent)."""


class TrainingDiverged(InvalidValue):
    """A training run whose loss became NaN or infinite (too high a learning rate, no gradient clipping): the run
    stops at once, its last finite checkpoint kept; a search marks such a trial failed and never chooses it."""


class Lowered(UserWarning):
    """Not an error: a count of processes or threads (``--jobs``, ``--workers``, ``--threads``) above what the
    machine has, lowered to it (:func:`effnet.machine.bound_count`); the CLI prints it as one ``note:`` line."""


def check_type(name: str, value: object, types: type | tuple[type, ...], accepted: str) -> None:
    """A one-line :class:`WrongType` naming the argument ``name``, what it accepts and what it got, unless ``value``
    is an instance of ``types`` (a bool is never an int here)."""
    allowed = types if isinstance(types, tuple) else (types,)
    if isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed):
        return
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise WrongType(f"{name} must be {accepted}, got {type(value).__name__} {shown}")
