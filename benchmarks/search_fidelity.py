"""Search fidelity: does successive halving find what the full grid finds, for how many epochs? (issue #14 item 2)

    python benchmarks/search_fidelity.py                                   # the quick study's grid and budget
    python benchmarks/search_fidelity.py --step 0.2 --epochs 3 --train-limit 256 --val-limit 256   # tiny budget
    python benchmarks/search_fidelity.py --seeds 1 --epochs 4 --eta 2        # the main job's grid, one seed

The same grid and the same full budget (``--epochs`` per candidate) run twice as two Optuna studies through
``effnet.search.run.run_search``: ``--strategy grid`` (every candidate trains every epoch) and ``--strategy
halving`` (successive halving stops weak candidates after ``--min-epochs``, ``--min-epochs·eta``, ...). Reported:
epochs trained by each, wall time, each strategy's top-3 fully trained points and whether they agree (same
chosen point; same top-3 set). The two studies run one after the other in this process (``--jobs 1``), each into
its own folder under ``--work-dir`` (default ``runs/search_fidelity``, git-ignored: trial runs hold checkpoints;
re-running resumes both studies: nothing is trained twice, and ``trial_time_s``,
the summed trial wall time, stays that of the training). Writes ``search_fidelity.{json,md}`` to ``--out-dir``
(default ``runs/benchmarks``; the committed results are ``--out-dir benchmarks/results``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from common import COMMITTED_OUT, DEFAULT_OUT, loadavg, machine_info, markdown_table, write_outputs
from effnet.config.search import SearchConfig
from effnet.search.run import run_search


def _top(report: dict[str, Any], k: int = 3) -> list[tuple[str, float, float, float, float, int]]:
    """The ``k`` best scaled rows in the report's ranking (fully trained first, then pruned ones by their partial
    top-1): (kind, α, β, γ, top-1 mean, pruned seeds)."""
    rows = [r for r in report["rows"] if r["kind"] != "baseline"]
    return [(r["kind"], r["alpha"], r["beta"], r["gamma"], r["top1_mean"], r["pruned"]) for r in rows[:k]]


def _run(config: SearchConfig, strategy: str, work_dir: Path) -> dict[str, Any]:
    cfg = dataclasses.replace(config, strategy=strategy, study=f"fidelity-{strategy}", output=str(work_dir / strategy))
    start = time.perf_counter()
    report = run_search(cfg, progress=False, echo=lambda text: print(f"[{strategy}] {text}", flush=True))
    return {
        "strategy": strategy,
        "wall_s": round(time.perf_counter() - start, 1),
        "trial_time_s": report["trials_wall_time_s"],
        "epochs_trained": report["epochs_trained"],
        "epochs_full_grid": report["epochs_full_grid"],
        "trials": len(report["trials"]),
        "pruned": report.get("pruned_trials", 0),
        "top3": _top(report),
        "chosen": report["chosen"],
    }


def main(argv: list[str] | None = None) -> int:
    """Run both strategies and write the comparison."""
    d = SearchConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("step", "tol", "width", "depth"):
        p.add_argument(f"--{name}", type=float, default=getattr(d, name))
    for name in (
        "epochs",
        "train_limit",
        "val_limit",
        "batch_size",
        "eta",
        "min_epochs",
        "keep",
        "resolution",
        "threads",
        "seeds",
    ):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    p.add_argument("--data", default=d.data)
    p.add_argument("--work-dir", type=Path, default=Path("runs/search_fidelity"))
    p.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT,
        help=f"default {DEFAULT_OUT}; the committed results: {COMMITTED_OUT}",
    )
    args = p.parse_args(argv)
    config = SearchConfig(
        data=args.data,
        step=args.step,
        tol=args.tol,
        width=args.width,
        depth=args.depth,
        resolution=args.resolution,
        epochs=args.epochs,
        train_limit=args.train_limit,
        val_limit=args.val_limit,
        batch_size=args.batch_size,
        eta=args.eta,
        min_epochs=args.min_epochs,
        keep=args.keep,
        threads=args.threads,
        seeds=args.seeds,
    )
    load_before = loadavg()
    runs = [_run(config, s, args.work_dir) for s in ("grid", "halving")]
    grid, halving = runs
    agree = {
        "chosen": grid["top3"][:1] and halving["top3"][:1] and grid["top3"][0][:4] == halving["top3"][0][:4],
        "top3_set": {t[:4] for t in grid["top3"]} == {t[:4] for t in halving["top3"]},
        "top3_order": [t[:4] for t in grid["top3"]] == [t[:4] for t in halving["top3"]],
    }
    overlap = len({t[:4] for t in grid["top3"]} & {t[:4] for t in halving["top3"]})
    fraction = halving["epochs_trained"] / grid["epochs_trained"]
    target = overlap >= 2 and fraction <= 0.5  # issue 14: >= 2 of the top-3 shared, at <= 50 % of the epochs
    rows = [
        {
            "strategy": r["strategy"],
            "trials": r["trials"],
            "pruned": r["pruned"],
            "epochs_trained": r["epochs_trained"],
            "epochs_full_grid": r["epochs_full_grid"],
            "trial_time_s": r["trial_time_s"],
            "top3": "; ".join(
                f"{k} a={a:g} b={b:g} g={g:g} {t:.2f}%{' (pruned)' if pr else ''}" for k, a, b, g, t, pr in r["top3"]
            ),
        }
        for r in runs
    ]
    budget = (
        f"grid step {args.step:g} tol {args.tol:g}; baseline B0 width {args.width:g} depth {args.depth:g} "
        f"{args.resolution} px; {args.epochs} epochs, {args.train_limit} train / {args.val_limit} val images, "
        f"batch {args.batch_size}; halving eta {args.eta} min-epochs {args.min_epochs} "
        f"keep {args.keep}"
    )
    table = (
        f"{budget}\n\n{markdown_table(rows, list(rows[0]))}\n\nagree: chosen {bool(agree['chosen'])}, top-3 set "
        f"{agree['top3_set']}, top-3 order {agree['top3_order']}, top-3 shared {overlap} of 3; halving trained "
        f"{100 * fraction:.0f} % of the grid's epochs; target (>= 2 of 3 at <= 50 %) met: {target}; "
        f"load {load_before} -> {loadavg()}"
    )
    payload = {
        "machine": machine_info(),
        "budget": budget,
        "config": dataclasses.asdict(config),
        "runs": runs,
        "agree": {k: bool(v) for k, v in agree.items()},
        "top3_shared": overlap,
        "epoch_fraction": round(fraction, 3),
        "target_met": target,
    }
    write_outputs(args.out_dir, "search_fidelity", payload, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
