"""The analytic cost model must equal the built module and torch's FLOP counter exactly."""

import itertools
import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import effnet
from effnet.architectures import compound_spec, get_spec, list_models
from effnet.blocks import kinds
from effnet.cost import cost
from effnet.errors import InvalidValue
from effnet.specs import NetworkSpec, StageSpec

TORCHVISION_PARAMS = {
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704,
    "efficientnet_b7": 66_347_960,
}


def _measure(spec_or_name, resolution):
    """Params and FlopCounterMode MACs of the built module, on the meta device (no memory, no compute)."""
    with torch.device("meta"):
        model = effnet.create_model(spec_or_name).eval()
        x = torch.empty(1, model.spec.in_chans, resolution, resolution)
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter:
        model(x)
    activations = 0

    def hook(module, inputs, output):
        nonlocal activations
        activations += output[0].numel()  # batch 1

    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    hooks = [m.register_forward_hook(hook) for m in layers]
    model(x)
    for h in hooks:
        h.remove()
    return params, counter.get_total_flops() // 2, activations


@pytest.mark.parametrize("name", list_models())
def test_cost_equals_module_and_flop_counter(name):
    c = cost(name)
    params, macs, activations = _measure(name, c.resolution)
    assert (c.params, c.macs, c.activations) == (params, macs, activations)


@pytest.mark.parametrize("resolution", [32, 97, 225, 331])
def _one_stage_networks(kind):
    """Small one-stage networks of ``kind``: expansion 1 and 4, stride 1 and 2, with and without squeeze-excite,
    two blocks each (the second at stride 1 with equal channels); the stages the kind's rule refuses are skipped."""
    networks = []
    for expand, stride, se in itertools.product((1, 4), (1, 2), (0.0, 0.25)):
        try:
            stage = StageSpec(kind, expand, kernel=3, stride=stride, out_channels=24, repeats=2, se_ratio=se)
        except InvalidValue:
            continue
        name = f"one_{kind}_e{expand}_s{stride}_se{se}"
        networks.append(NetworkSpec(name, (stage,), stem_channels=16, head_channels=32, resolution=33))
    return networks


@pytest.mark.parametrize("kind", kinds())
def test_every_block_kind_costs_exactly(kind):
    """Each registered kind's rule counts what its registered module has and computes (a new kind is covered)."""
    networks = _one_stage_networks(kind)
    assert networks, f"{kind} refuses every test stage"
    for spec in networks:
        c = cost(spec)
        assert (c.params, c.macs, c.activations) == _measure(spec, spec.resolution), spec.name
        assert [p.block for p in c.parts] == ["", kind, "", ""]


@pytest.mark.parametrize("resolution", [32, 97, 225, 331])
def test_cost_at_any_resolution(resolution):
    for name in ("efficientnet_b0", "efficientnet_lite2", "resnet50", "mobilenetv2", "mobilenetv1"):
        spec = get_spec(name).replace(padding="tf_same") if "lite" in name else get_spec(name)
        c = cost(spec, resolution)
        assert (c.params, c.macs, c.activations) == _measure(spec, resolution)


def test_cost_with_options_and_compound():
    spec = compound_spec(3).replace(num_classes=10, in_chans=1)
    c = cost(spec)
    assert (c.params, c.macs, c.activations) == _measure(spec, spec.resolution)


def test_published_numbers():
    assert cost("efficientnet_b0", 224).macs == 385_814_752
    assert cost("efficientnet_b7", 600).macs == 37_745_884_192
    assert cost("efficientnet_lite0").params == 4_652_008
    for name, params in TORCHVISION_PARAMS.items():
        assert cost(name).params == params


@pytest.mark.parametrize("variant", range(8))
def test_params_equal_torchvision_module(variant):
    import torchvision

    with torch.device("meta"):
        ref = getattr(torchvision.models, f"efficientnet_b{variant}")()
    assert cost(f"efficientnet_b{variant}").params == sum(p.numel() for p in ref.parameters())


def test_cost_is_fast():
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        assert cost("efficientnet_b7", 600).macs > 0
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.05  # milliseconds: no network is built


def test_cost_breakdown_sums_to_totals():
    c = cost("efficientnet_b3")
    assert sum(p.params for p in c.parts) == c.params and sum(p.macs for p in c.parts) == c.macs
    assert [p.output_size for p in c.parts if p.name.startswith("stage")] == [150, 75, 38, 19, 19, 10, 10]
    assert c.flops == 2 * c.macs


@pytest.mark.parametrize("resolution", [7, 0, 224.0, "224", True])
def test_cost_rejects_bad_resolution(resolution):
    with pytest.raises(ValueError, match="resolution"):
        cost("efficientnet_b0", resolution)


@pytest.mark.parametrize(
    "timm_name,name",
    [
        ("tf_efficientnet_b8", "efficientnet_b8"),
        ("tf_efficientnet_l2", "efficientnet_l2"),
        ("tf_efficientnet_lite0", "efficientnet_lite0"),
        ("tf_efficientnet_lite1", "efficientnet_lite1"),
        ("tf_efficientnet_lite2", "efficientnet_lite2"),
        ("tf_efficientnet_lite3", "efficientnet_lite3"),
        ("tf_efficientnet_lite4", "efficientnet_lite4"),
        ("mobilenetv2_100", "mobilenetv2"),
        ("resnet50", "resnet50"),
        ("mobilenetv1_100", "mobilenetv1"),
    ],
)
def test_params_equal_timm_module(timm_name, name):
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        ref = timm.create_model(timm_name)
    assert cost(name).params == sum(p.numel() for p in ref.parameters())
