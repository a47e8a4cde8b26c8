"""`effnet search` run after run: each search's own folder, decisions independent of the workers' speed, one
baseline in the summary, the printed table, and no line about an event that did not happen. Stand-in trainers keep
these fast (the training is not the point)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from effnet.cli import build_parser, main
from effnet.cli.search import config_from_args
from effnet.config.search import DEFAULT_OUTPUT, SearchConfig
from effnet.cost import cost
from effnet.search.grid import baseline_spec, definition
from effnet.search.report import PRINTED_COLUMNS
from effnet.search.report_plot import accuracy_figure
from effnet.search.run import run_search

SMALL = {"step": 0.5, "tol": 0.6, "heartbeat": 1, "seeds": 2}  # 7 points x 2 seeds


def _config(*argv: str) -> SearchConfig:
    return config_from_args(build_parser().parse_args(["search", *argv]))


def test_each_search_gets_a_folder_named_after_its_settings():
    """The README's follow-up commands (--seeds 1, --strategy grid, --epochs 5) each get their own folder, so none
    is refused by the main job's study; the same command finds the same folder again (it resumes); settings that
    do not change what a trial computes (artifacts) change neither the folder nor the study's definition."""
    assert _config().output == DEFAULT_OUTPUT == "runs/search"
    folders = {
        ("--seeds", "1"): "runs/search-seeds-1",
        ("--strategy", "grid"): "runs/search-strategy-grid",
        ("--epochs", "5"): "runs/search-epochs-5",
        ("--epochs", "5", "--train-option", "lr=0.02"): "runs/search-epochs-5-lr-0.02",
        ("--no-baseline-trial",): "runs/search-no-baseline-trial",
        ("--strategy", "halving"): "runs/search",  # the default, said explicitly
        ("--train-option", "artifacts=all"): "runs/search",
    }
    for argv, folder in folders.items():
        assert _config(*argv).output == folder, argv
        assert _config(*argv).output == _config(*argv).output
    assert _config("--output", "elsewhere", "--seeds", "1").output == "elsewhere"
    long = _config("--data", "cifar100", "--seeds", "2", "--epochs", "7", "--train-limit", "123", "--eta", "2")
    assert len(long.output) <= len("runs/search-") + 48 and long.output != _config("--data", "cifar100").output
    full, lean = _config("--train-option", "artifacts=all"), _config()
    base = baseline_spec(lean)
    assert definition(full, base, []) == definition(lean, base, [])
    assert dict(lean.train_options)["artifacts"] == "metrics"  # a trial keeps what the report and a resume need
    assert dict(lean.train_options)["lean_activations"] is False  # small candidates: the faster plain BN+act
    assert definition(_config("--train-option", "lean_activations=true"), base, []) == definition(lean, base, [])


def _fitted_trainer(config, spec, on_epoch=None):
    """A stand-in for fit that trains the spec fitted to 10 classes and 1 channel, as Fashion-MNIST's."""
    fitted = spec.replace(num_classes=10, in_chans=1)
    Path(config.output).mkdir(parents=True, exist_ok=True)  # as fit: the network trained, written at the start
    (Path(config.output) / "config.json").write_text(json.dumps({"spec": fitted.to_dict()}))
    c = cost(fitted)
    top1 = 50 + 4 * math.log2(c.macs / 1e5) + 0.3 * config.seed
    for epoch in range(1, config.epochs + 1):
        if on_epoch is not None:
            on_epoch({"epoch": epoch, "val_top1": top1 + epoch})
    return SimpleNamespace(
        last_top1=top1 + config.epochs, params=c.params, macs=c.macs, epochs=config.epochs, spec=fitted.to_dict()
    )


def test_summary_has_one_baseline_and_the_printed_table_is_concise(tmp_path):
    """`baseline_macs` is the network trained (10 classes, 1 channel), the one every macs_factor divides by; the
    printed table has the README's 12 columns, the files all of them; trial folders are named by grid point."""
    config = SearchConfig(**SMALL, epochs=2, output=str(tmp_path))
    report = run_search(config, trainer=_fitted_trainer, progress=False)
    base = baseline_spec(config).replace(num_classes=10, in_chans=1)
    saved = json.loads((tmp_path / "search_summary.json").read_text())
    assert saved["baseline_macs"] == cost(base).macs != cost(baseline_spec(config)).macs
    for row in saved["rows"]:
        assert math.isclose(row["macs_factor"], row["macs"] / saved["baseline_macs"], rel_tol=1e-3), row
    lines = report["table_markdown"].splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == list(PRINTED_COLUMNS.values())
    assert len(lines) == 2 + len(report["rows"])
    assert all(len(line.split("|")) == len(PRINTED_COLUMNS) + 2 for line in lines)
    first = report["rows"][0]
    assert f"{first['top1_mean']:.2f} ± {first['top1_std']:.2f}" in lines[2]
    assert "flops_factor" in (tmp_path / "search_results.md").read_text()  # the files keep every column
    names = sorted(Path(t["output_dir"]).name for t in report["trials"])
    assert names[0].startswith("0000_baseline_a1_b1_g1_s0") and names[1].startswith("0001_baseline_a1_b1_g1_s1")


def test_a_failed_attempt_leaves_no_folder_in_the_way(tmp_path):
    """A trial's folder is its grid point's: what an earlier, failed attempt left there is cleared, not refused."""
    config = SearchConfig(**SMALL, epochs=1, output=str(tmp_path))
    stale = tmp_path / "trials" / config.study / "0000_baseline_a1_b1_g1_s0"
    stale.mkdir(parents=True)
    (stale / "checkpoint.pt").write_bytes(b"from a killed worker")
    report = run_search(config, trainer=_fitted_trainer, progress=False)
    assert len(report["trials"]) == 14 and not (stale / "checkpoint.pt").exists()


def test_legend_says_what_each_kind_of_point_is():
    """A compound point may have α = 1: the legend says two or three of α, β, γ exceed 1, not all three."""
    row = {"macs": 2e6, "macs_factor": 2.0, "top1_mean": 80.0, "top1_std": 1.0, "pruned": 0}
    rows = [
        {**row, "kind": "compound", "alpha": 1.0, "beta": 1.1, "gamma": 1.3},
        {**row, "kind": "resolution", "alpha": 1.0, "beta": 1.0, "gamma": 1.4},
    ]
    legend = accuracy_figure(rows, title="t").axes[-1].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["compound: 2 or 3 of α, β, γ > 1 (1)", "resolution only: γ > 1 (1)"], texts


HALVING_WORKER = r"""
import json, math, os, sys, time
from pathlib import Path
from types import SimpleNamespace
from effnet.config.search import SearchConfig
from effnet.cost import cost
from effnet.search.run import run_search

marker = Path(sys.argv[2]) if len(sys.argv) > 2 else None  # two workers: the second trial reports epoch 1 first

def trainer(cfg, spec, on_epoch=None):
    c = cost(spec)
    baseline = spec.name.endswith("_a1_b1_g1")
    first, second = baseline and cfg.seed == 0, baseline and cfg.seed == 1
    for epoch in range(1, cfg.epochs + 1):
        top1 = 70.0 if first else 60.0 if second else 50 + 3 * math.log2(c.macs / 1e6) + cfg.seed
        if marker is not None and epoch == 1 and second:
            marker.write_text("trial 1 reached epoch 1")
        if marker is not None and epoch == 1 and first:
            deadline = time.monotonic() + 300
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)  # trial 1 has reported epoch 1 by now: Optuna's rule decides it without trial 0
        on_epoch({"epoch": epoch, "val_top1": top1 + epoch})
    return SimpleNamespace(last_top1=top1 + cfg.epochs, params=c.params, macs=c.macs, epochs=cfg.epochs)

run_search(SearchConfig(**json.loads(sys.argv[1])), trainer=trainer, progress=False)
"""


def _decisions(report) -> dict[tuple, tuple]:
    return {(t["alpha"], t["beta"], t["gamma"], t["seed"]): (t["pruned"], t["epochs"]) for t in report["trials"]}


def test_halving_decisions_do_not_depend_on_the_workers(tmp_path):
    """The same halving study run by one worker, and by two workers where the second trial reaches epoch 1 before
    the first one (which scores higher), stops the same trials after the same epochs: a trial is compared with
    the trials before it in the queue, whoever trains them and whenever they report. (Optuna's own asynchronous
    rule let the second trial go on when it came first, and stopped it when it came second.)"""
    config = {**SMALL, "epochs": 2, "strategy": "halving", "eta": 2, "keep": 0}
    script = tmp_path / "worker.py"
    script.write_text(HALVING_WORKER)
    runs = []
    for name, extra in (("one", [[]]), ("two", [[str(tmp_path / "marker")]] * 2)):
        out = tmp_path / name
        workers = [
            subprocess.Popen(
                [sys.executable, str(script), json.dumps({**config, "output": str(out)}), *args],
                env=os.environ.copy(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for args in extra
        ]
        for w in workers:
            output = w.communicate(timeout=600)[0]
            assert w.returncode == 0, output
        runs.append(json.loads((out / "search_summary.json").read_text()))
    one, two = runs
    assert (tmp_path / "marker").exists()  # the two workers did train the first two trials side by side
    second = (1.0, 1.0, 1.0, 1)
    assert _decisions(one)[second] == (True, 1) and 0 < one["pruned_trials"] < len(one["trials"])
    assert _decisions(one) == _decisions(two)
    assert [r["top1_mean"] for r in one["rows"]] == [r["top1_mean"] for r in two["rows"]]


def test_a_refused_study_runs_no_helper_and_reports_nothing_false(tmp_path, capfd):
    """`--jobs 2` on a study made with other settings: one line naming the difference and where to go instead; no
    helper worker got any work (each exits at once, quietly), so no worker says it was stopped or that a trial was
    queued again."""
    run_search(SearchConfig(**SMALL, epochs=1, output=str(tmp_path)), trainer=_fitted_trainer, progress=False)
    capfd.readouterr()
    argv = ["search", "--output", str(tmp_path), "--step", "0.5", "--tol", "0.6", "--epochs", "1", "--seeds", "1"]
    argv += ["--jobs", "2"]
    assert main([*argv, "--quiet"]) == 2
    out, err = capfd.readouterr()
    assert "[worker" not in out + err and "queued again" not in out + err, out + err
    line = err.strip()
    assert len(line.splitlines()) == 1 and "was created for a different search (seeds:" in line, line
    assert "pass a new --study name, or leave out --output" in line


def _checkpointing_trainer(config, spec, on_epoch=None):
    """As :func:`_fitted_trainer`, writing a checkpoint every epoch first, as fit does while a run goes."""

    def epoch_done(record):
        (Path(config.output) / "checkpoint.pt").write_bytes(b"state")
        if on_epoch is not None:
            on_epoch(record)

    result = _fitted_trainer(config, spec, epoch_done)
    (Path(config.output) / "checkpoint.pt").unlink()  # fit's end of run with artifacts=metrics
    return result


@pytest.mark.parametrize("artifacts", ["metrics", "all"])
def test_a_trial_stopped_by_halving_keeps_no_checkpoint(tmp_path, artifacts):
    """A stopped trial is never resumed: its folder keeps what the report reads, no checkpoint (unless asked)."""
    options = (("artifacts", artifacts),)
    config = SearchConfig(**SMALL, epochs=3, strategy="halving", output=str(tmp_path), train_options=options)
    report = run_search(config, trainer=_checkpointing_trainer, progress=False)
    stopped = [Path(t["output_dir"]) for t in report["trials"] if t.get("pruned")]
    assert stopped, "halving stopped no trial"
    assert all((folder / "checkpoint.pt").exists() == (artifacts == "all") for folder in stopped)
