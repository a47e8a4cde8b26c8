"""``effnet curves``: the paper's Figures 3 and 8 — top-1 vs MACs for depth-, width-, resolution-only and compound
scaling of one baseline, every point trained on the same budget (a resumable Optuna study, like ``effnet search``).

Run the same command in several processes or on several machines (same ``--curves-storage``) to share the points,
or pass ``--jobs N`` for N local worker processes; re-run it after a crash to finish them. Every flag is a field of
:class:`effnet.config.curves.CurvesConfig`, :class:`effnet.config.scale.CoefficientSource`,
:class:`effnet.config.search.SearchConfig` (the per-point budget) or :class:`effnet.config.search.WorkerOptions`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from effnet.cli.flags import Flags, add_flags, build, flag_values
from effnet.cli.scale import coefficients
from effnet.cli.search import worker_jobs, worker_line
from effnet.config.curves import CURVES_GROUPS, CURVES_TRAINING, CurvesConfig
from effnet.config.scale import CoefficientSource
from effnet.config.search import SearchConfig
from effnet.config.workers import WorkerOptions
from effnet.io import check_output
from effnet.report import format_count, render_markdown

HELP = (
    "Scaling curves (paper Figs. 3, 8): train the baseline scaled by depth, width, resolution only and compound "
    "to 2^phi FLOPs; top-1 vs MACs."
)

BUDGET = (
    "data",
    "data_root",
    "baseline",
    "width",
    "depth",
    "resolution",
    "epochs",
    "train_limit",
    "val_limit",
    "batch_size",
    "train_options",
    "seeds",
    "seed",
)
"""The :class:`SearchConfig` fields every point trains with (the grid's fields are unused by curves)."""

FLAGS = (
    Flags(CurvesConfig),
    Flags(CoefficientSource),
    Flags(SearchConfig, fields=BUDGET, group="budget", defaults=CURVES_TRAINING),
    Flags(
        SearchConfig,
        fields=("study", "storage", "output", "heartbeat", "threads"),
        renamed=(("study", "--curves-study"), ("storage", "--curves-storage")),
        group="worker",
        defaults=CURVES_TRAINING,
    ),
    Flags(WorkerOptions),
)
"""``--phi-max``/``--methods``, the coefficients' source, the per-point budget, the points' own study, the worker."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of :data:`FLAGS`, grouped as :data:`~effnet.config.curves.CURVES_GROUPS`."""
    add_flags(parser, FLAGS, CURVES_GROUPS)


def config_from_args(args: argparse.Namespace) -> tuple[CurvesConfig, str]:
    """The :class:`CurvesConfig` the flags describe and where its coefficients come from."""
    alpha, beta, gamma, _, source = coefficients(build(FLAGS[1], args))
    training = SearchConfig(**flag_values(FLAGS[2], args), **flag_values(FLAGS[3], args))
    config = CurvesConfig(training=training, alpha=alpha, beta=beta, gamma=gamma, **flag_values(FLAGS[0], args))
    return config, source


def run(args: argparse.Namespace) -> int:
    """Train this worker's share of the points (and ``--jobs`` - 1 more here), then print the table."""
    options: WorkerOptions = build(FLAGS[4], args)
    jobs = worker_jobs(options)
    read = {"--data": args.data, "--data-root": args.data_root, "--baseline": args.baseline}
    check_output(args.output, folder=True, inputs=read)
    config, source = config_from_args(args)
    from effnet.search.curves import columns  # lazy: imports torch; --help stays torch-free
    from effnet.search.jobs import run_jobs  # lazy: imports torch; --help stays torch-free
    from effnet.search.report import check_report_owner  # lazy: as above
    from effnet.search.storage import redact, storage_write_errors  # lazy: imports optuna

    train = config.training
    summary = Path(str(train.output)) / "curves_summary.json"
    check_report_owner(summary, train.study, redact(train.storage_url), options.overwrite)

    with storage_write_errors(config.training.storage_url):
        report = run_jobs("curves", config, jobs, progress=not options.quiet, source=source)
    rows = [{**r, "macs": format_count(r["macs"]), "params": format_count(r["params"])} for r in report["rows"]]
    print(
        f"{report['baseline_name']} on {report['data']}: alpha={config.alpha:g} beta={config.beta:g} "
        f"gamma={config.gamma:g} ({source})"
    )
    print(render_markdown(rows, columns(rows)), end="")
    files = report["files"]
    print(worker_line(report, len(report["records"])))
    print(f"table: {files['table_md']} (csv, json beside it)\nplot: {files['plot']}\nsummary: {files['summary']}")
    return 0
