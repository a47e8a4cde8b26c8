"""Latency-aware search and scale (issue 21 item 5, EfficientNet-X's LACS as a tool): ``--cost latency --profile P``,
``--reward-weight``, ``effnet curves --cost latency``, ``effnet scale --profile`` and ``--study`` of such a study.

Profiles are hand-made (this machine's fingerprint, known coefficients); trainers and measurers are stand-ins,
except the test marked slow.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from types import SimpleNamespace

import pytest

from effnet.architectures import get_spec, scale
from effnet.cli import main
from effnet.config.curves import CurvesConfig
from effnet.config.scale import Budget, ScaleConfig
from effnet.config.search import SearchConfig
from effnet.cost import cost
from effnet.latency.features import FEATURES
from effnet.latency.fingerprint import current_fingerprint
from effnet.latency.predict import predict_latency
from effnet.latency.profile import LatencyModel, Profile, save_profile
from effnet.scaling import grid_values
from effnet.search.curves import run_curves
from effnet.search.equal_cost import equal_cost_grid, network_key
from effnet.search.family import family
from effnet.search.grid import baseline_spec, latency_cost_model
from effnet.search.measure import Measurement
from effnet.search.run import run_search
from effnet.search.scaleup import scale_family

SMALL = {"width": 0.25, "depth": 1.0, "resolution": 24, "step": 0.25, "tol": 0.2, "seeds": 2, "epochs": 1}


def _profile(tmp_path, cpu_model: str | None = None, batch: int = 1) -> str:
    """A profile of this machine's ONNX Runtime at fp32 with positive coefficients (call cost 0.05 ms)."""
    fp = current_fingerprint("onnxruntime", "onnxruntime", "fp32", batch, None)
    if cpu_model is not None:
        fp = dataclasses.replace(fp, cpu_model=cpu_model)
    coefficients = tuple(0.05 if name == "call" else 1e-6 * (i + 1) for i, name in enumerate(FEATURES))
    path = tmp_path / f"profile-{cpu_model or 'here'}-b{batch}.json"
    save_profile(Profile(fp, LatencyModel(FEATURES, coefficients), ()), path)
    return str(path)


def _one_line(err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _trainer(config, spec, on_epoch=None):
    c = cost(spec)
    return SimpleNamespace(last_top1=50 + 5 * math.log2(c.macs / 1e5) + 0.3 * config.seed, params=c.params, macs=c.macs)


def test_latency_without_a_profile_says_how_to_make_one(tmp_path, capsys):
    for argv in (
        ["search", "--cost", "latency"],
        ["search", "--reward-weight", "-0.07"],
        ["curves", "--cost", "latency"],
    ):
        assert main([*argv, "--output", str(tmp_path / "x"), "--quiet"]) == 2
        _one_line(capsys.readouterr().err, "needs --profile FILE", "effnet profile --device cpu --runtime default")
    assert main(["search", "--reward-weight", "5", "--output", str(tmp_path / "x")]) == 2
    _one_line(capsys.readouterr().err, "--reward-weight must be a number in [-2, 2], got 5")
    foreign = _profile(tmp_path, cpu_model="Some Other CPU")
    flags = ["search", "--cost", "latency", "--profile", foreign, "--output", str(tmp_path / "y"), "--quiet"]
    assert main(flags) == 2
    _one_line(capsys.readouterr().err, "was measured elsewhere", "Some Other CPU", "--accept-foreign-profile")
    assert not (tmp_path / "y" / "study.journal").exists()


def test_the_latency_grid_is_every_network_at_the_predicted_target(tmp_path):
    from effnet.latency.profile import load_profile

    profile = load_profile(_profile(tmp_path))
    base = scale(get_spec("efficientnet_b0"), width=0.25, depth=1.0, resolution=50).replace(num_classes=10, in_chans=1)
    model = latency_cost_model(base, profile)
    points = equal_cost_grid(model, 2.0, 0.05, 0.1)
    nets: dict = {}
    for point in itertools.product(grid_values(1.0, 2.0, 0.1), repeat=3):  # brute force
        if abs(model.factor(point) - 2.0) <= 0.05 + 1e-12:
            nets.setdefault(network_key(model.network(*point)), []).append(point)
    assert points == sorted(tuple(min(p[i] for p in ps) for i in range(3)) for ps in nets.values())
    for point in points:
        spec = model.network(*point)
        assert predict_latency(spec, profile).ms / predict_latency(base, profile).ms == pytest.approx(
            model.factor(point)
        )


def test_latency_study_compares_at_equal_predicted_latency_and_feeds_scale(tmp_path, capsys):
    path = _profile(tmp_path)
    config = SearchConfig(**SMALL, cost="latency", profile=path, output=str(tmp_path / "s"))
    report = run_search(config, trainer=_trainer, progress=False, echo=lambda _: None)
    rows = [r for r in report["rows"] if r["kind"] != "baseline"]
    assert rows and all(r["equal_cost"] and abs(r["latency_factor"] - 2) <= 0.2 for r in rows)
    assert report["verdict"]["compared"].startswith("only points at equal predicted latency: 2 +- 0.2x")
    defn = report["definition"]
    assert defn["grid"]["cost"] == "latency" and len(defn["latency"]["profile"]["digest"]) == 16
    table = (tmp_path / "s" / "search_results.md").read_text()
    assert "latency_factor" in table and "macs_factor" in table and "flops_factor" in table
    storage = config.storage_url
    assert main(["scale", "--study", config.study, "--storage", storage, "--phi-max", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    chosen = report["chosen"]
    assert (data["alpha"], data["beta"], data["gamma"]) == (chosen["alpha"], chosen["beta"], chosen["gamma"])


def test_reward_weight_ranks_by_top1_times_latency_over_target(tmp_path):
    path = _profile(tmp_path)
    config = SearchConfig(**SMALL, profile=path, reward_weight=-1.0, output=str(tmp_path / "r"))
    report = run_search(config, trainer=_trainer, progress=False, echo=lambda _: None)
    full = [r for r in report["rows"] if not r["pruned"]]
    for r in full:
        assert r["reward"] == pytest.approx(r["top1_mean"] * (r["latency_factor"] / 2.0) ** -1.0, abs=1e-3)
    rewards = [r["reward"] for r in full]
    assert rewards == sorted(rewards, reverse=True)
    assert "reward" in (tmp_path / "r" / "search_results.md").read_text()
    with pytest.raises(ValueError, match="grid.reward_weight: stored -1.0, given 0.0"):
        run_search(dataclasses.replace(config, reward_weight=0.0), trainer=_trainer, progress=False)


def test_curves_at_equal_predicted_latency_draw_measured_latency(tmp_path, monkeypatch):
    from effnet.search import curves

    path = _profile(tmp_path)
    training = SearchConfig(**{**SMALL, "seeds": 1}, output=str(tmp_path / "c"), study="curves-latency")
    config = CurvesConfig(training=training, phi_max=1, cost="latency", profile=path)
    timed = []

    def fake_points(base, points, profile):  # the real one measures with the profile's engine
        timed.append(len(points))
        return [predict_latency(curves.trial_spec(base, p.depth, p.width, p.gamma), profile).ms for p in points]

    monkeypatch.setattr(curves, "measure_points", fake_points)
    report = run_curves(config, trainer=_trainer, progress=False)
    rows = report["rows"]
    singles = [r for r in rows if r["method"] in ("depth", "width", "resolution")]
    assert timed == [len(rows)] and all(abs(r["predicted_latency_factor"] - 2.0) < 0.35 for r in singles)
    assert all(
        r["latency_ms"] > 0 and r["latency_factor"] == pytest.approx(r["predicted_latency_factor"], rel=1e-3)
        for r in rows
    )
    assert "latency_ms" in (tmp_path / "c" / "curves.md").read_text()


class _Timer:
    """A fake measurer: each member's latency is the profile's prediction x ``skew``; records what was built."""

    def __init__(self, profile_path: str, skew: float = 1.0) -> None:
        from effnet.latency.profile import load_profile

        self.profile, self.skew, self.built = load_profile(profile_path), skew, []

    def __call__(self, spec) -> Measurement:
        self.built.append(spec.name)
        lat = predict_latency(spec, self.profile).ms * self.skew
        return Measurement("cpu", 1, lat, 1e3 / lat, 10.0, "fake", (lat,), "onnxruntime")


def test_scale_with_a_profile_predicts_first_and_builds_only_what_can_fit(tmp_path, capsys):
    path = _profile(tmp_path)
    base = scale(get_spec("efficientnet_b0"), width=0.5, resolution=64)
    predicted = [m.spec for m in family(baseline=base, phi_max=7)]
    timer = _Timer(path)
    lat = [predict_latency(s, timer.profile).ms for s in predicted]
    budget = Budget(max_latency_ms=(lat[2] + lat[3]) / 2)
    config = ScaleConfig(baseline=base, device="cpu", runtime="onnxruntime", profile=path, threads=1, budget=budget)
    result = scale_family(config, measure_one=timer)
    assert result.chosen.phi == 2 and len(set(timer.built)) == 4  # 0..3 (3 misses); 4 predicted > 1.5x: not built
    rows = result.to_dict()["family"]
    assert all(r["predicted_latency_ms"] > 0 and r["predicted_by"].startswith("profile (onnxruntime") for r in rows)
    assert all(r["violations"][0].startswith("not built: predicted latency") for r in rows if not r["measured"])
    # without a device the choice is by the predictions alone, torch-free
    alone = scale_family(dataclasses.replace(config, device=None))
    assert alone.chosen.phi == 2 and not any(m.measurement for m in alone.members)
    code = main(["scale", "--profile", path, "--max-latency-ms", "0.01", "--json"])
    assert code == 2
    _one_line(capsys.readouterr().err, "below anything measurable", "one call alone takes")
    code = main(["scale", "--profile", path, "--device", "cpu", "--max-latency-ms", "30"])  # measured eagerly
    assert code == 2
    _one_line(capsys.readouterr().err, "models onnxruntime fp32; measure the same way (--runtime onnxruntime")
    batch8 = _profile(tmp_path, batch=8)
    code = main(["scale", "--profile", batch8, "--device", "cpu", "--runtime", "onnxruntime", "--max-latency-ms", "9"])
    assert code == 2
    _one_line(capsys.readouterr().err, "this profile was measured at batch 8, not 1")


def test_a_baseline_spec_of_the_study_is_the_one_costed(tmp_path):
    """The latency factors a study records are those of the networks as trained: its definition's points."""
    path = _profile(tmp_path)
    config = SearchConfig(**SMALL, cost="latency", profile=path, output=str(tmp_path / "d"))
    report = run_search(config, trainer=_trainer, progress=False, echo=lambda _: None)
    from effnet.latency.profile import load_profile

    model = latency_cost_model(baseline_spec(config), load_profile(path))
    for a, b, g, f in report["definition"]["latency"]["factors"]:
        assert f == pytest.approx(model.factor((a, b, g)), abs=1e-6)


TINY_CLI = ["--width", "0.25", "--depth", "1", "--resolution", "24", "--epochs", "1"]
TINY_CLI += ["--train-limit", "32", "--val-limit", "32", "--batch-size", "32", "--threads", "1", "--seeds", "1"]


@pytest.mark.slow
def test_cli_latency_search_and_curves_train_real_models(tmp_path, capsys):
    """--cost latency end to end at a tiny budget: the real trainer on Fashion-MNIST, then curves measured with the
    profile's engine (ONNX Runtime)."""
    from test_search import _fashion_mnist_or_skip

    _fashion_mnist_or_skip()
    pytest.importorskip("onnxruntime")
    path = _profile(tmp_path)
    out = tmp_path / "search"
    flags = [*TINY_CLI, "--profile", path, "--quiet", "--jobs", "1"]
    grid = ["--cost", "latency", "--step", "0.25", "--tol", "0.2"]
    assert main(["search", *grid, *flags, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "compared: only points at equal predicted latency: 2 +- 0.2x" in printed
    summary = json.loads((out / "search_summary.json").read_text())
    scaled = [r for r in summary["rows"] if r["kind"] != "baseline"]
    assert scaled and all(abs(r["latency_factor"] - 2) <= 0.2 and r["epochs"] == 1 for r in scaled)
    curves = ["curves", "--cost", "latency", "--phi-max", "1", "--methods", "width,compound", *flags]
    assert main([*curves, "--output", str(tmp_path / "curves")]) == 0
    rows = json.loads((tmp_path / "curves" / "curves_summary.json").read_text())["rows"]
    assert len(rows) == 3 and all(r["latency_ms"] > 0 for r in rows) and rows[0]["latency_factor"] == 1.0
