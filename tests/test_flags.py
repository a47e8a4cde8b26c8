"""Every command's flags come from its configs: one flag per setting, with the setting's default, choices and type."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math

import pytest

from effnet.cli import COMMANDS, build_parser
from effnet.cli.flags import Flags, build, parse_bool
from effnet.config.fields import Range, field_type, settings

ALWAYS = {"help", "debug"}  # argparse's -h and the dispatcher's --debug, on every command


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _check_action(view: Flags, field: dataclasses.Field, action: argparse.Action) -> None:
    name = f"{view.config.__name__}.{field.name}"
    default, meta, kind = view.default(field), field.metadata, field_type(view.config, field)
    if default is dataclasses.MISSING:
        assert action.required or not action.option_strings, name  # a required flag, or a positional argument
    elif meta["repeatable"]:
        assert action.default is None and isinstance(action, argparse._AppendAction), name  # merged into the default
    else:
        assert action.default == default, name
    choices = dict(view.choices).get(field.name, meta["choices"])
    if choices is not None:
        assert tuple(action.choices) == tuple(choices), name
    if meta["repeatable"]:
        assert action.type is None, name  # each KEY=VALUE is read by meta["parse"] when the config is built
    elif meta["parse"] is not None:
        assert action.type.__name__ == meta["parse"].__name__, name
    elif kind is bool and default is False:
        assert isinstance(action, argparse._StoreTrueAction), name
    elif kind is bool and default is True and action.option_strings[0].startswith("--no-"):
        assert isinstance(action, argparse._StoreFalseAction), name
    elif kind is bool:
        assert action.type is parse_bool, name
    elif kind is tuple:
        assert action.nargs == "+", name
    else:
        assert action.type is kind, name
    assert action.option_strings in ([view.flag(field)], []), name


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_setting_is_one_flag_with_its_default_choices_and_type(command):
    module = importlib.import_module(COMMANDS[command])
    actions = {a.dest: a for a in _subparser(command)._actions}
    seen: set[str] = set()
    for view in module.FLAGS:
        chosen = view.settings()
        if view.fields is None:  # the whole config: every setting is a flag
            assert {f.name for f in chosen} == {f.name for f in settings(view.config)}
        for field in chosen:
            dest = view.dest(field)
            assert dest in actions and dest not in seen, f"{command}: {dest} missing or flagged twice"
            seen.add(dest)
            _check_action(view, field, actions[dest])
    assert set(actions) - ALWAYS == seen, f"{command}: flags without a setting: {set(actions) - ALWAYS - seen}"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_configs_built_from_default_flags_are_the_library_defaults(command):
    module = importlib.import_module(COMMANDS[command])
    required = {"info": ["b0"], "predict": ["x.png", "--weights", "w"], "eval": ["--weights", "w", "--data", "d"]}
    required["export"] = ["--weights", "w", "--format", "onnx"]
    required["serve"] = ["--weights", "w"]
    args = _subparser(command).parse_args(required.get(command, []))
    for view in module.FLAGS:
        if view.fields is not None or any(f.default is dataclasses.MISSING for f in settings(view.config)):
            continue  # a part of a config, or one with required settings: built by the command with the rest
        assert build(view, args) == view.config(), f"{command}: {view.config.__name__}"


def test_ranges_say_what_they_accept():
    assert str(Range(0, 1, high_open=True)) == "[0, 1)" and Range(0, 1, high_open=True).accepted() == "in [0, 1)"
    assert Range(1).accepted() == ">= 1" and str(Range(1)) == "[1, inf)"
    assert Range(0, low_open=True).accepted() == "> 0" and 0 not in Range(0, low_open=True)
    assert 1 in Range(0, 1) and 1 not in Range(0, 1, high_open=True) and math.inf not in Range(0, 10)
