"""``effnet search``: the paper's step 1, grid-search (α, β, γ) at φ = 1 as a resumable, distributed Optuna study.

Run the same command in several processes or on several machines (same ``--storage`` and ``--study``) to split
the grid; re-run it after a crash to finish the study. Without arguments it runs the quick Fashion-MNIST study
into ``runs/search``.
"""

from __future__ import annotations

import argparse
import json

from effnet.config.search import (
    DEFAULT_OUTPUT,
    DEFAULT_STEP,
    DEFAULT_STUDY,
    DEFAULT_TOL,
    MAX_SEEDS,
    MIN_STEP,
    STRATEGIES,
    SearchConfig,
)
from effnet.search.processes import usable_cpus

DEFAULT_JOBS = min(2, usable_cpus())

HELP = "Grid-search the compound scaling coefficients alpha, beta, gamma (Optuna study; many workers; resumable)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SearchConfig()
    g = parser.add_argument_group("study")
    g.add_argument(
        "--data",
        default=d.data,
        help=f"fashion-mnist, cifar10, cifar100 or an ImageFolder directory (default {d.data})",
    )
    g.add_argument(
        "--data-root",
        default=None,
        help="folder holding the named datasets (default: $EFFNET_DATA, /usr/share/datasets, torchvision's cache)",
    )
    g.add_argument(
        "--baseline",
        default=d.baseline,
        help="baseline to scale: efficientnet_b0, resnet50, "
        f"mobilenetv2 (any registered model) or a NetworkSpec JSON file (default {d.baseline})",
    )
    g.add_argument(
        "--storage",
        default=None,
        help="Optuna RDB URL shared by all workers: sqlite:///FILE or "
        "postgresql+psycopg://USER:PASS@HOST/DB (default sqlite:///OUTPUT/study.db)",
    )
    g.add_argument(
        "--study",
        default=DEFAULT_STUDY,
        help=f"study name (default {DEFAULT_STUDY}); reusing a name "
        "with a different grid, baseline or budget is an error",
    )
    g.add_argument("--output", default=DEFAULT_OUTPUT, help=f"report and trial runs folder (default {DEFAULT_OUTPUT})")
    g = parser.add_argument_group(
        "grid: every (alpha, beta, gamma) in [low, high] on a step grid with "
        "|alpha*beta^2*gamma^2 - target| <= tol, plus depth/width/resolution-only points"
    )
    g.add_argument("--target", type=float, default=d.target, help="FLOPs growth at phi = 1 (default 2.0)")
    g.add_argument(
        "--tol",
        type=float,
        default=DEFAULT_TOL,
        help=f"tolerance on the target (default {DEFAULT_TOL}; "
        "the paper-like fine grid is --step 0.05 --tol 0.1, 109 points)",
    )
    g.add_argument(
        "--step", type=float, default=DEFAULT_STEP, help=f"grid step (default {DEFAULT_STEP}; at least {MIN_STEP})"
    )
    g.add_argument("--low", type=float, default=d.low, help="smallest coefficient (default 1.0)")
    g.add_argument("--high", type=float, default=d.high, help="largest coefficient (default 2.0)")
    g.add_argument(
        "--seeds",
        type=int,
        default=d.seeds,
        help="trials per point with seeds SEED..SEED+K-1: mean, "
        "std and 95%% interval per point, and a verdict by Welch's t-test (needs K >= 2; at most "
        f"{MAX_SEEDS}; default {d.seeds})",
    )
    g.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=None,
        help="grid: every candidate trains "
        "--epochs; halving: successive halving (Optuna's asynchronous SuccessiveHalvingPruner) stops "
        "weak candidates after --min-epochs, --min-epochs*eta, ... epochs, never the --keep best points "
        "(default halving; grid when --epochs <= --min-epochs)",
    )
    g.add_argument(
        "--eta",
        type=int,
        default=d.eta,
        help=f"halving: 1/eta of the candidates reaching a rung go on (default {d.eta})",
    )
    g.add_argument(
        "--min-epochs",
        type=int,
        default=d.min_epochs,
        help=f"halving: epochs before the first cut (default {d.min_epochs})",
    )
    g.add_argument(
        "--keep",
        type=int,
        default=d.keep,
        help="halving: never stop a trial whose point ranks in the "
        "top K at its epoch, so the report's top K rows are fully trained (0: plain halving; default "
        f"{d.keep})",
    )
    g.add_argument("--seed", type=int, default=d.seed, help="first seed (default 0)")
    g.add_argument(
        "--no-baseline-trial",
        action="store_true",
        help="do not train the unscaled baseline (a reference point; it never becomes the chosen coefficients)",
    )
    add_budget_arguments(
        parser.add_argument_group("training budget of every trial (applied to the baseline before scaling)"), d, "trial"
    )
    g = parser.add_argument_group("worker")
    g.add_argument(
        "--heartbeat",
        type=int,
        default=d.heartbeat,
        help="seconds between liveness records; a killed "
        f"worker's trial is re-run after 3x this (default {d.heartbeat})",
    )
    add_worker_arguments(g)
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def add_worker_arguments(g: argparse._ArgumentGroup) -> None:
    """``--jobs`` and ``--threads``: local worker processes on one study and torch threads each. Shared by
    ``effnet search`` and ``effnet curves`` (:func:`effnet.search.jobs.run_jobs`)."""
    g.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        help=f"worker processes to run here on the same study (default {DEFAULT_JOBS} = min(2, CPU "
        "cores); more machines: run the same command there too)",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per worker (default: cores // jobs; with one job torch's default)",
    )


def worker_line(report: dict, trials: int) -> str:
    """The summary line of a study: trials, how many this worker ran, in how long, with how many jobs/threads."""
    jobs, threads = report.get("jobs", 1), report.get("threads_per_job")
    each = f"{threads} torch thread(s) each" if threads else "torch's default threads"
    return (
        f"study {report['study']} in {report['storage']}: {trials} trials, {report['trials_run_by_this_worker']} "
        f"run by this worker in {report['worker_wall_time_s']:.0f} s ({jobs} job(s), {each})"
    )


def add_budget_arguments(g: argparse._ArgumentGroup, d: SearchConfig, unit: str) -> None:
    """``--width`` … ``--train-option``: what every ``unit`` (a search's trial, a curve's point) trains with,
    applied to the baseline before scaling; defaults from ``d``. Shared by ``effnet search`` and ``effnet curves``."""
    g.add_argument("--width", type=float, default=d.width, help=f"baseline width multiplier (default {d.width})")
    g.add_argument("--depth", type=float, default=d.depth, help=f"baseline depth multiplier (default {d.depth})")
    g.add_argument(
        "--resolution",
        type=int,
        default=d.resolution,
        help=f"baseline input size in pixels (default {d.resolution}; gamma multiplies it)",
    )
    g.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs per {unit} (default {d.epochs})")
    g.add_argument(
        "--train-limit",
        type=int,
        default=d.train_limit,
        help=f"train on this many images, a fixed random subset (default {d.train_limit})",
    )
    g.add_argument(
        "--val-limit",
        type=int,
        default=d.val_limit,
        help=f"evaluate on this many test images, a fixed random subset (default {d.val_limit})",
    )
    g.add_argument("--batch-size", type=int, default=d.batch_size, help=f"batch size (default {d.batch_size})")
    g.add_argument(
        "--train-option",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help=f"any other effnet train setting for every {unit}, e.g. lr=0.05, augment=none, ema_decay=0, "
        "warmup_epochs=0.5 (repeatable; merged into the quick-study defaults "
        f"{' '.join(f'{k}={v}' for k, v in d.train_options)})",
    )


def train_options(args: argparse.Namespace) -> tuple[tuple[str, object], ...]:
    """The quick-study train options of :class:`SearchConfig` with the ``--train-option`` pairs over them."""
    return tuple({**dict(SearchConfig().train_options), **dict(map(_option, args.train_option or ()))}.items())


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--train-option expects KEY=VALUE (e.g. lr=0.05), got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip().replace("-", "_"), parsed


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    """The :class:`SearchConfig` the parsed flags describe (``--train-option`` pairs override the defaults)."""
    return SearchConfig(
        data=args.data,
        baseline=args.baseline,
        storage=args.storage,
        study=args.study,
        target=args.target,
        tol=args.tol,
        step=args.step,
        low=args.low,
        high=args.high,
        seeds=args.seeds,
        seed=args.seed,
        include_baseline=not args.no_baseline_trial,
        width=args.width,
        depth=args.depth,
        resolution=args.resolution,
        epochs=args.epochs,
        train_limit=args.train_limit,
        val_limit=args.val_limit,
        batch_size=args.batch_size,
        data_root=args.data_root,
        output=args.output,
        heartbeat=args.heartbeat,
        threads=args.threads,
        strategy=args.strategy,
        eta=args.eta,
        min_epochs=args.min_epochs,
        keep=args.keep,
        train_options=train_options(args),
    )


def _print_verdict(report: dict) -> None:
    """The answer to "does compound beat single-dimension scaling?" with its test, reason and trivial baseline."""
    v = report["verdict"]
    chance = f"; majority-class top-1 {v['chance_top1']:.2f}%" if v.get("chance_top1") is not None else ""
    print(f"compound beats single-dimension scaling: {v['answer']} ({v['reason']}{chance})")
    print(f"  test: {v['test']}")
    if report.get("strategy") == "halving":
        print(
            f"halving: {report['pruned_trials']} of {len(report['trials'])} trials pruned; "
            f"{report['epochs_trained']} epochs trained of {report['epochs_full_grid']} for the full grid"
        )


def run(args: argparse.Namespace) -> int:
    from effnet.io import check_output
    from effnet.search.jobs import check_jobs, run_jobs

    check_jobs(args.jobs)
    check_output(args.output, folder=True)
    report = run_jobs("search", config_from_args(args), args.jobs, progress=not args.quiet)
    print(report["table_markdown"], end="")
    chosen = report["chosen"]
    if chosen is not None:
        std = ""
        if chosen["top1_std"] is not None:
            std = (
                f" ± {chosen['top1_std']:.2f}, 95% interval [{chosen['top1_ci95_low']:.2f}, "
                f"{chosen['top1_ci95_high']:.2f}] over {chosen['seeds']} seeds"
            )
        print(
            f"chosen: alpha={chosen['alpha']:g} beta={chosen['beta']:g} gamma={chosen['gamma']:g} "
            f"({chosen['kind']}, top-1 {chosen['top1_mean']:.2f}%{std})"
        )
    _print_verdict(report)
    files = report["files"]
    print(worker_line(report, len(report["trials"])))
    print(f"table: {files['table_md']} (csv, json beside it)\nplot: {files['plot']}\nsummary: {files['summary']}")
    print(
        f"next: effnet scale --study {report['study']} --storage {report['storage']} --device cpu --batch 1 "
        "--max-latency-ms 50 --output-spec runs/scale/chosen.json"
    )
    return 0
