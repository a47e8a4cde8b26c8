"""``effnet serve``: the weights (or an exported file) behind an HTTP endpoint, batched across clients.

Every flag is a field of :class:`effnet.config.serve.ServeConfig`; the config checks them all before any weights are
read. The server is :func:`effnet.serving.server.serve` (LitServe), run with ``effnet predict``'s own model loader
and runner, so the two classify alike. Needs the ``serve`` extra: ``pip install 'effnet[serve]'``.
"""

from __future__ import annotations

import argparse
import importlib.util

from effnet.cli.flags import Flags, add_flags, build
from effnet.cli.predict import check_device, load_model, make_runner
from effnet.config.serve import ServeConfig
from effnet.errors import Unsupported
from effnet.models.convert import SOURCES  # torch-free: the registry of weight layouts

HELP = "Serve weights over HTTP (POST /predict, GET /metadata, GET /health), batching requests across clients."

FLAGS = (Flags(ServeConfig, choices=(("source", ("auto", *SOURCES)),)),)
"""One flag per :class:`ServeConfig` field."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register one flag per :class:`ServeConfig` field."""
    add_flags(parser, FLAGS)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or Ctrl+C (in-flight requests are answered first); 0 once stopped."""
    config: ServeConfig = build(FLAGS[0], args)
    missing = [name for name in ("litserve", "python_multipart") if importlib.util.find_spec(name) is None]
    if missing:
        raise Unsupported(f"effnet serve needs {', '.join(missing)}: pip install 'effnet[serve]'")
    check_device(config)
    from effnet.serving.server import serve  # lazy: imports litserve and torch

    serve(config, load_model, make_runner)
    return 0
