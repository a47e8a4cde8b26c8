"""The ``effnet`` command line: a thin dispatcher over per-command modules.

Each command lives in ``effnet/cli/<name>.py`` and defines ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``. Command modules import torch only inside ``run`` so that ``effnet --help``,
``effnet table`` and ``effnet info`` answer without loading it. Errors a user can cause
(``ValueError``, ``FileNotFoundError``, ...) are printed as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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
}
"""Sub-command name -> module implementing it."""

USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, KeyError)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="effnet",
        description="EfficientNet and compound model scaling: models, costs, weights, training, scaling search.",
    )
    from effnet import __version__

    parser.add_argument("--version", action="version", version=f"effnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``effnet`` console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except USER_ERRORS as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"effnet {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"effnet {args.command}: interrupted", file=sys.stderr)
        return 130
