import math

import pytest
import torch
import torch.nn.functional as F

import effnet
from effnet.architectures import get_spec
from effnet.blocks import REGISTRY, kinds
from effnet.models.layers import BLOCK_MODULES, Conv2dSame, DropPath, MBConv
from effnet.specs import NetworkSpec, StageSpec, resolve

torch.manual_seed(0)


def _small(name="efficientnet_b0", **kw):
    return effnet.create_model(name, resolution=64, **kw)


def test_forward_shapes_and_options():
    m = _small(num_classes=10, in_chans=1).eval()
    assert m(torch.randn(2, 1, 64, 64)).shape == (2, 10)
    assert m.forward_features(torch.randn(1, 1, 64, 64)).shape == (1, 1280, 2, 2)
    assert m.forward_head(torch.randn(3, 1280, 2, 2), pre_logits=True).shape == (3, 1280)
    m.reset_classifier(5)
    assert m(torch.randn(1, 1, 64, 64)).shape == (1, 5) and m.spec.num_classes == 5
    with pytest.raises(ValueError, match="num_classes"):
        m.reset_classifier(0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"in_chans": 0}, "in_chans"),
        ({"resolution": 4}, "resolution"),
        ({"padding": "valid"}, "padding"),
    ],
)
def test_create_model_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        effnet.create_model("efficientnet_b0", **kwargs)


def test_unknown_model_error():
    with pytest.raises(ValueError, match="closest|did you mean"):
        effnet.create_model("efficientnet_b9")


def test_compound_model_errors_and_build():
    with pytest.raises(ValueError, match="phi"):
        effnet.compound_model(-1)
    with pytest.raises(ValueError, match="alpha"):
        effnet.compound_model(1, alpha=0.8)
    with pytest.raises(ValueError, match="target"):
        effnet.compound_model(1, alpha=1.5, target=2.0)
    m = effnet.compound_model(1, num_classes=3)
    assert m.spec.resolution == 258 and m.num_classes == 3


@pytest.mark.parametrize(
    "name,channels",
    [
        ("efficientnet_b0", [16, 24, 40, 112, 320]),
        ("efficientnet_b3", [24, 32, 48, 136, 384]),
        ("efficientnet_lite0", [16, 24, 40, 112, 320]),
        ("resnet50", [256, 512, 1024, 2048]),
    ],
)
def test_features_only(name, channels):
    m = effnet.create_model(name, features_only=True, resolution=64).eval()
    feats = m(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == channels == [i["num_chs"] for i in m.feature_info]
    assert [64 // f.shape[-1] for f in feats] == [i["reduction"] for i in m.feature_info]
    if name.startswith("efficientnet"):
        assert [i["reduction"] for i in m.feature_info] == [2, 4, 8, 16, 32]


def test_mbconv_skip_rule_and_se():
    net = resolve(get_spec("efficientnet_b0"))
    first, second = net.stages[1]
    assert not MBConv(first).has_skip and MBConv(second).has_skip
    block = MBConv(net.stages[0][0])
    assert block.se.reduce.out_channels == 8 and block.se.expand.out_channels == 32


def test_every_block_kind_has_a_module():
    assert list(BLOCK_MODULES) == list(REGISTRY)


@pytest.mark.parametrize("kind", kinds())
def test_every_block_kind_builds_trains_and_follows_its_skip_rule(kind):
    """A one-stage network of each registered kind runs forward and backward, and its blocks add a residual exactly
    where the kind's rule says: with the residual branch silenced (its last BatchNorm zeroed, as every block's
    branch ends in one) and ReLU activations, a block returns its positive input unchanged if and only if it has a
    skip."""
    stage = StageSpec(kind, 1, kernel=3, stride=2, out_channels=24, repeats=2, se_ratio=0.25)
    spec = NetworkSpec(f"one_{kind}", (stage,), stem_channels=16, head_channels=32, resolution=33, activation="relu")
    model = effnet.create_model(spec, num_classes=5).train()
    out = model(torch.randn(2, 3, 33, 33))
    out.sum().backward()
    assert out.shape == (2, 5) and all(p.grad is not None for p in model.parameters())
    assert [type(b) for b in model.stages[0]] == [BLOCK_MODULES[kind]] * 2
    first, second = resolve(spec).stages[0]
    assert not first.has_skip or first.has_downsample  # a skip across a change of shape is projected
    block = model.stages[0][1].eval()
    last_bn = [m for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1]
    with torch.no_grad():
        last_bn.weight.zero_()
        last_bn.bias.zero_()
        x = torch.rand(1, second.in_channels, 9, 9) + 0.1
        assert torch.equal(block(x), x) == second.has_skip == REGISTRY[kind].has_skip(second)


def test_bn_settings_and_tf_init():
    m = effnet.create_model("efficientnet_b0")
    bn = m.stem.bn
    assert bn.eps == 1e-3 and bn.momentum == 0.01
    w = m.stages[3][0].expand.conv.weight  # 1x1, out 240
    assert w.std().item() == pytest.approx(math.sqrt(2 / 240), rel=0.05)
    assert m.classifier.weight.abs().max().item() <= 1 / math.sqrt(1000)


def test_drop_path_residual_only_and_rescaled():
    dp = DropPath(0.5).train()
    x = torch.ones(4000, 3)
    y = dp(x)
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    assert y.mean().item() == pytest.approx(1.0, abs=0.1)
    assert torch.equal(dp.eval()(x), x)
    m = effnet.create_model("efficientnet_b0", drop_path_rate=0.3)
    rates = [b.drop_path.rate for s in m.stages for b in s if b.has_skip]
    assert max(rates) < 0.3 and min(rates) > 0


def test_dropout_before_classifier_only_in_training():
    m = _small(drop_rate=0.5)
    x = torch.randn(2, 3, 64, 64)
    m.eval()
    assert torch.equal(m(x), m(x))
    assert m.dropout.p == 0.5


def test_tf_same_padding_is_asymmetric():
    conv = Conv2dSame(3, 4, 3, stride=2)
    x = torch.randn(1, 3, 8, 8)
    expected = F.conv2d(F.pad(x, [0, 1, 0, 1]), conv.weight, None, 2)
    assert torch.allclose(conv(x), expected)
    m = _small(padding="tf_same").eval()
    assert isinstance(m.stem.conv, Conv2dSame)
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_grad_checkpointing_same_gradients():
    torch.manual_seed(1)
    a = _small("efficientnet_b0", drop_rate=0.0, drop_path_rate=0.0).train()
    b = _small("efficientnet_b0", drop_rate=0.0, drop_path_rate=0.0, grad_checkpointing=True).train()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 64, 64)
    a(x).sum().backward()
    b(x).sum().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-5), name


@pytest.mark.parametrize("kwargs", [{}, {"padding": "tf_same"}, {"features_only": True}])
def test_jit_script_and_trace(kwargs):
    m = _small(**kwargs).eval()
    x = torch.randn(2, 3, 64, 64)
    ref = m(x)
    scripted = torch.jit.script(m)(x)
    traced = torch.jit.trace(m, x)(x)
    flat = (lambda t: torch.cat([f.flatten() for f in t])) if isinstance(ref, list) else (lambda t: t)
    assert torch.allclose(flat(scripted), flat(ref), atol=1e-5)
    assert torch.allclose(flat(traced), flat(ref), atol=1e-5)


def test_channels_last_and_bf16_autocast():
    m = _small().eval()
    x = torch.randn(2, 3, 64, 64)
    ref = m(x)
    cl = m.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(cl, ref, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = m(x)
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max()


@pytest.mark.slow
def test_torch_compile_matches_eager():
    m = _small().eval()
    x = torch.randn(2, 3, 64, 64)
    compiled = torch.compile(m)
    with torch.no_grad():
        assert torch.allclose(compiled(x), m(x), atol=1e-4)


def test_state_dict_matches_torchvision_shapes():
    import torchvision

    ours = sorted(v.shape for k, v in effnet.create_model("efficientnet_b0").state_dict().items())
    ref = sorted(v.shape for k, v in torchvision.models.efficientnet_b0().state_dict().items())
    assert ours == ref
