"""The ``effnet`` command line: a thin dispatcher over per-command modules.

Each command lives in ``effnet/cli/<name>.py`` and defines ``HELP`` (one line), ``FLAGS`` (the config dataclasses
its flags come from, :mod:`effnet.cli.flags`), ``add_arguments(parser)`` and ``run(args) -> int``. Command modules
import torch only inside ``run`` so that ``effnet --help``, ``effnet table`` and ``effnet info`` answer without
loading it. Errors a user can cause
(:mod:`effnet.errors`, ``ValueError``, ``FileNotFoundError``, ...) are printed as one line, without a traceback and
with exit status 2; ``--debug`` (or ``EFFNET_DEBUG=1``) shows the traceback instead. A closed pipe
(``effnet table | head``) ends quietly with status 141, as other Unix tools do.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from effnet import __version__
from effnet.errors import EffnetError

__all__ = ["COMMANDS", "main", "build_parser"]

COMMANDS: dict[str, str] = {
    "table": "effnet.cli.table",
    "info": "effnet.cli.info",
    "predict": "effnet.cli.predict",
    "eval": "effnet.cli.evaluate",
    "export": "effnet.cli.export",
    "train": "effnet.cli.train",
    "search": "effnet.cli.search",
    "scale": "effnet.cli.scale",
    "curves": "effnet.cli.curves",
    "profile": "effnet.cli.profile",
}
"""Sub-command name -> module implementing it."""

BROKEN_PIPE_STATUS = 141
"""Exit status when stdout's reader went away (128 + SIGPIPE, what ``yes | head`` reports)."""

USER_ERRORS = (
    EffnetError,
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    KeyError,
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="effnet",
        description="EfficientNet and compound model scaling: models, costs, weights, training, scaling search.",
    )
    parser.add_argument("--version", action="version", version=f"effnet {__version__}")
    debug_help = "show the full traceback of an error (also EFFNET_DEBUG=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
        p.set_defaults(_run=module.run)
    return parser


def _debug(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("EFFNET_DEBUG", "") not in ("", "0")


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout replaced by a non-file (tests); nothing to redirect
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``effnet`` console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = int(args._run(args) or 0)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        _quiet_stdout()
        return BROKEN_PIPE_STATUS
    except USER_ERRORS as exc:
        if _debug(args):
            traceback.print_exc()
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        line = (str(message).strip().splitlines() or [type(exc).__name__])[0]
        print(f"effnet {args.command}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"effnet {args.command}: interrupted", file=sys.stderr)
        return 130
