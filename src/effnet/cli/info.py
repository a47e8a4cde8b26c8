"""``effnet info``: per-stage layout and exact cost of a model or spec file.

Every argument is a field of :class:`effnet.config.tables.InfoConfig`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from effnet.architectures import get_spec
from effnet.cli.flags import Flags, add_flags, build
from effnet.config.tables import InfoConfig
from effnet.cost import cost
from effnet.latency.predict import LatencyEstimate, predict_latency
from effnet.latency.profile import load_profile
from effnet.report import format_count, render_table
from effnet.specs import NetworkSpec

HELP = (
    "Per-stage layout (repeats, channels, kernel, stride, output size, params, MACs) of a model or spec JSON; with "
    "--profile, each stage's predicted latency."
)


FLAGS = (Flags(InfoConfig),)
"""One argument per :class:`InfoConfig` field."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register one argument per :class:`InfoConfig` field."""
    add_flags(parser, FLAGS)


def load_spec(name_or_path: str) -> NetworkSpec:
    """A registered model name, or a path to a spec JSON file (``NetworkSpec.to_json``)."""
    if name_or_path.endswith(".json"):
        return NetworkSpec.from_file(name_or_path)
    return get_spec(name_or_path)


def run(args: argparse.Namespace) -> int:
    """Print the per-stage table (or CSV, or JSON with the spec)."""
    config: InfoConfig = build(FLAGS[0], args)
    spec = load_spec(config.model)
    c = cost(spec, config.resolution)
    rows = [{"name": p.name, "block": p.block, **asdict(p)} for p in c.parts]
    estimate = None
    if config.profile:
        profile = load_profile(config.profile, accept_foreign=config.accept_foreign_profile)
        estimate = predict_latency(spec, profile, config.resolution)
        times = {p.name: p.ms for p in estimate.parts}
        for row in rows:
            row["latency_ms"] = round(times.get(row["name"], 0.0), 4)
    if config.format == "json":
        print(
            json.dumps(
                {
                    "name": c.name,
                    "resolution": c.resolution,
                    "params": c.params,
                    "macs": c.macs,
                    "activations": c.activations,
                    "parts": rows,
                    **({"latency": _latency(estimate)} if estimate else {}),
                    "spec": spec.to_dict(),
                },
                indent=2,
            )
        )
        return 0
    if config.format == "csv":
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
    if estimate is not None:
        print(
            f"\npredicted on {estimate.engine} {estimate.precision}, batch {estimate.batch}, "
            f"{estimate.threads} threads: {estimate.ms:.3f} ms per batch ({estimate.throughput:.1f} images/s), "
            f"peak memory {estimate.peak_memory_mb:.0f} MiB (profile {config.profile}; the stem's latency_ms "
            "includes a call's fixed cost)"
        )
    return 0


def _latency(estimate: LatencyEstimate) -> dict[str, object]:
    return {
        "ms": estimate.ms,
        "throughput": estimate.throughput,
        "peak_memory_mb": estimate.peak_memory_mb,
        "batch": estimate.batch,
        "engine": estimate.engine,
        "precision": estimate.precision,
        "threads": estimate.threads,
    }
