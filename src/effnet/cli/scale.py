"""``effnet scale``: the paper's step 2, grow φ with fixed (α, β, γ) and pick the largest model that fits.

Without ``--device`` it only uses the exact cost model and never imports torch. Every flag is a field of
:class:`effnet.config.scale.CoefficientSource`, :class:`~effnet.config.scale.ScaleOptions`,
:class:`~effnet.config.scale.ScaleConfig` or :class:`~effnet.config.scale.Budget`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from effnet.architectures import scale
from effnet.cli.flags import Flags, add_flags, build, flag_values
from effnet.config.scale import SCALE_GROUPS, Budget, CoefficientSource, ScaleConfig, ScaleOptions
from effnet.config.search import DEFAULT_OUTPUT, default_storage
from effnet.errors import InvalidValue
from effnet.io import atomic_write_text, check_output, json_text, refuse_existing
from effnet.report import format_count, render_markdown
from effnet.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA
from effnet.search.baselines import load_baseline
from effnet.search.rounds import Progress
from effnet.search.scaleup import ScaleResult, scale_family
from effnet.specs import NetworkSpec

HELP = "Scale a baseline by phi = 0..N with alpha, beta, gamma; measure; pick the largest model within the budget."

FLAGS = (Flags(CoefficientSource), Flags(ScaleOptions), Flags(ScaleConfig), Flags(Budget))
"""The coefficients' source, the baseline and output, the family and its measurement, the budget."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of :data:`FLAGS`, grouped as :data:`~effnet.config.scale.SCALE_GROUPS`."""
    add_flags(parser, FLAGS, SCALE_GROUPS)


def coefficients(source: CoefficientSource) -> tuple[float, float, float, NetworkSpec | None, str]:
    """(alpha, beta, gamma, the study's baseline or None, where they come from) for ``source``: the paper's, the
    flags', or a finished search study's chosen coefficients."""
    if source.study:
        storage = source.storage or default_storage(DEFAULT_OUTPUT)
        from effnet.search.study import load_study_result  # lazy: imports optuna, slow for --help

        result = load_study_result(storage, source.study)
        c = result["chosen"]
        # the baseline as its trials trained it: classes and input channels of the study's data
        base = NetworkSpec.from_dict(result["definition"]["baseline"]).replace(**result["trained"])
        text = (
            f"study {source.study} ({result['complete']}/{result['total']} trials complete; chosen {c['kind']} "
            f"top-1 {c['top1_mean']:.2f}%)"
        )
        return c["alpha"], c["beta"], c["gamma"], base, text
    if source.alpha is None or source.beta is None or source.gamma is None:
        return PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, None, "the paper's coefficients"
    return source.alpha, source.beta, source.gamma, None, "flags"


def _table(rows: list[dict[str, Any]], measured: bool) -> str:
    cols = ["phi", "depth", "width", "resolution", "flops_target", "params", "macs", "activations"]
    if measured:
        cols += ["latency_ms", "rounds", "spread", "throughput", "peak_memory_mb", "anomaly"]
    predicted = {"predicted_ms": "predicted_latency_ms", "predicted_mb": "predicted_memory_mb"}
    predicted = {c: key for c, key in predicted.items() if any(r[key] for r in rows)}
    cols += [*predicted, "fits"]
    shown = []
    for r in rows:
        row = {c: r.get(c) for c in cols}
        for c in ("params", "macs", "activations"):
            row[c] = format_count(r[c])
        if measured:
            row["anomaly"] = "yes" if r["anomaly"] else ""
        row.update({c: r[key] for c, key in predicted.items()})
        shown.append(row)
    return render_markdown(shown, cols)


def _family(config: ScaleConfig, quiet: bool) -> ScaleResult:
    """``scale_family``, with a progress bar of the measurements unless ``quiet`` or nothing is measured. The bar
    opens at the first measurement (an error before it is one line); its total is the plan's
    (:class:`~effnet.search.rounds.Progress`): it grows when a round or a member is added, so the bar never sits at
    100 % while work is left, and its label names the round."""
    if not config.device or quiet:
        return scale_family(config)
    from tqdm.auto import tqdm  # lazy: tqdm.auto imports asyncio, and only a measuring run shows a bar

    bars: list[Any] = []
    compiling = config.runtime == "compile" or (config.runtime == "default" and config.device != "cpu")
    label = f"measuring on {config.device}" + (" (torch.compile compiles each model first)" if compiling else "")

    def tick(p: Progress) -> None:
        if not bars:
            bars.append(tqdm(total=p.planned, desc=label, unit="run", file=sys.stderr))
        extra = "extra round for suspects" if p.round > config.max_rounds else f"round {p.round}"
        bars[0].set_description(f"{label}: {extra}, {p.members} member(s)", refresh=False)
        bars[0].total = p.planned
        bars[0].update(p.done - bars[0].n)

    try:
        return scale_family(config, on_progress=tick)
    finally:
        for bar in bars:
            bar.close()


def _print_table(data: dict[str, Any], result: ScaleResult, config: ScaleConfig, options: ScaleOptions) -> None:
    name = config.baseline.name if config.baseline is not None else "efficientnet_b0"
    print(
        f"{name} family, rule {config.rule}, alpha={config.alpha:g} beta={config.beta:g} "
        f"gamma={config.gamma:g} ({data['source']}); predicted FLOPs x{data['flops_factor_per_phi']:.3f} per phi"
    )
    if config.device:
        threads = f", {data['threads']} thread(s) of {data['cores']} cores at load {data['load']:g}"
        print(
            f"measured on {config.device}, runtime {config.runtime} {config.precision}, batch {config.batch}"
            f"{threads if data['threads'] else ''}: interleaved rounds ({config.min_rounds}..{config.max_rounds}, "
            f"until spread <= {config.max_spread:g}), each the median of {config.repeats} runs after {config.warmup} "
            f"warm-up; latency = median over rounds; memory = {data['memory_method']}"
        )
        if not config.measure_all:
            print(
                f"measured {data['measured_members']} of {len(data['family'])} members: from phi=0 up to the first "
                "that misses the budget and one above it; the others are predicted (predicted_ms), not built"
            )
    if config.profile:
        print(f"predicted_ms, predicted_mb: by the {data['family'][0]['predicted_by']}, {config.profile}")
    print(_table(data["family"], bool(config.device)), end="")
    for m in data["family"]:
        if m["anomaly"]:
            print(f"anomaly: phi={m['phi']} measures {m['anomaly']} (rounds {m['round_latencies_ms']} ms)")
    if data["note"]:
        print(f"note: {data['note']}")
    if data["warning"]:
        print(f"warning: {data['warning']}")
    if data["close_call"]:
        print(f"close call: {data['close_call']}")
    if result.chosen is not None:
        c = result.chosen
        print(
            f"chosen: phi={c.phi} (depth x{c.depth:.3f}, width x{c.width:.3f}, {c.resolution} px, "
            f"{c.macs / 1e6:.1f}M MACs, {c.params / 1e6:.2f}M params)"
        )
        if options.output_spec:
            print(f"spec: {options.output_spec} (train it: effnet train --spec {options.output_spec} ...)")


def run(args: argparse.Namespace) -> int:
    """Cost (and measure) the family, print it and the chosen member; status 2 when none fits the budget."""
    source: CoefficientSource = build(FLAGS[0], args)
    options: ScaleOptions = build(FLAGS[1], args)
    budget: Budget = build(FLAGS[3], args)
    storage = (source.storage or "").removeprefix("sqlite:///") or None
    check_output(options.output_spec, "--output-spec", inputs={"--baseline": options.baseline, "--storage": storage})
    refuse_existing(options.output_spec, "--output-spec", overwrite=options.overwrite)
    alpha, beta, gamma, study_base, text = coefficients(source)
    base = load_baseline(options.baseline) if options.baseline else (study_base or load_baseline("efficientnet_b0"))
    base = scale(base, depth=options.depth, width=options.width, resolution=options.resolution)
    if options.num_classes is not None:
        base = base.replace(num_classes=options.num_classes)
    values = flag_values(FLAGS[2], args)
    config = ScaleConfig(alpha=alpha, beta=beta, gamma=gamma, baseline=base, budget=budget, **values)
    result = _family(config, options.json)
    data = {**result.to_dict(), "source": text}
    if result.chosen is not None and options.output_spec:
        atomic_write_text(options.output_spec, result.chosen.spec.to_json() + "\n")
        data["output_spec"] = options.output_spec
    if options.json:
        print(json_text(data, indent=2))
        if data["warning"]:
            print(f"effnet scale: warning: {data['warning']}", file=sys.stderr)
        if data["close_call"]:
            print(f"effnet scale: close call: {data['close_call']}", file=sys.stderr)
    else:
        _print_table(data, result, config, options)
    if result.chosen is None:
        raise InvalidValue(result.reason)
    return 0
