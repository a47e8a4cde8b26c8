import dataclasses
import json

import pytest

from effnet.architectures import compound_spec, get_spec, list_models, scale
from effnet.blocks import REGISTRY, kinds, rule
from effnet.errors import InvalidValue
from effnet.specs import NetworkSpec, StageSpec, resolve


def test_b0_baseline_layout():
    spec = get_spec("efficientnet_b0")
    rows = [(s.expand_ratio, s.kernel, s.stride, s.out_channels, s.repeats) for s in spec.stages]
    assert rows == [
        (1, 3, 1, 16, 1),
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 2),
        (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4),
        (6, 3, 1, 320, 1),
    ]
    net = resolve(spec)
    assert net.stem_channels == 32 and net.head_channels == 1280
    assert len(net.blocks) == 16
    # SE squeezes the *block input* by 4
    assert [b.se_channels for b in net.blocks[:3]] == [8, 4, 6]
    assert [b.has_skip for b in net.stages[1]] == [False, True]
    # stochastic depth rises linearly: rate * i / N
    assert [b.drop_path for b in net.blocks] == pytest.approx([0.2 * i / 16 for i in range(16)])


def test_lite_rules():
    lite4 = resolve(get_spec("efficientnet_lite4"))
    assert lite4.stem_channels == 32 and lite4.head_channels == 1280
    assert len(lite4.stages[0]) == 1 and len(lite4.stages[-1]) == 1  # first/last repeats unscaled
    assert len(lite4.stages[1]) == 4  # ceil(2 * 1.8)
    assert all(b.se_channels == 0 for b in lite4.blocks)
    assert get_spec("efficientnet_lite0").activation == "relu6"


def test_scale_is_pure_and_composes():
    base = get_spec("efficientnet_b0")
    once = scale(base, depth=1.21, width=1.21)
    twice = scale(scale(base, 1.1, 1.1), 1.1, 1.1)
    assert resolve(once) == resolve(dataclasses.replace(twice, depth=once.depth, width=once.width))
    assert base.width == 1.0 and base.depth == 1.0  # untouched
    assert scale(base, resolution=300).resolution == 300


def test_spec_json_roundtrip():
    for name in list_models():
        spec = get_spec(name)
        assert NetworkSpec.from_json(spec.to_json()) == spec


def test_compound_spec_exact_rule():
    spec = compound_spec(2)
    assert spec.depth == pytest.approx(1.44) and spec.width == pytest.approx(1.21) and spec.resolution == 296
    assert "phi2" in spec.name


def test_list_models_has_whole_family():
    names = list_models()
    expected = [f"efficientnet_b{i}" for i in range(9)] + [f"efficientnet_lite{i}" for i in range(5)]
    for n in expected + ["efficientnet_l2"]:
        assert n in names


@pytest.mark.parametrize(
    "change,match",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"in_chans": 0}, "in_chans"),
        ({"resolution": 7}, "resolution"),
        ({"resolution": 224.5}, "resolution"),
        ({"activation": "gelu"}, "activation"),
        ({"padding": "same"}, "padding"),
        ({"dropout": 1.5}, "dropout"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_spec_validation(change, match):
    with pytest.raises(ValueError, match=match):
        get_spec("efficientnet_b0").replace(**change)


def test_unknown_name_suggests_closest():
    with pytest.raises(ValueError, match="efficientnet_b0"):
        get_spec("efficentnet_b0")


def test_stage_validation_and_bad_json():
    with pytest.raises(ValueError, match="kernel"):
        StageSpec("mbconv", 6, 4, 1, 16, 1)
    with pytest.raises(ValueError, match="block"):
        StageSpec("transformer", 6, 3, 1, 16, 1)
    with pytest.raises(ValueError, match="JSON"):
        NetworkSpec.from_json("{not json")
    data = json.loads(get_spec("efficientnet_b0").to_json())
    data["stages"][0]["foo"] = 1
    with pytest.raises(ValueError, match="foo"):
        NetworkSpec.from_dict(data)


def test_block_registry_names_every_kind_once():
    assert kinds() == ("mbconv", "fused_mbconv", "bottleneck", "dwsep")  # the order error messages list them
    assert all(rule(kind).kind == kind and REGISTRY[kind] is rule(kind) for kind in kinds())
    for bad in ("transformer", None, ["mbconv"]):
        with pytest.raises(InvalidValue, match="block must be one of mbconv, fused_mbconv, bottleneck, dwsep; got"):
            rule(bad)
    with pytest.raises(InvalidValue, match="block must be one of mbconv, fused_mbconv, bottleneck, dwsep; got"):
        StageSpec("transformer", 6, 3, 1, 16, 1)


@pytest.mark.parametrize("kind", kinds())
def test_every_block_kind_resolves_and_scales(kind):
    """Every registered kind resolves to positive channels that grow with width, in a spec that survives JSON."""
    stage = StageSpec(kind, 1, kernel=3, stride=2, out_channels=32, repeats=2, se_ratio=0.25)
    spec = NetworkSpec(f"one_{kind}", (stage,), stem_channels=16, head_channels=0)
    assert NetworkSpec.from_json(spec.to_json()) == spec
    base, wide = resolve(spec), resolve(scale(spec, depth=2.0, width=2.0))
    assert len(wide.blocks) == 2 * len(base.blocks)
    for b in base.blocks + wide.blocks:
        assert b.block == kind and min(b.in_channels, b.mid_channels, b.out_channels) > 0 and b.se_channels >= 0
        assert isinstance(b.has_skip, bool) and isinstance(b.has_downsample, bool)
    assert wide.blocks[-1].out_channels > base.blocks[-1].out_channels


def test_dwsep_rule_refuses_expansion():
    with pytest.raises(InvalidValue, match="expand_ratio of a dwsep stage must be 1"):
        StageSpec("dwsep", 6, 3, 1, 16, 1)
