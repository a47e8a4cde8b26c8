"""`effnet curves` (#14 item 4): single-dimension vs compound scaling curves, trained through the search's study."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import asdict
from types import SimpleNamespace

import pytest

from effnet.architectures import get_spec, scale
from effnet.cli import build_parser, main
from effnet.config.curves import CurvesConfig
from effnet.config.search import SearchConfig
from effnet.cost import cost
from effnet.search.curves import curve_points, run_curves
from effnet.search.equal_cost import solve_multiplier
from effnet.search.grid import baseline_spec, cost_model, trial_spec

TINY = {"width": 0.25, "depth": 0.5, "resolution": 32, "epochs": 1, "train_limit": 64, "val_limit": 64, "seeds": 1}


def _fake_trainer(config, spec):
    c = cost(spec)
    return SimpleNamespace(last_top1=40 + 5 * math.log2(c.macs / 1e5) + config.seed, params=c.params, macs=c.macs)


def _config(tmp_path, baseline="efficientnet_b0", **kw) -> CurvesConfig:
    training = SearchConfig(baseline=baseline, output=str(tmp_path), study="curves-test", **TINY)
    return CurvesConfig(training=training, **kw)


@pytest.mark.parametrize("baseline", ["efficientnet_b0", "resnet50", "mobilenetv2", "mobilenetv1"])
def test_single_dimension_points_match_two_to_the_phi(baseline):
    base = scale(get_spec(baseline), width=0.25, depth=0.5, resolution=32)
    points = curve_points(base, CurvesConfig(phi_max=2))
    assert [p.method for p in points[:5]] == ["baseline", "depth", "width", "resolution", "compound"]
    for p in points[1:]:
        assert cost(trial_spec(base, p.depth, p.width, p.gamma)).macs == p.macs
        if p.method == "compound":
            assert (p.depth, p.width, p.gamma) == tuple(round(c**p.phi, 6) for c in (1.2, 1.1, 1.15))
            continue
        assert p.target_factor == 2.0**p.phi and 0.8 < p.macs / points[0].macs / 2**p.phi < 1.25, p
        if p.method == "resolution":  # a whole pixel size, and no neighbouring size is closer to the target
            target = 2**p.phi * points[0].macs
            err = abs(math.log(p.macs / target))
            for px in (p.resolution - 1, p.resolution + 1):
                assert abs(math.log(cost(base, px).macs / target)) >= err - 1e-12


def test_solver_errors_and_bounds():
    base = scale(get_spec("efficientnet_b0"), width=0.25, resolution=32)
    with pytest.raises(ValueError, match="depth-only scaling cannot reach"):
        solve_multiplier(cost_model(base), "depth", 2.0**16)
    small_v2 = scale(get_spec("mobilenetv2"), width=0.25, depth=0.5, resolution=32)  # stem and head dominate
    with pytest.raises(ValueError, match="depth-only scaling cannot reach 8x .*multiplier 32 at most"):
        solve_multiplier(cost_model(small_v2), "depth", 8.0)
    with pytest.raises(ValueError, match="dimension must be one of"):
        solve_multiplier(cost_model(base), "colour", 2.0)
    with pytest.raises(ValueError, match="--phi-max must be an integer in"):
        CurvesConfig(phi_max=0)
    with pytest.raises(ValueError, match="--methods must be distinct names"):
        CurvesConfig(methods=("depth", "height"))


def test_run_curves_writes_table_csv_json_png_and_resumes(tmp_path):
    report = run_curves(_config(tmp_path, phi_max=2), trainer=_fake_trainer, progress=False)
    rows = report["rows"]
    assert [(r["method"], r["phi"]) for r in rows][:2] == [("baseline", 0), ("depth", 1)] and len(rows) == 9
    assert all(r["top1_mean"] is not None and r["seeds"] == 1 for r in rows)
    assert report["trials_run_by_this_worker"] == 9 and report["definition"]["tool"] == "curves"
    for name in ("curves.md", "curves.csv", "curves.json", "curves_summary.json"):
        assert (tmp_path / name).stat().st_size > 100, name
    csv_lines = (tmp_path / "curves.csv").read_text().splitlines()
    assert csv_lines[0].startswith("method,phi,depth,width,gamma") and len(csv_lines) == 10
    assert json.loads((tmp_path / "curves_summary.json").read_text())["rows"] == rows
    from matplotlib.image import imread

    image = imread(tmp_path / "curves.png")
    assert image.shape[0] >= 300 and image.shape[1] >= 500  # height, width in pixels
    again = run_curves(_config(tmp_path, phi_max=2), trainer=_fake_trainer, progress=False)
    assert again["trials_run_by_this_worker"] == 0 and again["rows"] == rows  # resumed: nothing trained twice
    with pytest.raises(ValueError, match="was created for a different search"):
        run_curves(_config(tmp_path, phi_max=3), trainer=_fake_trainer, progress=False)


@pytest.mark.parametrize("baseline", ["resnet50", "mobilenetv2", "mobilenetv1", "spec"])
def test_every_baseline_and_a_user_spec_file(tmp_path, baseline):
    if baseline == "spec":
        path = tmp_path / "mine.json"
        path.write_text(scale(get_spec("mobilenetv2"), width=0.5).replace(name="mine").to_json())
        baseline = str(path)
    config = _config(tmp_path / "out", baseline=baseline, phi_max=1, methods=("width", "compound"))
    report = run_curves(config, trainer=_fake_trainer, progress=False)
    assert [r["method"] for r in report["rows"]] == ["baseline", "width", "compound"]
    assert report["baseline_name"] == baseline_spec(config.training).name


def test_cli_builds_the_config_from_flags(capsys):
    args = build_parser().parse_args(
        [
            "curves",
            "--phi-max",
            "2",
            "--alpha",
            "1.3",
            "--beta",
            "1.1",
            "--gamma",
            "1.1",
            "--methods",
            "depth,compound",
            "--train-option",
            "lr=0.02",
        ]
    )
    from effnet.cli.curves import config_from_args

    config, source = config_from_args(args)
    assert (config.phi_max, config.alpha, config.methods, source) == (2, 1.3, ("depth", "compound"), "flags")
    assert dict(config.training.train_options)["lr"] == 0.02 and config.training.study == "effnet-curves"
    defaults = build_parser().parse_args(["curves"])
    assert (defaults.phi_max, defaults.epochs) == (CurvesConfig().phi_max, SearchConfig().epochs)
    assert main(["curves", "--methods", "depth,height"]) == 2
    assert "--methods must be distinct names among depth, width, resolution, compound" in capsys.readouterr().err


@pytest.mark.slow
def test_effnet_curves_on_fashion_mnist(tmp_path, capsys):
    from effnet.training.named_datasets import find_fashion_mnist

    try:
        find_fashion_mnist()
    except (FileNotFoundError, ValueError) as exc:
        pytest.skip(f"Fashion-MNIST is not installed: {exc}")
    out = tmp_path / "curves"
    # two of the four lines keep it near a minute on a shared 2-core machine (every method: the fake-trainer test)
    rc = main(
        [
            "curves",
            "--phi-max",
            "2",
            "--methods",
            "width,compound",
            "--train-limit",
            "64",
            "--val-limit",
            "64",
            "--epochs",
            "1",
            "--resolution",
            "32",
            "--width",
            "0.25",
            "--depth",
            "0.25",
            "--output",
            str(out),
            "--quiet",
            "--jobs",
            "1",
            "--threads",
            "2",
            "--seeds",
            "1",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "plot:" in printed and any(line.startswith("| compound") for line in printed.splitlines())
    rows = json.loads((out / "curves.json").read_text())
    assert [(r["method"], r["phi"]) for r in rows] == [
        ("baseline", 0),
        ("width", 1),
        ("compound", 1),
        ("width", 2),
        ("compound", 2),
    ]
    assert all(0 <= r["top1_mean"] <= 100 for r in rows)
    records = json.loads((out / "curves_summary.json").read_text())["records"]
    assert sorted(r["macs"] for r in records) == sorted(r["macs"] for r in rows)  # costed as trained (10 classes, 1 ch)
    assert (out / "curves.png").stat().st_size > 10_000 and (out / "curves.csv").is_file()


def test_jobs_payload_round_trips_and_bad_jobs_are_one_line_errors(tmp_path, capsys):
    from effnet.search.jobs import config_from_payload, run_jobs

    config = _config(tmp_path, phi_max=2, methods=("depth", "compound"), alpha=1.3)
    sent = json.loads(json.dumps({"tool": "curves", "config": asdict(config)}))
    assert config_from_payload(sent["tool"], sent["config"]) == config  # nested training, tuples restored
    search = SearchConfig(output=str(tmp_path), seeds=1)
    assert config_from_payload("search", json.loads(json.dumps(asdict(search)))) == search
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=f"--jobs must be an integer >= 1, got {bad!r}"):
            run_jobs("curves", config, bad)
    for tool in ("curves", "search"):
        out = tmp_path / tool
        assert main([tool, "--jobs", "0", "--output", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err == f"effnet {tool}: error: --jobs must be an integer >= 1, got 0\n" and not out.exists()


@pytest.mark.slow
def test_effnet_curves_jobs_2_splits_the_points_between_two_processes(tmp_path):
    from effnet.machine import usable_cpus
    from effnet.training.named_datasets import find_fashion_mnist

    try:
        find_fashion_mnist()
    except (FileNotFoundError, ValueError) as exc:
        pytest.skip(f"Fashion-MNIST is not installed: {exc}")
    out = tmp_path / "curves"
    cmd = [
        sys.executable,
        "-m",
        "effnet",
        "curves",
        "--phi-max",
        "1",
        "--methods",
        "depth,compound",
        "--train-limit",
        "1536",  # trials long enough that the helper, given its work once the study is checked, gets some
        "--val-limit",
        "64",
        "--epochs",
        "1",
        "--resolution",
        "32",
        "--width",
        "0.25",
        "--depth",
        "0.25",
        "--seeds",
        "2",
        "--output",
        str(out),
        "--quiet",
        "--jobs",
        "2",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "curves_summary.json").read_text())  # the parent's: written after its helper exited
    assert [(r["method"], r["phi"]) for r in summary["rows"]] == [("baseline", 0), ("depth", 1), ("compound", 1)]
    assert all(r["top1_mean"] is not None and r["seeds"] == 2 for r in summary["rows"])
    workers = {r["worker"] for r in summary["records"]}
    assert len(summary["records"]) == 6 and len(workers) == 2, workers  # both processes trained points
    assert 1 <= summary["trials_run_by_this_worker"] < 6
    assert (summary["jobs"], summary["threads_per_job"]) == (2, max(1, usable_cpus() // 2))
    assert "[worker " in done.stdout and "run by this worker" in done.stdout and "(2 job(s), " in done.stdout
