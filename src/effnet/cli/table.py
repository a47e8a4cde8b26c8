"""``effnet table``: the paper's results table beside effnet's exact costs, and the exact α^φ family.

Every flag is a field of :class:`effnet.config.tables.TableConfig`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from effnet.architectures import compound_spec, get_spec, train_resolution
from effnet.cli.flags import Flags, add_flags, build
from effnet.config.tables import TableConfig
from effnet.cost import cost
from effnet.errors import InvalidValue
from effnet.limits import MAX_PHI
from effnet.references import PAPER_TABLE2, SOURCE, V2_SOURCE, V2_TABLE7
from effnet.report import format_count, render_table
from effnet.scaling import flops_factor
from effnet.search.baselines import TABLE3_BASELINES, paper_table3

HELP = (
    "Paper's B0-B7 table (top-1/5, params, FLOPs, peers, ratios) and the V2 paper's S/M/L rows beside exact "
    "counts; the exact alpha^phi family."
)


FLAGS = (Flags(TableConfig),)
"""One flag per :class:`TableConfig` field."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register one flag per :class:`TableConfig` field."""
    add_flags(parser, FLAGS)


def _ratio(num: float | None, den: float) -> float | None:
    return None if num is None else round(num / den, 1)


def official_rows() -> list[dict[str, Any]]:
    """Table 2 rows with effnet's exact params/MACs and ratio-to-EfficientNet (paper's and exact)."""
    exact = {r.effnet_name: cost(r.effnet_name) for r in PAPER_TABLE2 if r.effnet_name}
    rows = []
    for r in PAPER_TABLE2:
        group = next(g for g in PAPER_TABLE2 if g.model == r.group)
        ours = exact.get(r.effnet_name) if r.effnet_name else None
        eff = exact[group.effnet_name]
        rows.append(
            {
                "model": r.model,
                "top1": r.top1,
                "top5": r.top5,
                "params_paper": r.params,
                "params_effnet": ours.params if ours else None,
                "params_ratio_paper": _ratio(r.params, group.params),
                "params_ratio_exact": _ratio(ours.params if ours else r.params, eff.params),
                "flops_paper": r.flops,
                "macs_effnet": ours.macs if ours else None,
                "flops_ratio_paper": _ratio(r.flops, group.flops),
                "flops_ratio_exact": _ratio(ours.macs if ours else r.flops, eff.macs),
                "resolution": ours.resolution if ours else None,
            }
        )
    return rows


def v2_rows() -> list[dict[str, Any]]:
    """The V2 paper's Table 7 (ImageNet-1k) rows with effnet's exact params and MACs at the eval size
    (the published FLOPs) and at the train size."""
    rows = []
    for r in V2_TABLE7:
        spec = get_spec(r.effnet_name)
        at_eval, at_train = cost(spec), cost(spec, train_resolution(spec))
        rows.append(
            {
                "model": r.model,
                "top1": r.top1,
                "params_paper": r.params,
                "params_effnet": at_eval.params,
                "flops_paper": r.flops,
                "macs_effnet": at_eval.macs,
                "resolution": at_eval.resolution,
                "train_resolution": at_train.resolution,
                "macs_effnet_train": at_train.macs,
            }
        )
    return rows


def table3_rows() -> list[dict[str, Any]]:
    """The paper's Table 3 (MobileNetV1, MobileNetV2, ResNet-50 scaled one way or compound) beside exact MACs."""
    return [
        {
            "baseline": r.baseline,
            "scaling": r.label,
            "depth": round(r.depth, 4),
            "width": round(r.width, 4),
            "resolution": r.resolution,
            "flops_paper": r.paper_macs,
            "macs_effnet": r.macs,
            "deviation_pct": round(100 * r.deviation, 1),
            "agrees": r.agrees,
        }
        for b in TABLE3_BASELINES
        for r in paper_table3(b)
    ]


def compound_rows(phi_max: int, alpha: float, beta: float, gamma: float) -> list[dict[str, Any]]:
    """The exact ``α^φ`` family of B0 for φ = 0..phi_max with measured MACs growth vs ``2^φ``."""
    if not 0 <= phi_max <= MAX_PHI:
        raise InvalidValue(f"--phi-max must be an integer in [0, {MAX_PHI}], got {phi_max}")
    try:  # the largest member first: a bound it breaks is refused before any row is computed
        compound_spec(phi_max, alpha, beta, gamma)
    except ValueError as exc:
        raise InvalidValue(f"--phi-max {phi_max}: {exc}") from None
    base = None
    rows = []
    for phi in range(phi_max + 1):
        spec = compound_spec(phi, alpha, beta, gamma)
        c = cost(spec)
        base = base or c.macs
        rows.append(
            {
                "phi": phi,
                "depth": round(alpha**phi, 4),
                "width": round(beta**phi, 4),
                "resolution": spec.resolution,
                "params": c.params,
                "macs": c.macs,
                "activations": c.activations,
                "macs_ratio": round(c.macs / base, 3),
                "predicted_ratio": round(flops_factor(alpha, beta, gamma) ** phi, 3),
                "two_pow_phi": 2**phi,
            }
        )
    return rows


def _pretty(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    counts = {
        "params_paper",
        "params_effnet",
        "flops_paper",
        "macs_effnet",
        "macs_effnet_train",
        "params",
        "macs",
        "activations",
    }
    out = []
    for row in rows:
        new = {}
        for key, value in row.items():
            if key in counts and value is not None:
                new[key] = format_count(value)
            elif key.endswith("ratio_paper") or key.endswith("ratio_exact"):
                new[key] = None if value is None else f"{value}x"
            elif key in ("top1", "top5"):
                new[key] = f"{value}%"
            else:
                new[key] = value
        out.append(new)
    return out


def run(args: argparse.Namespace) -> int:
    """Print the chosen sections as markdown tables, one CSV, or one JSON object."""
    config: TableConfig = build(FLAGS[0], args)
    sections = ("official", "v2", "table3", "compound") if config.section == "all" else (config.section,)
    tables: dict[str, list[dict[str, Any]]] = {}
    if "official" in sections:
        tables["official"] = official_rows()
    if "v2" in sections:
        tables["v2"] = v2_rows()
    if "table3" in sections:
        tables["table3"] = table3_rows()
    if "compound" in sections:
        tables["compound"] = compound_rows(config.phi_max, config.alpha, config.beta, config.gamma)
    if config.format == "json":
        print(json.dumps({"source": SOURCE, "v2_source": V2_SOURCE, **tables}, indent=2))
    elif config.format == "csv":
        rows = [{"table": name, **row} for name, rs in tables.items() for row in rs]
        columns = list(dict.fromkeys(k for row in rows for k in row))
        print(render_table(rows, "csv", columns), end="")
    else:
        titles = {
            "official": f"EfficientNet B0-B7 and peers ({SOURCE}, Table 2) vs effnet exact counts "
            "(params; MACs = FLOPs as the paper counts them; ratios to the EfficientNet of the group)",
            "v2": f"EfficientNetV2 S/M/L ({V2_SOURCE}, Table 7, ImageNet-1k) vs effnet exact counts "
            "(MACs at the eval size, as the paper counts FLOPs, and at the train size)",
            "table3": f"Scaling MobileNetV1/V2 and ResNet-50 ({SOURCE}, Table 3: FLOPs = multiply-adds) vs effnet "
            "exact MACs (agrees: within 5 % or equal at the printed 0.1B; compound without printed multipliers = "
            "the paper's alpha, beta, gamma at phi=2)",
            "compound": f"Exact compound family alpha={config.alpha}, beta={config.beta}, gamma={config.gamma} "
            "(d=alpha^phi, w=beta^phi, r=224*gamma^phi): measured MACs ratio vs 2^phi",
        }
        for name, rows in tables.items():
            print(f"## {titles[name]}\n")
            print(render_table(_pretty(rows)))
    return 0
