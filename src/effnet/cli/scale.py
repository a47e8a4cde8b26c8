"""``effnet scale``: the paper's step 2, grow φ with fixed (α, β, γ) and pick the largest model that fits.

Without ``--device`` it only uses the exact cost model and never imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys

from effnet.config.serving import DEFAULT_PRECISION, PRECISIONS, RUNTIMES
from effnet.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA

HELP = "Scale a baseline by phi = 0..N with alpha, beta, gamma; measure; pick the largest model within the budget."


def _count(text: str) -> float:
    """``parse_count`` for argparse: its one-line message (format included) becomes the usage error."""
    from effnet.config.search import parse_count

    try:
        return parse_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from effnet.config.search import PHI_MAX_LIMIT, RULES, ScaleConfig

    d = ScaleConfig()

    add_coefficient_arguments(parser, "take alpha, beta, gamma (and the baseline) from this effnet search study")
    g = parser.add_argument_group("family")
    g.add_argument(
        "--rule",
        choices=RULES,
        default=d.rule,
        help="paper: d=alpha^phi, w=beta^phi, r=gamma^phi; "
        "fast: Dollar et al. 2021 at the same FLOPs target (width 80%% of the growth)",
    )
    g.add_argument(
        "--phi-max", type=int, default=d.phi_max, help=f"largest phi (default {d.phi_max}, at most {PHI_MAX_LIMIT})"
    )
    g.add_argument(
        "--baseline",
        default=None,
        help="efficientnet_b0 (default), resnet50, mobilenetv2, any "
        "registered model, or a NetworkSpec JSON file (with --study: the study's baseline)",
    )
    g.add_argument("--width", type=float, default=1.0, help="baseline width multiplier (default 1.0)")
    g.add_argument("--depth", type=float, default=1.0, help="baseline depth multiplier (default 1.0)")
    g.add_argument("--resolution", type=int, default=None, help="baseline input size (default: the baseline's)")
    g.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default: the baseline's)")
    g = parser.add_argument_group("measurement (imports torch)")
    g.add_argument("--device", default=None, help="cpu or cuda[:N]: measure latency, throughput and peak memory")
    g.add_argument("--batch", type=int, default=d.batch, help=f"batch size of the measurement (default {d.batch})")
    g.add_argument("--warmup", type=int, default=d.warmup, help=f"untimed runs before timing (default {d.warmup})")
    g.add_argument(
        "--repeats",
        type=int,
        default=d.repeats,
        help=f"timed runs per member and round; a round's latency is their median (default {d.repeats})",
    )
    g.add_argument(
        "--min-rounds",
        type=int,
        default=d.min_rounds,
        help=f"interleaved rounds (every phi once each) at least (default {d.min_rounds})",
    )
    g.add_argument(
        "--max-rounds",
        type=int,
        default=d.max_rounds,
        help=f"rounds at most while a member's spread is above --max-spread (default {d.max_rounds}, at most 20)",
    )
    g.add_argument(
        "--max-spread",
        type=float,
        default=d.max_spread,
        help="accepted (max - min) / median of a "
        f"member's per-round latencies (default {d.max_spread:g}); a larger phi faster than a smaller "
        "one by more than this gets one extra round and is flagged if it still is",
    )
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    g.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="eager",
        help="how each model runs while measured: eager (the module; default) or the runtime you will "
        "deploy, as in effnet predict (e.g. openvino)",
    )
    g.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=DEFAULT_PRECISION,
        help="precision of the measured runtime (bf16: native hardware bf16 only; int8: calibrated on "
        "random inputs, as only speed is measured)",
    )
    g = parser.add_argument_group("budget: the chosen model is the largest phi that satisfies all of them")
    g.add_argument("--max-macs", type=_count, default=None, help="e.g. 1e9, 400M, 2G")
    g.add_argument("--max-params", type=_count, default=None, help="e.g. 5.3M")
    g.add_argument("--max-latency-ms", type=float, default=None, help="median ms per batch (needs --device)")
    g.add_argument("--max-memory-mb", type=float, default=None, help="peak MiB (needs --device)")
    g = parser.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print JSON instead of a table")
    g.add_argument(
        "--output-spec",
        default=None,
        help="write the chosen NetworkSpec JSON here (train it with: effnet train --spec FILE)",
    )


def add_coefficient_arguments(parser: argparse.ArgumentParser, study_help: str) -> None:
    """``--alpha/--beta/--gamma`` or ``--study`` (+ ``--storage``): where the compound coefficients come from
    (read by :func:`coefficients`); shared by ``effnet scale`` and ``effnet curves``."""
    g = parser.add_argument_group("compound coefficients (the paper's by default, flags, or a finished search study)")
    g.add_argument("--alpha", type=float, default=None, help=f"depth coefficient (default {PAPER_ALPHA})")
    g.add_argument("--beta", type=float, default=None, help=f"width coefficient (default {PAPER_BETA})")
    g.add_argument("--gamma", type=float, default=None, help=f"resolution coefficient (default {PAPER_GAMMA})")
    g.add_argument("--study", default=None, help=study_help)
    g.add_argument("--storage", default=None, help="storage URL of --study (default sqlite:///runs/search/study.db)")


def coefficients(args: argparse.Namespace) -> tuple[float, float, float, object, str]:
    """(alpha, beta, gamma, baseline spec or None, source text) from :func:`add_coefficient_arguments`' flags."""
    from effnet.specs import NetworkSpec

    given = [args.alpha, args.beta, args.gamma]
    if args.study:
        if any(v is not None for v in given):
            raise ValueError("give either --study or --alpha/--beta/--gamma, not both")
        from effnet.config.search import DEFAULT_OUTPUT, default_storage
        from effnet.search.study import load_study_result

        storage = args.storage or default_storage(DEFAULT_OUTPUT)
        result = load_study_result(storage, args.study)
        c = result["chosen"]
        # the baseline as its trials trained it: classes and input channels of the study's data
        base = NetworkSpec.from_dict(result["definition"]["baseline"]).replace(**result["trained"])
        source = (
            f"study {args.study} ({result['complete']}/{result['total']} trials complete; chosen {c['kind']} "
            f"top-1 {c['top1_mean']:.2f}%)"
        )
        return c["alpha"], c["beta"], c["gamma"], base, source
    if args.storage:
        raise ValueError("--storage is only used with --study")
    if any(v is None for v in given) and any(v is not None for v in given):
        raise ValueError("give all of --alpha, --beta and --gamma (or none for the paper's 1.2, 1.1, 1.15)")
    if all(v is None for v in given):
        return PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, None, "the paper's coefficients"
    return args.alpha, args.beta, args.gamma, None, "flags"


def _table(rows: list[dict], measured: bool) -> str:
    from effnet.report import format_count, render_markdown

    cols = ["phi", "depth", "width", "resolution", "flops_target", "params", "macs", "activations"]
    if measured:
        cols += ["latency_ms", "rounds", "spread", "throughput", "peak_memory_mb", "anomaly"]
    cols += ["fits"]
    shown = []
    for r in rows:
        row = {c: r[c] for c in cols}
        for c in ("params", "macs", "activations"):
            row[c] = format_count(r[c])
        if measured:
            row["anomaly"] = "yes" if r["anomaly"] else ""
        shown.append(row)
    return render_markdown(shown, cols)


def _tick(bar: object) -> None:
    """One measurement done; the total grows when extra rounds are needed."""
    bar.total = max(bar.total, bar.n + 1)
    bar.update(1)


def run(args: argparse.Namespace) -> int:
    from effnet.architectures import scale
    from effnet.config.search import Budget, ScaleConfig
    from effnet.io import atomic_write_text, check_output
    from effnet.search.baselines import load_baseline
    from effnet.search.scaleup import scale_family

    storage = (args.storage or "").removeprefix("sqlite:///") or None
    check_output(args.output_spec, "--output-spec", inputs={"--baseline": args.baseline, "--storage": storage})
    alpha, beta, gamma, study_base, source = coefficients(args)
    base = load_baseline(args.baseline) if args.baseline else (study_base or load_baseline("efficientnet_b0"))
    base = scale(base, depth=args.depth, width=args.width, resolution=args.resolution)
    if args.num_classes is not None:
        base = base.replace(num_classes=args.num_classes)
    budget = Budget(args.max_macs, args.max_params, args.max_latency_ms, args.max_memory_mb)
    config = ScaleConfig(
        alpha=alpha,
        beta=beta,
        gamma=gamma,
        rule=args.rule,
        phi_max=args.phi_max,
        baseline=base,
        device=args.device,
        batch=args.batch,
        warmup=args.warmup,
        repeats=args.repeats,
        threads=args.threads,
        runtime=args.runtime,
        budget=budget,
        precision=args.precision,
        min_rounds=args.min_rounds,
        max_rounds=args.max_rounds,
        max_spread=args.max_spread,
    )
    bar = None
    if args.device and not args.json:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=(args.phi_max + 1) * args.min_rounds,
            desc=f"measuring on {args.device} in rounds",
            unit="model",
            file=sys.stderr,
        )
    result = scale_family(config, on_measure=(lambda m: _tick(bar)) if bar is not None else None)
    if bar is not None:
        bar.close()
    data = result.to_dict()
    data["source"] = source
    if result.chosen is not None and args.output_spec:
        atomic_write_text(args.output_spec, result.chosen.spec.to_json() + "\n")
        data["output_spec"] = args.output_spec
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(
            f"{base.name} family, rule {args.rule}, alpha={alpha:g} beta={beta:g} gamma={gamma:g} ({source}); "
            f"predicted FLOPs x{data['flops_factor_per_phi']:.3f} per phi"
        )
        if args.device:
            print(
                f"measured on {args.device}, runtime {args.runtime} {args.precision}, batch {args.batch}: "
                f"interleaved rounds ({args.min_rounds}..{args.max_rounds}, until spread <= {args.max_spread:g}), "
                f"each the median of {args.repeats} runs after {args.warmup} warm-up; latency = median over "
                f"rounds; memory = {data['memory_method']}"
            )
        print(_table(data["family"], bool(args.device)), end="")
        for m in data["family"]:
            if m["anomaly"]:
                print(f"anomaly: phi={m['phi']} measures {m['anomaly']} (rounds {m['round_latencies_ms']} ms)")
        if data["note"]:
            print(f"note: {data['note']}")
        if result.chosen is not None:
            c = result.chosen
            print(
                f"chosen: phi={c.phi} (depth x{c.depth:.3f}, width x{c.width:.3f}, {c.resolution} px, "
                f"{c.macs / 1e6:.1f}M MACs, {c.params / 1e6:.2f}M params)"
            )
            if args.output_spec:
                print(f"spec: {args.output_spec} (train it: effnet train --spec {args.output_spec} ...)")
    if result.chosen is None:
        raise ValueError(result.reason)
    return 0
