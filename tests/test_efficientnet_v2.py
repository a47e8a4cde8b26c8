"""EfficientNetV2 as data: Fused-MBConv specs whose params and MACs equal torchvision's and timm's modules."""

import dataclasses
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import effnet
from effnet.architectures import EFFICIENTNET_V2_RESOLUTIONS, get_spec, scale, train_resolution
from effnet.cost import cost
from effnet.specs import NetworkSpec, resolve

V2 = sorted(EFFICIENTNET_V2_RESOLUTIONS)
ISSUE_PARAMS = {  # issue #13's measured reference counts
    "efficientnet_v2_s": 21_458_488,
    "efficientnet_v2_m": 54_139_356,
    "efficientnet_v2_l": 118_515_272,
    "efficientnet_v2_xl": 208_119_808,
    "efficientnet_v2_b0": 7_139_704,
    "efficientnet_v2_b3": 14_358_406,
}


def _reference(name):
    """torchvision's module for S/M/L, timm's ``tf_efficientnetv2_*`` for XL and B0-B3 (meta device)."""
    import torchvision

    variant = name.rsplit("_", 1)[-1]
    with torch.device("meta"):
        if variant in ("s", "m", "l"):
            return getattr(torchvision.models, name)()
        timm = pytest.importorskip("timm")
        return timm.create_model(f"tf_efficientnetv2_{variant}")


def _macs(model, resolution):
    with torch.device("meta"):
        x = torch.empty(1, 3, resolution, resolution)
    with FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("name", V2)
def test_params_and_macs_equal_reference_module_at_train_and_eval_sizes(name):
    ref = _reference(name)
    with torch.device("meta"):
        ours = effnet.create_model(name)
    params = sum(p.numel() for p in ref.parameters())
    assert cost(name).params == params == sum(p.numel() for p in ours.parameters())
    train, evaluate = EFFICIENTNET_V2_RESOLUTIONS[name]
    assert train_resolution(get_spec(name)) == train and get_spec(name).resolution == evaluate
    for res in (train, evaluate):
        c = cost(name, res)
        assert c.macs == _macs(ours, res) == _macs(ref, res)


def test_issue_reference_counts():
    for name, params in ISSUE_PARAMS.items():
        assert cost(name).params == params


def test_v2_s_stages_are_fused_then_mbconv():
    spec = get_spec("efficientnet_v2_s")
    assert [s.block for s in spec.stages] == ["fused_mbconv"] * 3 + ["mbconv"] * 3
    first = resolve(spec).stages[0][0]
    assert (first.in_channels, first.mid_channels, first.out_channels, first.has_skip) == (24, 24, 24, True)
    assert spec.family == "efficientnet_v2" and spec.bn_eps == 1e-3


def test_v2_spec_json_round_trips_and_old_json_still_loads():
    spec = get_spec("efficientnet_v2_b2")
    assert NetworkSpec.from_json(spec.to_json()) == spec
    old = json.loads(get_spec("efficientnet_b0").to_json())
    del old["round_limit"]  # spec files written before V2 have no round_limit
    assert NetworkSpec.from_dict(old) == get_spec("efficientnet_b0")


def test_fused_stage_scales_like_mbconv():
    base = get_spec("efficientnet_v2_s")
    bigger = resolve(scale(base, depth=1.5, width=1.25))
    assert [len(s) for s in bigger.stages] == [3, 6, 6, 9, 14, 23]
    assert bigger.stages[1][0].out_channels == 64  # round(48 x 1.25) to a multiple of 8
    c = cost(scale(base, 1.5, 1.25, 320))
    with torch.device("meta"):
        model = effnet.create_model(scale(base, 1.5, 1.25, 320))
    assert c.macs == _macs(model, 320) and c.params == sum(p.numel() for p in model.parameters())


def test_fused_stage_with_squeeze_excite_is_built_and_costed_alike():
    spec = get_spec("efficientnet_v2_b0")
    stages = list(spec.stages)
    stages[1] = dataclasses.replace(stages[1], se_ratio=0.25)
    stages[0] = dataclasses.replace(stages[0], se_ratio=0.25)
    spec = spec.replace(stages=tuple(stages), name="v2_b0_fused_se")
    with torch.device("meta"):
        model = effnet.create_model(spec)
    assert cost(spec).params == sum(p.numel() for p in model.parameters())
    assert cost(spec, 128).macs == _macs(model, 128)


def test_v2_forward_on_cpu():
    model = effnet.create_model("efficientnet_v2_b0", num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.9", True])
def test_round_limit_is_validated(bad):
    with pytest.raises(ValueError, match="round_limit"):
        get_spec("efficientnet_v2_b0").replace(round_limit=bad)


def test_table_v2_section_beside_exact_counts(capsys):
    from effnet.cli import main

    assert main(["table", "--section", "v2", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    s = next(r for r in data["v2"] if r["model"] == "EfficientNetV2-S")
    assert (s["top1"], s["params_paper"], s["flops_paper"]) == (83.9, 22e6, 8.8e9)
    assert s["params_effnet"] == 21_458_488 and s["macs_effnet"] == cost("efficientnet_v2_s", 384).macs
    assert s["macs_effnet_train"] == cost("efficientnet_v2_s", 300).macs and s["train_resolution"] == 300
    assert data["v2_source"] == "Tan & Le, EfficientNetV2, ICML 2021"
    assert main(["table"]) == 0
    assert "EfficientNetV2-L" in capsys.readouterr().out


def test_info_shows_v2_stages(capsys):
    from effnet.cli import main

    assert main(["info", "efficientnet_v2_s", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    blocks = [p["block"] for p in data["parts"] if p["name"].startswith("stage")]
    assert blocks == ["fused_mbconv"] * 3 + ["mbconv"] * 3 and data["params"] == 21_458_488
    assert main(["info", "efficientnet_v2_s"]) == 0
    assert "fused_mbconv" in capsys.readouterr().out


def test_table_and_info_for_v2_stay_torch_free():
    import subprocess
    import sys

    code = (
        "import sys\nfrom effnet.cli import main\nmain(['table', '--section', 'v2'])\n"
        "main(['info', 'efficientnet_v2_m'])\nassert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


# --------------------------------------------------------------------------------------------
# Converters: torchvision V2 and timm (tf_)efficientnetv2_* state dicts
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_torchvision_v2_s_parity_at_two_resolutions(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    from test_weights import parity

    reference = torchvision.models.efficientnet_v2_s()
    for resolution in (64, 97):
        diff, model = parity(reference, "efficientnet_v2_s", resolution, tmp_path)
        assert diff <= 1e-4, resolution
    assert model.weights_metadata["source"] == "torchvision" and model.spec.bn_eps == 1e-3
    pre = model.preprocessing  # torchvision's V2-S transforms: resize 384, crop 384, bilinear
    assert (pre.input_size, pre.crop_fraction, pre.interpolation) == (384, 1.0, "bilinear")


@pytest.mark.slow
def test_timm_tf_efficientnetv2_b0_parity_at_two_resolutions(tmp_path):
    timm = pytest.importorskip("timm")
    from test_weights import parity

    reference = timm.create_model("tf_efficientnetv2_b0")
    for resolution in (64, 97):  # even: TF's asymmetric padding; odd: symmetric
        diff, model = parity(reference, "tf_efficientnetv2_b0", resolution, tmp_path)
        assert diff <= 1e-4, resolution
    assert model.spec.padding == "tf_same" and model.spec.bn_eps == 1e-3 and model.weights_metadata["source"] == "tf"
    pre = model.preprocessing  # timm's cfg: trained at 192, evaluated at 224, crop 0.875
    assert (pre.input_size, pre.crop_fraction, pre.interpolation) == (224, 0.875, "bicubic")


@pytest.mark.slow
def test_timm_pytorch_padding_efficientnetv2_parity(tmp_path):
    timm = pytest.importorskip("timm")
    from test_weights import parity

    reference = timm.create_model("efficientnetv2_s")
    diff, model = parity(reference, "efficientnetv2_s", 64, tmp_path)
    assert diff <= 1e-4 and model.spec.padding == "symmetric" and model.spec.bn_eps == 1e-5


def test_every_v2_layout_maps_key_for_key_and_is_recognised():
    import torchvision

    from effnet.models.convert import source_spec
    from effnet.models.convert.state_dict import convert_state_dict, infer_model_name

    timm = pytest.importorskip("timm")
    cases = [
        ("torchvision", f"efficientnet_v2_{v}", getattr(torchvision.models, f"efficientnet_v2_{v}"))
        for v in ("s", "m", "l")
    ]
    cases += [
        ("tf", f"efficientnet_v2_{v}", lambda v=v: timm.create_model(f"tf_efficientnetv2_{v}"))
        for v in ("xl", "b0", "b1", "b2", "b3")
    ]
    for source, name, build in cases:
        with torch.device("meta"):
            state = build().state_dict()
        converted = convert_state_dict(state, source_spec(get_spec(name), source), source)
        assert len(converted) == len(state), name
        assert infer_model_name(state, source, 1000) == name


def test_wrong_v2_size_and_shapes_are_one_line_errors(tmp_path):
    from effnet.models.factory import load_pretrained

    timm = pytest.importorskip("timm")
    path = tmp_path / "tf_efficientnetv2_b1.pth"
    torch.save(timm.create_model("tf_efficientnetv2_b1").state_dict(), path)
    with pytest.raises(ValueError) as info:
        load_pretrained("tf_efficientnetv2_b0", path)
    message = str(info.value)
    assert "\n" not in message and "unexpected keys" in message and "looks like efficientnet_v2_b1" in message
    state = torch.load(path, weights_only=True)
    state["blocks.1.0.conv_exp.weight"] = torch.zeros(32, 16, 3, 3)
    torch.save(state, path)
    shape = r"wrong shapes: blocks\.1\.0\.conv_exp\.weight \(32, 16, 3, 3\) != expected \(64, 16, 3, 3\)"
    with pytest.raises(ValueError, match=shape):
        load_pretrained("tf_efficientnetv2_b1", path)
    with pytest.raises(ValueError, match="efficientnet_pytorch weights have no Fused-MBConv"):
        from effnet.models.convert import key_map

        key_map(get_spec("efficientnet_v2_s"), "efficientnet_pytorch")


# --------------------------------------------------------------------------------------------
# V2 as a compound-scaling baseline
# --------------------------------------------------------------------------------------------


def test_scale_accepts_v2_baseline_cost_only(capsys):
    from effnet.architectures import BASELINES, compound_spec
    from effnet.cli import main
    from effnet.search.baselines import load_baseline

    assert "efficientnet_v2_s" in BASELINES and load_baseline("efficientnet_v2_s") == get_spec("efficientnet_v2_s")
    code = main(
        [
            "scale",
            "--baseline",
            "efficientnet_v2_s",
            "--width",
            "0.25",
            "--resolution",
            "32",
            "--phi-max",
            "2",
            "--json",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["baseline"] == "efficientnet_v2_s" and [r["phi"] for r in data["family"]] == [0, 1, 2]
    base = get_spec("efficientnet_v2_s").replace(width=0.25, resolution=32)
    phi2 = compound_spec(2, baseline=base)
    assert data["family"][2]["macs"] == cost(phi2).macs and data["family"][2]["resolution"] == 42
    assert [s.block for s in phi2.stages] == ["fused_mbconv"] * 3 + ["mbconv"] * 3


@pytest.mark.slow
def test_search_accepts_v2_baseline_and_feeds_scale(tmp_path, capsys):
    """A tiny real search (7 one-epoch trials on 32 Fashion-MNIST images at 16 px) from the V2-S baseline."""
    from effnet.cli import main
    from test_search import _fashion_mnist_or_skip

    _fashion_mnist_or_skip()
    out = tmp_path / "search"
    code = main(
        [
            "search",
            "--baseline",
            "efficientnet_v2_s",
            "--step",
            "0.5",
            "--tol",
            "0.6",
            "--width",
            "0.25",
            "--resolution",
            "16",
            "--epochs",
            "1",
            "--train-limit",
            "32",
            "--val-limit",
            "32",
            "--batch-size",
            "32",
            "--threads",
            "1",
            "--heartbeat",
            "1",
            "--seeds",
            "1",
            "--quiet",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    summary = json.loads((out / "search_summary.json").read_text())
    assert "efficientnet_v2_s" in json.dumps(summary)
    capsys.readouterr()
    url = str(out / "study.journal")  # the default storage
    assert main(["scale", "--study", "effnet-search", "--storage", url, "--phi-max", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["baseline"] == "efficientnet_v2_s" and data["family"][1]["macs"] > data["family"][0]["macs"]
