"""Typed settings (torch-free): each field of a config dataclass carries its default, help, flag and accepted values.

A field declared with :func:`setting` holds, in its ``metadata``: ``help``, ``group`` (the flag group key),
``choices``, ``limits`` (a :class:`Range`), ``flag`` (default ``--<name-with-dashes>``), ``metavar``,
``positional``, ``optional_value`` (``--flag`` alone means true), ``parse`` (reads the flag's text),
``repeatable`` (each use adds a ``KEY=VALUE`` pair to the value) and ``check`` (the rule's own check function).
:func:`check_fields` checks an instance against its fields' types, choices and ranges (or their own check);
:mod:`effnet.cli.flags` builds every command's flags from the same metadata, so a command line and its config
cannot disagree. Fields declared without :func:`setting` are not flags (a command sets them from other settings)
and are checked by their class.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field
from typing import Any

from effnet.errors import InvalidValue

__all__ = [
    "Range",
    "setting",
    "is_setting",
    "settings",
    "field_type",
    "flag_name",
    "check_fields",
    "parse_range",
    "show_value",
]


@dataclass(frozen=True)
class Range:
    """The numbers from ``low`` to ``high``; ``low_open``/``high_open`` leave an end out. An infinite end is open.

    ``Range(1)`` is ``[1, inf)``, ``Range(0, 1, low_open=True)`` is ``(0, 1]``.
    """

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        left = "(" if self.low_open or math.isinf(self.low) else "["
        right = ")" if self.high_open or math.isinf(self.high) else "]"
        return f"{left}{show_value(self.low)}, {show_value(self.high)}{right}"

    def accepted(self) -> str:
        """What the range accepts, as error messages say it: ``>= 1``, ``> 0`` or ``in [0, 1)``."""
        if math.isinf(self.high) and not math.isinf(self.low):
            return f"{'>' if self.low_open else '>='} {show_value(self.low)}"
        return f"in {self}"


def setting(
    default: Any = MISSING,
    help: str = "",
    group: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    choices: tuple[Any, ...] | None = None,
    limits: Range | None = None,
    flag: str | None = None,
    metavar: str | None = None,
    positional: bool = False,
    optional_value: bool = False,
    parse: Callable[[str], Any] | None = None,
    repeatable: bool = False,
    check: Callable[[Any], Any] | None = None,
    resume_check: bool | None = None,
) -> Any:
    """A dataclass field that is a user setting: its default (or ``factory``; neither: required) and metadata.

    ``help`` may hold ``{default}``, replaced by the shown default in ``--help``; otherwise a default other than
    None/False is appended as ``(default X)`` unless the help already speaks of a default. ``check``: the one
    function of the rule the value obeys (it raises :class:`~effnet.errors.InvalidValue` and returns the value),
    used by :func:`check_fields` instead of the type and ``limits`` check. ``resume_check`` is read by
    :data:`effnet.config.training.SCHEDULE_FIELDS` (a resumed run must keep the value).
    """
    meta = {
        "help": help,
        "group": group,
        "choices": choices,
        "limits": limits,
        "flag": flag,
        "metavar": metavar,
        "positional": positional,
        "optional_value": optional_value,
        "parse": parse,
        "repeatable": repeatable,
        "check": check,
        "resume_check": resume_check,
    }
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def is_setting(f: Field[Any]) -> bool:
    """Whether ``f`` was declared with :func:`setting` (only those are flags and checked by :func:`check_fields`)."""
    return "help" in f.metadata


def settings(cls: Any) -> tuple[Field[Any], ...]:
    """The fields of the dataclass ``cls`` declared with :func:`setting`, in order."""
    return tuple(f for f in dataclasses.fields(cls) if is_setting(f))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional(cls: type, name: str) -> bool:
    return type(None) in typing.get_args(_hints(cls)[name])


def field_type(cls: type, f: Field[Any]) -> type:
    """The value type of the field ``f`` of ``cls``, ``None`` left out: bool, int, float, str or tuple."""
    kind = _hints(cls)[f.name]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        return type(typing.get_args(kind)[0])
    return origin if isinstance(origin, type) else kind


def flag_name(f: Field[Any]) -> str:
    """The command-line flag of a setting (``spec_file`` -> ``--spec`` by its metadata, ``top_k`` -> ``--top-k``);
    a positional argument's name."""
    if f.metadata.get("positional"):
        return f.name
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def show_value(value: Any) -> str:
    """A value as ``--help`` and messages show it: ``0.016``, ``true``, ``a,b`` for a tuple, ``k=v k=v`` for pairs."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return " ".join(f"{k}={show_value(v)}" for k, v in value)
    if isinstance(value, tuple):
        return ",".join(show_value(v) for v in value)
    return str(value)


def _type_error(name: str, value: Any, kind: type) -> str | None:
    if kind is bool:
        return None if isinstance(value, bool) else f"{name} must be true or false, got {value!r}"
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"{name} must be an integer, got {value!r}"
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else f"{name} must be a finite number, got {value!r}"
    if kind is tuple:
        return None if isinstance(value, (tuple, list)) else f"{name} must be a list, got {value!r}"
    return None if isinstance(value, str) else f"{name} must be a string, got {value!r}"


def _value_error(name: str, value: Any, f: Field[Any]) -> str | None:
    choices, limits = f.metadata.get("choices"), f.metadata.get("limits")
    if choices is not None and value not in choices:
        return f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}"
    if limits is not None and value not in limits:
        return f"{name} must be {limits.accepted()}, got {value!r}"
    return None


def check_fields(obj: Any, label: Callable[[Field[Any]], str] | None = None) -> None:
    """Check every :func:`setting` field of the dataclass ``obj`` against its type, ``choices`` and ``limits``, or
    by its own ``check``.

    Raises :class:`~effnet.errors.InvalidValue` naming the first bad value (by ``label(field)``, default its flag)
    and what is accepted; ``None`` is accepted where the field's type allows it. Integers given for float fields
    are stored as floats, lists given for tuple fields as tuples.
    """
    cls = type(obj)
    for f in settings(cls):
        value, name = getattr(obj, f.name), label(f) if label else flag_name(f)
        if value is None and _optional(cls, f.name):
            continue
        if f.metadata["check"] is not None:
            object.__setattr__(obj, f.name, f.metadata["check"](value))
            continue
        kind = field_type(cls, f)
        message = _type_error(name, value, kind) or _value_error(name, value, f)
        if message is not None:
            raise InvalidValue(message)
        if kind is float and isinstance(value, int):
            object.__setattr__(obj, f.name, float(value))
        if kind is tuple and isinstance(value, list):
            object.__setattr__(obj, f.name, tuple(value))


def parse_range(text: Any, flag: str, low: float, high: float, integer: bool = False) -> tuple[float, float]:
    """``"LO,HI"`` (or one number ``"X"``, meaning ``X,X``) as two numbers in ``[low, high]``; integers if asked.

    Raises :class:`~effnet.errors.InvalidValue` naming ``flag``, the text and what is accepted.
    """
    kind = "integers" if integer else "numbers"
    accepted = f"LO,HI with {kind} in [{low:g}, {high:g}]"
    parts = text.split(",") if isinstance(text, str) and len(text) <= 100 else []
    values: list[float] = []
    for part in parts if len(parts) in (1, 2) else []:
        try:
            number = int(part) if integer else float(part)
        except ValueError:
            break
        if not (math.isfinite(number) and low <= number <= high):
            break
        values.append(float(number))
    if not values or len(values) != len(parts):
        raise InvalidValue(f"{flag} must be {accepted}, got {text!r}")
    return values[0], values[-1]
