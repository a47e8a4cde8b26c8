"""`effnet scale` (step 2: grow phi, measure, pick the largest model within a budget) and the Table 3 check."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import pytest

from effnet.architectures import compound_spec, get_spec, scale
from effnet.cli import main
from effnet.config.scale import Budget, ScaleConfig, parse_count
from effnet.cost import cost
from effnet.search.baselines import load_baseline, paper_table3
from effnet.search.family import family, select
from effnet.search.scaleup import scale_family
from effnet.specs import NetworkSpec, resolve

TINY = ["--width", "0.25", "--resolution", "32"]


def _scale_json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["scale", "--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


# ------------------------------------------------------------------------------------------- Table 3


def test_resnet50_table3_within_5_percent():
    """Baseline, r=2 and compound rows match as labelled; the paper's d=4 and w=2 MACs are transposed."""
    rows = {r.label: r for r in paper_table3("resnet50")}
    for label in ("baseline", "resolution", "compound"):
        assert abs(rows[label].deviation) <= 0.05, (label, rows[label].macs)
    assert rows["baseline"].macs == 4_089_184_256
    assert rows["resolution"].resolution == 448
    assert (rows["compound"].depth, round(rows["compound"].width, 4), rows["compound"].resolution) == (1.44, 1.21, 296)
    depth, width = rows["depth"], rows["width"]
    # exact counts: d=4 -> ceil(4*[3,4,6,3]) = [12,16,24,12] blocks, w=2 -> every channel doubled (stem included)
    assert [len(s) for s in resolve(scale(get_spec("resnet50"), depth=4)).stages] == [12, 16, 24, 12]
    assert abs(depth.macs / width.paper_macs - 1) <= 0.05  # 14.57 GMACs vs the paper's "w=2: 14.7B"
    assert abs(width.macs / depth.paper_macs - 1) <= 0.05  # 16.12 GMACs vs the paper's "d=4: 16.2B"
    # ... and as labelled they are ~10 % off, which is why the docs call the two rows transposed
    assert abs(depth.deviation) > 0.05 and abs(width.deviation) > 0.05


def test_mobilenetv2_table3_single_dimension_rows():
    rows = {r.label: r for r in paper_table3("mobilenetv2")}
    for label in ("baseline", "depth", "width", "resolution"):
        assert abs(rows[label].deviation) <= 0.05, (label, rows[label].macs)


def test_mobilenetv1_table3_rows():
    """Width and resolution rows within 5 %; the baseline (569M) prints as the paper's 0.6B; the compound row
    (d=1.4: the first block stays with the stem, ceil(1.4*[2, 2, 6, 2]) -> 19 blocks, w=1.2, 291 px) is 2.32B,
    0.8 % above the printed 2.3B (repeating the first block too would give 2.47B, +7.4 %)."""
    rows = {r.label: r for r in paper_table3("mobilenetv1")}
    assert list(rows) == ["baseline", "width", "resolution", "compound"]  # the paper has no MobileNetV1 depth row
    assert rows["baseline"].macs == 568_740_352 and rows["baseline"].agrees and rows["baseline"].deviation < -0.05
    for label in ("width", "resolution"):
        assert abs(rows[label].deviation) <= 0.05 and rows[label].agrees, (label, rows[label].macs)
    c = rows["compound"]
    assert (c.depth, c.width, c.resolution) == (1.4, 1.2, 291)
    assert [len(s) for s in resolve(scale(get_spec("mobilenetv1"), depth=1.4)).stages] == [1, 3, 3, 9, 3]
    assert round(c.deviation, 3) == 0.008 and c.agrees
    every_stage = get_spec("mobilenetv1").replace(
        stages=tuple(dataclasses.replace(s, scale_repeats=True) for s in get_spec("mobilenetv1").stages)
    )
    assert round(cost(scale(every_stage, depth=1.4, width=1.2, resolution=291)).macs / 2.3e9 - 1, 3) == 0.074


def test_mobilenetv1_matches_the_reference_network():
    """4,231,976 params with 1000 classes (timm's mobilenetv1_100: same parameter shapes), 568.7M MACs."""
    import timm
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from effnet.models.efficientnet import EfficientNet

    model = EfficientNet(get_spec("mobilenetv1")).eval()
    ref = timm.create_model("mobilenetv1_100", pretrained=False)
    assert sum(p.numel() for p in model.parameters()) == cost("mobilenetv1").params == 4_231_976
    shapes = sorted(tuple(p.shape) for p in model.parameters())
    assert shapes == sorted(tuple(p.shape) for p in ref.parameters())
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and counter.get_total_flops() // 2 == cost("mobilenetv1").macs == 568_740_352


def test_table3_rejects_unknown_baseline():
    with pytest.raises(ValueError, match="mobilenetv1, mobilenetv2, resnet50"):
        paper_table3("vgg16")


def test_effnet_table_prints_table3(capsys):
    assert main(["table", "--section", "table3", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["table3"]
    v1 = {r["scaling"]: r for r in rows if r["baseline"] == "mobilenetv1"}
    assert v1["width"]["flops_paper"] == 2.2e9 and v1["width"]["macs_effnet"] == 2_216_465_408
    assert len(rows) == 14 and sum(r["agrees"] for r in rows) == 11


# ------------------------------------------------------------------------------------------- baselines


def test_load_baseline_names_and_user_spec_file(tmp_path):
    assert load_baseline("resnet50") == get_spec("resnet50")
    custom = scale(get_spec("mobilenetv2"), width=0.5).replace(name="my_net")
    path = tmp_path / "my_net.json"
    path.write_text(custom.to_json())
    assert load_baseline(str(path)) == custom
    with pytest.raises(FileNotFoundError, match="no such spec file"):
        load_baseline(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "stages": [{"block": "conv"}]}')
    with pytest.raises(ValueError, match="not a valid NetworkSpec"):
        load_baseline(str(bad))
    with pytest.raises(ValueError, match="efficientnet_b0, efficientnet_lite0, mobilenetv1, mobilenetv2, resnet50"):
        load_baseline("resnet51")


# ------------------------------------------------------------------------------------------- family


def test_paper_family_matches_compound_spec():
    members = family(1.2, 1.1, 1.15, get_spec("efficientnet_b0"), phi_max=3)
    assert [m.phi for m in members] == [0, 1, 2, 3]
    assert members[0].macs == cost("efficientnet_b0").macs
    for m in members:
        ref = compound_spec(m.phi, 1.2, 1.1, 1.15, "efficientnet_b0")
        assert (m.spec.depth, m.spec.width, m.spec.resolution) == (ref.depth, ref.width, ref.resolution)
        assert m.macs == cost(ref).macs and m.activations == cost(ref).activations
        assert math.isclose(m.flops_target, (1.2 * 1.1**2 * 1.15**2) ** m.phi)


def test_fast_rule_same_flops_target_fewer_activations():
    paper = family(baseline=get_spec("efficientnet_b0"), phi_max=4, rule="paper")
    fast = family(baseline=get_spec("efficientnet_b0"), phi_max=4, rule="fast")
    for p, f in zip(paper[1:], fast[1:], strict=True):
        assert math.isclose(f.depth * f.width**2 * (f.resolution / 224) ** 2, f.flops_target, rel_tol=0.06)
        assert 0.75 < f.macs / p.macs < 1.35  # same FLOPs target, different rounding
        assert f.width > p.width and f.depth < p.depth and f.resolution < p.resolution
    assert fast[4].activations < 0.7 * paper[4].activations  # Dollar et al.: width-heavy scaling, fewer activations


def test_budget_selection_on_cost(capsys):
    members = family(phi_max=7)
    limit = (members[3].macs + members[4].macs) / 2
    code, data = _scale_json(capsys, "--max-macs", f"{limit:.0f}", "--max-params", "100M")
    assert code == 0 and data["chosen_phi"] == 3
    fam = data["family"]
    assert fam[3]["fits"] and fam[3]["macs"] <= limit and not fam[4]["fits"] and fam[4]["macs"] > limit
    assert NetworkSpec.from_dict(data["chosen_spec"]) == members[3].spec
    assert data["alpha"] == 1.2 and data["rule"] == "paper" and data["source"] == "the paper's coefficients"


def test_parse_count():
    assert parse_count("400M") == 4e8 and parse_count("2G") == 2e9 and parse_count("1.5e9") == 1.5e9
    assert parse_count("12k") == 12e3 and parse_count("2B") == 2e9
    with pytest.raises(ValueError, match="not a count"):
        parse_count("lots")
    with pytest.raises(ValueError, match="positive"):
        parse_count("-1")


def test_budget_no_model_fits_is_clear_error(capsys):
    assert main(["scale", "--max-params", "1M"]) == 2
    err = capsys.readouterr().err
    assert "no model of the family" in err and "even phi=0 has params" in err and "--max-params" in err
    result = scale_family(ScaleConfig(phi_max=1, budget=Budget(max_macs=1e6)))
    assert result.chosen is None and "even phi=0 has MACs" in result.reason
    with pytest.raises(ValueError, match="even phi=0"):
        select(result.members, Budget(max_macs=1e6))


def test_latency_budget_needs_device(capsys):
    assert main(["scale", "--max-latency-ms", "5"]) == 2
    assert "need --device" in capsys.readouterr().err


def test_coefficient_flags_must_come_together(capsys):
    assert main(["scale", "--alpha", "1.3"]) == 2
    assert "give all of --alpha, --beta and --gamma" in capsys.readouterr().err
    assert main(["scale", "--alpha", "0.9", "--beta", "1", "--gamma", "1"]) == 2
    assert "alpha must be >= 1" in capsys.readouterr().err


def test_scale_without_device_does_not_import_torch(tmp_path):
    code = (
        "import sys, json; from effnet.cli import main; rc = main(['scale', '--json', '--phi-max', '2', "
        f"'--output-spec', {str(tmp_path / 's.json')!r}]); "
        "assert rc == 0; assert 'torch' not in sys.modules, 'torch was imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert NetworkSpec.from_json((tmp_path / "s.json").read_text()).resolution == 296


# ------------------------------------------------------------------------------------------- measurement


@pytest.mark.slow
def test_max_latency_picks_largest_fitting_phi(capsys):
    """A measured budget: chosen latency <= X and its phi+1 neighbour > X (same run's measurements)."""
    args = [*TINY, "--phi-max", "3", "--device", "cpu", "--batch", "4", "--threads", "1", "--repeats", "5"]
    code, first = _scale_json(capsys, *args)
    assert code == 0
    lat = [m["latency_ms"] for m in first["family"]]
    assert all(m["peak_memory_mb"] > 0 and m["throughput"] > 0 for m in first["family"])
    assert lat[3] > lat[0]
    for _ in range(3):  # timing noise on a shared CPU can make every model fit (or none): aim again from the last run
        limit = math.sqrt(lat[1] * lat[3]) if lat[3] > 1.3 * lat[1] else (lat[0] + lat[3]) / 2
        code, data = _scale_json(capsys, *args, "--max-latency-ms", f"{limit:.4f}")
        fam = data["family"]  # members above the first miss and one more are predicted, not measured
        lat = [m["latency_ms"] if m["measured"] else m["predicted_latency_ms"] for m in fam]
        if code != 0:
            assert data["chosen_phi"] is None and "even phi=0 has latency" in data["error"]
            continue
        chosen = data["chosen_phi"]
        assert fam[chosen]["latency_ms"] <= limit and fam[chosen]["fits"]
        assert all(not m["fits"] for m in fam if not m["measured"] or m["latency_ms"] > limit)
        if chosen < 3:
            assert fam[chosen + 1]["latency_ms"] > limit  # the phi+1 neighbour is over the budget
            break
    else:
        pytest.fail(f"no run separated the family at a latency budget: {lat}")


@pytest.mark.slow
def test_memory_budget_and_spec_trains(tmp_path, capsys):
    spec_path = tmp_path / "chosen.json"
    code, data = _scale_json(
        capsys,
        *TINY,
        "--phi-max",
        "1",
        "--device",
        "cpu",
        "--repeats",
        "2",
        "--threads",
        "1",
        "--max-memory-mb",
        "100000",
        "--output-spec",
        str(spec_path),
        "--num-classes",
        "10",
    )
    assert code == 0 and data["chosen_phi"] == 1 and "VmHWM" in data["memory_method"]
    spec = NetworkSpec.from_json(spec_path.read_text())
    assert spec == NetworkSpec.from_dict(data["chosen_spec"]) and spec.num_classes == 10
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--data",
            "fashion-mnist",
            "--spec",
            str(spec_path),
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--train-limit",
            "64",
            "--val-limit",
            "64",
            "--output",
            str(out),
            "--threads",
            "1",
        ]
    )
    if rc != 0 and "fashion" in capsys.readouterr().err.lower():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    assert rc == 0
    assert json.loads((out / "config.json").read_text())["spec_file"] == str(spec_path)


def test_measure_with_a_deployment_runtime(capsys):
    from effnet.search.measure import measure

    code, data = _scale_json(
        capsys,
        *TINY,
        "--phi-max",
        "1",
        "--device",
        "cpu",
        "--repeats",
        "2",
        "--threads",
        "1",
        "--runtime",
        "onnxruntime",
    )
    assert code == 0 and data["runtime"] == "onnxruntime"
    assert all(m["latency_ms"] > 0 and m["peak_memory_mb"] > 0 for m in data["family"])
    spec = get_spec("efficientnet_b0").replace(resolution=32, width=0.25, depth=0.25)
    assert measure(spec, "cpu", 2, warmup=1, repeats=1, threads=1, runtime="fused").runtime == "fused"
    with pytest.raises(ValueError, match="--runtime must be one of"):
        measure(spec, "cpu", runtime="tensorrt")
    with pytest.raises(ValueError, match="runs on the CPU"):
        measure(spec, "cuda", runtime="onnxruntime")
