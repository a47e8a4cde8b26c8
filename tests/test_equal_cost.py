"""Grids at equal exact cost (issue 21 item 1): the points of ``effnet search --cost macs`` are the networks whose
exact MACs are within --tol of --target x the baseline's; the report and verdict compare only points at equal cost.

The grid is checked against brute force over every grid point; the studies use a cheap stand-in trainer.
"""

from __future__ import annotations

import itertools
import json
import math
from types import SimpleNamespace

import pytest

from effnet.architectures import get_spec, scale
from effnet.config.search import SearchConfig
from effnet.cost import cost
from effnet.scaling import grid_values
from effnet.search.equal_cost import equal_cost_grid, network_key
from effnet.search.grid import band_notes, baseline_spec, candidates, cost_model, trial_spec
from effnet.search.run import run_search

FASHION = {"num_classes": 10, "in_chans": 1}  # the main job's data: its baseline as trained


def _brute(model, target, tol, step):
    """Every grid point in the band, one per network: the smallest coefficients that build it."""
    nets: dict = {}
    for point in itertools.product(grid_values(1.0, 2.0, step), repeat=3):
        f = model.factor(point)
        if f is not None and abs(f - target) <= tol + 1e-12:
            nets.setdefault(network_key(model.network(*point)), []).append(point)
    reps = [tuple(min(p[i] for p in ps) for i in range(3)) for ps in nets.values()]
    assert all(rep in ps for rep, ps in zip(reps, nets.values(), strict=True))  # the groups are products
    return sorted(reps)


@pytest.mark.parametrize(
    ("baseline", "width", "depth", "resolution", "target", "tol", "step"),
    [
        ("efficientnet_b0", 0.25, 1.0, 50, 2.0, 0.05, 0.1),  # the main job's proxy
        ("efficientnet_b0", 0.25, 0.5, 32, 2.0, 0.1, 0.1),  # the old proxy: resolution moves in 2x steps
        ("efficientnet_b0", 0.25, 1.0, 50, 3.0, 0.2, 0.2),
        ("mobilenetv2", 0.5, 0.5, 40, 2.0, 0.1, 0.1),
        ("resnet50", 0.25, 0.5, 32, 1.5, 0.1, 0.25),
    ],
)
def test_equal_cost_grid_is_every_network_in_the_band(baseline, width, depth, resolution, target, tol, step):
    base = scale(get_spec(baseline), width=width, depth=depth, resolution=resolution).replace(**FASHION)
    model = cost_model(base)
    points = equal_cost_grid(model, target, tol, step)
    assert points == _brute(model, target, tol, step)
    for point in points:  # the factor is the exact MACs of the network built, over the baseline's
        assert cost(trial_spec(base, *point)).macs / cost(base).macs == pytest.approx(model.factor(point))
        assert abs(model.factor(point) - target) <= tol + 1e-12


def test_the_main_job_compares_points_at_equal_exact_macs():
    """The default study: every point, the single-dimension ones included, within 2 +- 0.05x the baseline's exact
    MACs as trained (10 classes, 1 channel); all three dimensions and three-way compound points are there."""
    config = SearchConfig()
    assert (config.cost, config.target, config.tol, config.step) == ("macs", 2.0, 0.05, 0.1)
    base = baseline_spec(config).replace(**FASHION)
    model = cost_model(base)
    items = candidates(config.target, config.tol, config.step, seeds=(0,), model=model)
    factors = {c.point: model.factor(c.point) for c in items if c.kind != "baseline"}
    assert all(abs(f - 2.0) <= 0.05 for f in factors.values()), factors
    assert band_notes(items, model, config.target, config.tol) == []
    kinds = {c.kind for c in items}
    assert kinds == {"baseline", "depth", "width", "resolution", "compound"}
    assert any(min(p) > 1 for p in factors)  # alpha, beta and gamma all above 1
    # the formula's grid on the same proxy spans a much wider range of exact cost
    formula = candidates(config.target, config.tol, config.step, seeds=(0,))
    spread = [model.factor(c.point) for c in formula if c.kind != "baseline"]
    assert max(spread) - min(spread) > 1.0


def test_a_fine_grid_prices_few_networks():
    """step 0.01 on B0 at 224 px is 101^3 grid points; grouping and bisection price a few thousand networks."""
    model = cost_model(get_spec("efficientnet_b0"))
    points = equal_cost_grid(model, 2.0, 0.02, 0.01, limit=100000)
    assert points and all(abs(model.factor(p) - 2.0) <= 0.02 + 1e-12 for p in points)
    assert model.priced < 30000


def test_single_dimension_points_outside_the_band_are_named(tmp_path):
    """At the old 32 px proxy depth moves in steps of about 15 %: the depth-only point cannot reach 2 +- 0.05."""
    base = scale(get_spec("efficientnet_b0"), width=0.25, depth=0.5, resolution=32).replace(**FASHION)
    model = cost_model(base)
    items = candidates(2.0, 0.1, 0.1, model=model)
    notes = band_notes(items, model, 2.0, 0.1)
    assert len(notes) == 1 and notes[0].startswith("not compared: depth a=2 b=1 g=1: exact MACs 2.31x")
    assert "a larger proxy, --width, --depth or --resolution" in notes[0]


def _macs_trainer(config, spec, on_epoch=None):
    """A stand-in trainer whose accuracy grows with MACs: the most expensive point wins unless costs are equal."""
    c = cost(spec)
    return SimpleNamespace(
        last_top1=50 + 10 * math.log2(c.macs / 1e6) + 0.1 * config.seed, params=c.params, macs=c.macs
    )


def test_formula_study_compares_only_points_at_equal_exact_cost(tmp_path, capsys):
    config = SearchConfig(
        cost="formula", depth=0.5, resolution=32, step=0.1, tol=0.05, seeds=2, epochs=1, output=str(tmp_path)
    )
    report = run_search(config, trainer=_macs_trainer, progress=False, echo=print)
    out = capsys.readouterr().out
    rows = report["rows"]
    assert all(
        r["flops_factor"] == pytest.approx(r["alpha"] * r["beta"] ** 2 * r["gamma"] ** 2, abs=1e-4) for r in rows
    )
    outside = [r for r in rows if not r["equal_cost"]]
    inside = [r for r in rows if r["equal_cost"] and r["kind"] != "baseline"]
    assert outside and all(abs(r["macs_factor"] - 2) > 0.05 for r in outside if r["kind"] != "baseline")
    assert all(abs(r["macs_factor"] - 2) <= 0.05 for r in inside)
    assert rows[0]["top1_mean"] > report["chosen"]["top1_mean"]  # the best row costs more: it is not chosen
    assert report["chosen"]["equal_cost"] and abs(report["chosen"]["macs_factor"] - 2) <= 0.05
    compared = report["verdict"]["compared"]
    assert compared.startswith(f"only points at equal exact MACs: 2 +- 0.05x the baseline's ({len(inside)} of")
    assert "left out: " in compared and "not compared: " in out  # the run said so before training
    table = (tmp_path / "search_results.md").read_text()
    assert "flops_factor" in table and "macs_factor" in table and "equal_cost" in table
    assert "latency_factor" not in table  # no profile
    assert (tmp_path / "accuracy_vs_macs.png").stat().st_size > 10000

    from effnet.search.study import load_study_result  # effnet scale --study takes the same point

    result = load_study_result(config.storage_url, config.study)
    assert (result["chosen"]["alpha"], result["chosen"]["beta"], result["chosen"]["gamma"]) == (
        report["chosen"]["alpha"],
        report["chosen"]["beta"],
        report["chosen"]["gamma"],
    )


def test_macs_study_trains_only_points_at_equal_cost_and_records_the_cost_mode(tmp_path):
    small = {"width": 0.25, "depth": 1.0, "resolution": 24, "step": 0.25, "tol": 0.15, "seeds": 1, "epochs": 1}
    config = SearchConfig(**small, output=str(tmp_path))
    report = run_search(config, trainer=_macs_trainer, progress=False, echo=lambda _: None)
    assert report["definition"]["grid"]["cost"] == "macs"
    scaled = [r for r in report["rows"] if r["kind"] != "baseline"]
    assert scaled and all(r["equal_cost"] and abs(r["macs_factor"] - 2) <= 0.15 for r in scaled)
    assert report["verdict"]["compared"].endswith(f"({len(scaled)} of {len(scaled)} scaled points)")
    saved = json.loads((tmp_path / "search_summary.json").read_text())
    assert saved["chosen"]["equal_cost"] is True
    with pytest.raises(ValueError, match="grid.cost: stored 'macs', given 'formula'"):
        run_search(SearchConfig(**small, cost="formula", output=str(tmp_path)), trainer=_macs_trainer, progress=False)
