"""timm's backbone API on effnet models (timm's names and semantics), checked against timm's own modules on the same
converted weights: forward_intermediates, prune_intermediate_layers, features_only(out_indices), feature_info,
group_matcher, set_grad_checkpointing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from effnet.architectures import get_spec
from effnet.models.convert import source_spec
from effnet.models.convert.state_dict import convert_state_dict
from effnet.models.factory import create_model

timm = pytest.importorskip("timm", reason="needs timm")

CASES = [("efficientnet_b0", "efficientnet_b0", "timm"), ("efficientnet_v2_b0", "tf_efficientnetv2_b0", "tf")]


def _pair(name: str, timm_name: str, layout: str, **kwargs) -> tuple[nn.Module, nn.Module]:
    """timm's module with random BN statistics, and effnet's from its converted state dict (both built with
    ``kwargs``, e.g. ``features_only``, and given the full model's tensors they have)."""
    reference = timm.create_model(timm_name)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    spec = source_spec(get_spec(name), layout)
    ours = create_model(spec)
    ours.load_state_dict(convert_state_dict(reference.state_dict(), spec, layout))
    if kwargs:
        reference, full = timm.create_model(timm_name, **kwargs), reference
        reference.load_state_dict({k: v for k, v in full.state_dict().items() if k in reference.state_dict()})
        ours, full = create_model(spec, **kwargs), ours
        ours.load_state_dict({k: v for k, v in full.state_dict().items() if k in ours.state_dict()})
    return reference.eval(), ours.eval()


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert [t.shape for t in a] == [t.shape for t in b]
    assert all((x - y).abs().max().item() <= 1e-5 for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name, timm_name, layout", CASES)
def test_forward_intermediates_match_timm(name, timm_name, layout):
    reference, ours = _pair(name, timm_name, layout)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert list(ours.feature_info) == [
        {**f, "module": f["module"].replace("blocks", "stages")} for f in reference.feature_info
    ]
    with torch.no_grad():
        for kwargs in ({}, {"indices": 2}, {"indices": [0, -1]}, {"indices": (1, 3), "stop_early": True}):
            final_t, inter_t = reference.forward_intermediates(x, **kwargs)
            final_o, inter_o = ours.forward_intermediates(x, **kwargs)
            _same([final_t, *inter_t], [final_o, *inter_o])
        only = {"indices": 3, "stop_early": True, "intermediates_only": True}
        _same(reference.forward_intermediates(x, **only), ours.forward_intermediates(x, **only))
        assert reference.prune_intermediate_layers((1, 2)) == ours.prune_intermediate_layers((1, 2))
        _same([reference(x)], [ours(x)])  # forward of a pruned model: the last kept map, as in timm
        _same(reference.forward_intermediates(x, indices=(1, 2))[1], ours.forward_intermediates(x, indices=(1, 2))[1])


@pytest.mark.parametrize("name, timm_name, layout", CASES)
def test_features_only_out_indices_match_timm(name, timm_name, layout):
    reference, ours = _pair(name, timm_name, layout, features_only=True, out_indices=(1, 3, 4))
    assert ours.feature_info.channels() == reference.feature_info.channels()
    assert ours.feature_info.reduction() == reference.feature_info.reduction()
    assert ours.feature_info.out_indices == reference.feature_info.out_indices
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        _same(reference(x), ours(x))
    negative = create_model(name, features_only=True, out_indices=(-2, -1))
    assert negative.feature_info.out_indices == (3, 4) and len(negative(torch.randn(1, 3, 64, 64))) == 2


def test_group_matcher_gives_timm_groups():
    ours, reference = create_model("efficientnet_b0"), timm.create_model("efficientnet_b0")
    for coarse in (False, True):
        groups = timm.models.group_parameters(ours, ours.group_matcher(coarse))
        theirs = timm.models.group_parameters(reference, reference.group_matcher(coarse))
        assert [len(v) for v in groups.values()] == [len(v) for v in theirs.values()]
    from timm.optim import create_optimizer_v2

    counts = [len(create_optimizer_v2(m, "sgd", lr=0.1, layer_decay=0.7).param_groups) for m in (ours, reference)]
    assert counts[0] == counts[1] > 10  # layer-wise LR decay sees the same layers


def test_grad_checkpointing_keeps_gradients():
    torch.manual_seed(0)
    model = create_model("efficientnet_b0", resolution=32, num_classes=3, drop_rate=0.0, drop_path_rate=0.0)
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for enable in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(enable)
        model.train()
        final, intermediates = model.forward_intermediates(x)
        (final.sum() + sum(t.sum() for t in intermediates)).backward()
        grads.append(model.stem.conv.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_bad_indices_are_one_line_errors():
    model = create_model("efficientnet_b0", resolution=32)
    x = torch.randn(1, 3, 32, 32)
    for indices, message in ((6, "out of range"), ([5], "out of range"), ("1", "must be None")):
        with pytest.raises(ValueError, match=message):
            model.forward_intermediates(x, indices=indices)
    with pytest.raises(ValueError, match="NCHW"):
        model.forward_intermediates(x, output_fmt="NHWC")
    with pytest.raises(ValueError, match="features_only=True"):
        create_model("efficientnet_b0", out_indices=(1,))
