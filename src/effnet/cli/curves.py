"""``effnet curves``: the paper's Figures 3 and 8 — top-1 vs MACs for depth-, width-, resolution-only and compound
scaling of one baseline, every point trained on the same budget (a resumable Optuna study, like ``effnet search``).

Run the same command in several processes or on several machines (same ``--curves-storage``) to share the points,
or pass ``--jobs N`` for N local worker processes; re-run it after a crash to finish them.
"""

from __future__ import annotations

import argparse

from effnet.cli.scale import add_coefficient_arguments, coefficients
from effnet.cli.search import add_budget_arguments, add_worker_arguments, train_options, worker_line
from effnet.config.search import DEFAULT_CURVES_OUTPUT, DEFAULT_CURVES_STUDY, METHODS, PHI_MAX_LIMIT, CurvesConfig

HELP = (
    "Scaling curves (paper Figs. 3, 8): train the baseline scaled by depth, width, resolution only and compound "
    "to 2^phi FLOPs; top-1 vs MACs."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = CurvesConfig()
    t = d.training
    g = parser.add_argument_group("curves")
    g.add_argument(
        "--phi-max",
        type=int,
        default=d.phi_max,
        help=f"points at FLOPs x 2^phi for phi = 1..N (default {d.phi_max}, at most {PHI_MAX_LIMIT})",
    )
    g.add_argument(
        "--methods",
        default=",".join(d.methods),
        help=f"comma-separated lines among {', '.join(METHODS)} (default: all)",
    )
    add_coefficient_arguments(
        parser, "take alpha, beta, gamma from this effnet search study (the baseline still comes from --baseline)"
    )
    g = parser.add_argument_group("baseline and training budget of every point (as in effnet search)")
    g.add_argument(
        "--data",
        default=t.data,
        help=f"fashion-mnist, cifar10, cifar100 or an ImageFolder directory (default {t.data})",
    )
    g.add_argument("--data-root", default=None, help="folder holding the named datasets")
    g.add_argument(
        "--baseline",
        default=t.baseline,
        help="efficientnet_b0, resnet50, mobilenetv2, mobilenetv1 (any "
        f"registered model) or a NetworkSpec JSON file (default {t.baseline})",
    )
    add_budget_arguments(g, t, "point")
    g.add_argument("--seeds", type=int, default=t.seeds, help=f"trainings per point (default {t.seeds})")
    g.add_argument("--seed", type=int, default=t.seed, help=f"first seed (default {t.seed})")
    g = parser.add_argument_group("study and worker")
    g.add_argument(
        "--curves-study",
        default=DEFAULT_CURVES_STUDY,
        help=f"Optuna study of the points (default "
        f"{DEFAULT_CURVES_STUDY}); reusing it with other points or budget is an error",
    )
    g.add_argument(
        "--curves-storage",
        default=None,
        help="Optuna RDB URL shared by all workers (default sqlite:///OUTPUT/study.db)",
    )
    g.add_argument(
        "--output",
        default=DEFAULT_CURVES_OUTPUT,
        help=f"report and trial runs folder (default {DEFAULT_CURVES_OUTPUT})",
    )
    g.add_argument(
        "--heartbeat", type=int, default=t.heartbeat, help=f"seconds between liveness records (default {t.heartbeat})"
    )
    add_worker_arguments(g)
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> tuple[CurvesConfig, str]:
    """The :class:`CurvesConfig` the flags describe and where its coefficients come from."""
    from effnet.config.search import SearchConfig

    alpha, beta, gamma, _, source = coefficients(args)
    training = SearchConfig(
        data=args.data,
        baseline=args.baseline,
        storage=args.curves_storage,
        study=args.curves_study,
        seeds=args.seeds,
        seed=args.seed,
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
        train_options=train_options(args),
    )
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    config = CurvesConfig(training=training, phi_max=args.phi_max, alpha=alpha, beta=beta, gamma=gamma, methods=methods)
    return config, source


def run(args: argparse.Namespace) -> int:
    from effnet.io import check_output
    from effnet.report import format_count, render_markdown
    from effnet.search.curves import TABLE_COLUMNS
    from effnet.search.jobs import check_jobs, run_jobs

    check_jobs(args.jobs)
    check_output(args.output, folder=True)
    config, source = config_from_args(args)
    report = run_jobs("curves", config, args.jobs, progress=not args.quiet, source=source)
    rows = [{**r, "macs": format_count(r["macs"]), "params": format_count(r["params"])} for r in report["rows"]]
    print(
        f"{report['baseline_name']} on {report['data']}: alpha={config.alpha:g} beta={config.beta:g} "
        f"gamma={config.gamma:g} ({source})"
    )
    print(render_markdown(rows, TABLE_COLUMNS), end="")
    files = report["files"]
    print(worker_line(report, len(report["records"])))
    print(f"table: {files['table_md']} (csv, json beside it)\nplot: {files['plot']}\nsummary: {files['summary']}")
    return 0
