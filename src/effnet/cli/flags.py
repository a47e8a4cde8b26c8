"""One flag builder for every command: a config dataclass's settings become argparse flags, and back.

A command lists its :class:`Flags` (which config dataclass, which of its fields, under which flag names); each
field declared with :func:`effnet.config.fields.setting` becomes one flag with the field's name, type, choices,
default, help and group, and :func:`build` turns the parsed arguments back into the config. So a command line
cannot disagree with its library config (``tests/test_flags.py`` compares them for every command).

How a field becomes a flag: a ``bool`` defaulting to false is ``store_true``; one defaulting to true with a
``--no-...`` flag is ``store_false``; other ``bool`` fields take ``true``/``false`` (``optional_value``: the flag
alone means true). A ``parse`` function reads the text (its :class:`~effnet.errors.InvalidValue` becomes the usage
error); a ``repeatable`` flag collects its texts, and :func:`flag_values` reads each ``KEY=VALUE`` with ``parse``
and merges it into the default pairs; tuple fields take one or more values. Help: ``{default}`` is replaced by the
default; otherwise a default other than None/False is appended as ``(default X)`` unless the help already speaks
of a default (or the flag is a switch).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, dataclass
from typing import Any

from effnet.config.fields import field_type, flag_name, settings, show_value
from effnet.errors import InvalidValue

__all__ = ["Flags", "parse_bool", "add_flags", "flag_values", "build"]


@dataclass(frozen=True)
class Flags:
    """The flags a command takes from the config dataclass ``config``.

    ``fields``: the settings that are flags (default: all of them); ``renamed``: (field, flag) pairs for a flag
    named other than its field (its parsed value's name follows the flag); ``group``: the flag group of all of
    them (default: each field's own); ``defaults``: an instance whose values are the flags' defaults (default: the
    fields' defaults; :func:`build` still builds a new config, so fields derived from others are derived anew);
    ``choices``: (field, choices) pairs for settings whose accepted values a lower layer registers (the weight
    layouts of ``effnet.models.convert.REGISTRY``): the torch-free config cannot import that layer, the CLI can.
    """

    config: type
    fields: tuple[str, ...] | None = None
    renamed: tuple[tuple[str, str], ...] = ()
    group: str | None = None
    defaults: Any = None
    choices: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def settings(self) -> tuple[Field[Any], ...]:
        """The fields that are flags, in the order of ``fields`` (default: the config's)."""
        chosen = settings(self.config)
        if self.fields is None:
            return chosen
        unknown = set(self.fields) - {f.name for f in chosen}
        if unknown:  # a command's flag table naming a field its config lacks: a bug, not a user error
            raise AttributeError(f"{self.config.__name__} has no setting {', '.join(sorted(unknown))}")
        by_name = {f.name: f for f in chosen}
        return tuple(by_name[name] for name in self.fields)

    def flag(self, f: Field[Any]) -> str:
        """The flag of field ``f`` (its positional name for a positional argument)."""
        return dict(self.renamed).get(f.name) or flag_name(f)

    def dest(self, f: Field[Any]) -> str:
        """The name of ``f``'s parsed value in the argparse namespace."""
        return self.flag(f).lstrip("-").replace("-", "_") if f.name in dict(self.renamed) else f.name

    def default(self, f: Field[Any]) -> Any:
        """The flag's default: from ``defaults``, else the field's own (``MISSING`` for a required one)."""
        if self.defaults is not None:
            return getattr(self.defaults, f.name)
        if f.default_factory is not MISSING:
            return f.default_factory()
        return f.default


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off) for a flag's value."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _reader(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` for argparse: its one-line :class:`InvalidValue` becomes the usage error."""

    def read(text: str) -> Any:
        try:
            return parse(text)
        except InvalidValue as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    read.__name__ = parse.__name__
    return read


def _help(f: Field[Any], default: Any, switch: bool) -> str:
    text = f.metadata["help"]
    shown = show_value(default)
    if "{default}" in text:
        text = text.replace("{default}", shown)
    elif not switch and all(default is not v for v in (None, False, MISSING)) and "default" not in text:
        text = f"{text} (default {shown})"
    return text.replace("%", "%%")


def _kind_arguments(flags: Flags, f: Field[Any], default: Any) -> dict[str, Any]:
    """How argparse reads the field ``f``'s value: action, type, nargs."""
    meta, kind = f.metadata, field_type(flags.config, f)
    if meta["repeatable"]:
        return {"action": "append", "default": None}  # merged into the default pairs by flag_values
    if meta["parse"] is not None:
        return {"type": _reader(meta["parse"])}
    if kind is bool and default is False:
        return {"action": "store_true"}
    if kind is bool and default is True and flags.flag(f).startswith("--no-"):
        return {"action": "store_false"}
    if kind is bool and meta["optional_value"]:
        return {"type": parse_bool, "metavar": "{true,false}", "nargs": "?", "const": True}
    if kind is bool:
        return {"type": parse_bool, "metavar": "{true,false}"}
    if kind is tuple:
        return {"nargs": "+"}
    return {"type": kind}


def _argument(flags: Flags, f: Field[Any]) -> dict[str, Any]:
    """``add_argument`` keyword arguments for the field ``f`` of ``flags.config``."""
    meta, default = f.metadata, flags.default(f)
    kwargs: dict[str, Any] = {}
    if not meta["positional"]:
        kwargs.update(dest=flags.dest(f), required=default is MISSING)
    if default is not MISSING:
        kwargs["default"] = default
    kwargs.update(_kind_arguments(flags, f, default))
    kwargs["help"] = _help(f, default, kwargs.get("action") in ("store_true", "store_false"))
    if meta["metavar"]:
        kwargs["metavar"] = meta["metavar"]
    choices = dict(flags.choices).get(f.name, meta["choices"])
    if choices is not None:
        kwargs["choices"] = choices
    return kwargs


def add_flags(parser: argparse.ArgumentParser, flags: Sequence[Flags], groups: Sequence[tuple[str, str]] = ()) -> None:
    """Add every flag of ``flags`` to ``parser``; ``groups`` are the (key, title) flag groups, in order (a field
    whose group is not among them goes to the parser itself)."""
    titled = {key: parser.add_argument_group(title) for key, title in groups}
    for view in flags:
        for f in view.settings():
            group = view.group if view.group is not None else f.metadata["group"]
            target: Any = titled.get(group, parser)
            target.add_argument(view.flag(f), **_argument(view, f))


def _value(flags: Flags, f: Field[Any], args: argparse.Namespace) -> Any:
    value = getattr(args, flags.dest(f))
    if not f.metadata["repeatable"]:
        return value
    pairs = dict(flags.default(f))
    pairs.update(f.metadata["parse"](text) for text in value or ())
    return tuple(pairs.items())


def flag_values(flags: Flags, args: argparse.Namespace) -> dict[str, Any]:
    """The parsed values of ``flags``' fields, by field name; a repeatable flag's ``KEY=VALUE`` texts are read now
    (a bad one is an :class:`~effnet.errors.InvalidValue`) and merged into its default pairs."""
    return {f.name: _value(flags, f, args) for f in flags.settings()}


def build(flags: Flags, args: argparse.Namespace) -> Any:
    """The config ``flags`` describe, from the parsed values (its other fields: their defaults)."""
    return flags.config(**flag_values(flags, args))
