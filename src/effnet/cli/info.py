"""``effnet info``: per-stage layout and exact cost of a model or spec file."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from effnet.architectures import get_spec
from effnet.cost import cost
from effnet.report import TABLE_FORMATS, format_count, render_table
from effnet.specs import NetworkSpec

HELP = "Per-stage layout (repeats, channels, kernel, stride, output size, params, MACs) of a model or spec JSON."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model name (see `effnet table`/list_models) or a NetworkSpec JSON file")
    parser.add_argument("--resolution", type=int, default=None, help="input size (default: the model's own)")
    parser.add_argument("--format", choices=TABLE_FORMATS, default="markdown", help="output format")


def load_spec(name_or_path: str) -> NetworkSpec:
    """A registered model name, or a path to a spec JSON file (``NetworkSpec.to_json``)."""
    if name_or_path.endswith(".json"):
        return NetworkSpec.from_file(name_or_path)
    return get_spec(name_or_path)


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.model)
    c = cost(spec, args.resolution)
    rows = [{"name": p.name, "block": p.block, **asdict(p)} for p in c.parts]
    if args.format == "json":
        print(
            json.dumps(
                {
                    "name": c.name,
                    "resolution": c.resolution,
                    "params": c.params,
                    "macs": c.macs,
                    "activations": c.activations,
                    "parts": rows,
                    "spec": spec.to_dict(),
                },
                indent=2,
            )
        )
        return 0
    if args.format == "csv":
        print(render_table(rows, "csv"), end="")
        return 0
    print(
        f"{c.name} @ {c.resolution}px: params {c.params:,} ({format_count(c.params)}), "
        f"MACs {c.macs:,} ({format_count(c.macs)}), activations {c.activations:,}\n"
    )
    pretty = [
        {**r, "params": f"{r['params']:,}", "macs": f"{r['macs']:,}", "activations": f"{r['activations']:,}"}
        for r in rows
    ]
    print(render_table(pretty))
    return 0
