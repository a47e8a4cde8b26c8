"""``effnet search``: the paper's step 1, grid-search (α, β, γ) at φ = 1 as a resumable, distributed Optuna study.

Run the same command in several processes or on several machines (same ``--storage`` and ``--study``) to split
the grid; re-run it after a crash to finish the study. Without arguments it runs the quick Fashion-MNIST study
into ``runs/search``. Every flag is a field of :class:`effnet.config.search.SearchConfig` or
:class:`effnet.config.search.WorkerOptions`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from effnet.cli.flags import Flags, add_flags, build
from effnet.config.search import SEARCH_GROUPS, SearchConfig
from effnet.config.workers import WorkerOptions, check_jobs
from effnet.io import check_output
from effnet.machine import usable_cpus

HELP = "Grid-search the compound scaling coefficients alpha, beta, gamma (Optuna study; many workers; resumable)."

FLAGS = (Flags(SearchConfig), Flags(WorkerOptions))
"""One flag per :class:`SearchConfig` and :class:`WorkerOptions` field."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of :data:`FLAGS`, grouped as :data:`~effnet.config.search.SEARCH_GROUPS`."""
    add_flags(parser, FLAGS, SEARCH_GROUPS)


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    """The :class:`SearchConfig` the parsed flags describe (``--train-option`` pairs override the defaults)."""
    config: SearchConfig = build(FLAGS[0], args)
    return config


def worker_jobs(options: WorkerOptions) -> int:
    """The local worker processes ``options`` ask for (``--jobs``; unset: min(2, CPU cores)), checked."""
    return check_jobs(options.jobs if options.jobs is not None else min(2, usable_cpus()))


def worker_line(report: dict[str, Any], trials: int) -> str:
    """The summary line of a study: trials, how many this worker ran, in how long, with how many jobs/threads."""
    jobs, threads = report.get("jobs", 1), report.get("threads_per_job")
    each = f"{threads} torch thread(s) each" if threads else "torch's default threads"
    return (
        f"study {report['study']} in {report['storage']}: {trials} trials, {report['trials_run_by_this_worker']} "
        f"run by this worker in {report['worker_wall_time_s']:.0f} s ({jobs} job(s), {each})"
    )


def _print_verdict(report: dict[str, Any]) -> None:
    """The answer to "does compound beat single-dimension scaling?" with its test, reason and trivial baseline."""
    v = report["verdict"]
    chance = f"; majority-class top-1 {v['chance_top1']:.2f}%" if v.get("chance_top1") is not None else ""
    print(f"compound beats single-dimension scaling: {v['answer']} ({v['reason']}{chance})")
    print(f"  compared: {v['compared']}")
    print(f"  test: {v['test']}")
    if report.get("strategy") == "halving":
        print(
            f"halving: {report['pruned_trials']} of {len(report['trials'])} trials pruned; "
            f"{report['epochs_trained']} epochs trained of {report['epochs_full_grid']} for the full grid"
        )


def run(args: argparse.Namespace) -> int:
    """Run this worker's share of the study (and ``--jobs`` - 1 more here), then print the report."""
    options: WorkerOptions = build(FLAGS[1], args)
    jobs = worker_jobs(options)
    config = config_from_args(args)
    read = {"--data": args.data, "--data-root": args.data_root, "--baseline": args.baseline}
    check_output(config.output, folder=True, inputs=read)
    from effnet.search.jobs import run_jobs  # lazy: imports torch; --help stays torch-free
    from effnet.search.report import check_report_owner  # lazy: as above
    from effnet.search.storage import redact, storage_write_errors  # lazy: imports optuna

    summary = Path(config.output) / "search_summary.json"
    check_report_owner(summary, config.study, redact(config.storage_url), options.overwrite)
    with storage_write_errors(config.storage_url):
        report = run_jobs("search", config, jobs, progress=not options.quiet)
    print(report["table_markdown"], end="")
    grid = report["definition"]["grid"]
    if grid.get("reward_weight"):
        print(f"ranked by reward = top-1 x (predicted latency factor / {grid['target']:g})^{grid['reward_weight']:g}")
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
    else:
        print("chosen: none (no fully trained scaled point at equal cost; see 'compared' below)")
    for t in report.get("diverged_trials", ()):
        print(
            f"trial {t['trial']} (alpha={t['alpha']:g} beta={t['beta']:g} gamma={t['gamma']:g} seed={t['seed']}) "
            "failed: its training diverged; never chosen"
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
