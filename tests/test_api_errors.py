"""A public function given a wrong value raises one line from ``effnet.errors`` (a ``ValueError`` / ``TypeError``
subclass) naming it, never an ``AttributeError`` or a runtime's shape error; an exported file made for another model
than ``--weights`` is one line too."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import effnet
from effnet.architectures import get_spec
from effnet.cli import main
from effnet.errors import EffnetError, InvalidValue, WrongType

BAD = [None, "efficientnet_b0", -3, math.nan, {"epochs": 1}, [1], torch.zeros(1), object()]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Small 3-class RGB, 2-class RGB and 3-class gray networks, their weights files."""
    from effnet.preprocessing import Preprocessing

    folder = tmp_path_factory.mktemp("api")
    torch.manual_seed(0)
    spec = get_spec("efficientnet_b0").replace(width=0.25, depth=0.25, num_classes=3, name="tiny")
    out: dict[str, Any] = {"spec": spec, "model": effnet.create_model(spec).eval()}
    for name, changes in (("rgb3", {}), ("rgb2", {"num_classes": 2}), ("gray3", {"in_chans": 1})):
        model = effnet.create_model(spec.replace(**changes)).eval()
        pre = Preprocessing(32, 1.0).with_in_chans(model.spec.in_chans)
        out[name] = effnet.save_pretrained(model, folder / f"{name}.safetensors", pre)
    return out


def _refused(call: Any, *needles: str) -> EffnetError:
    with pytest.raises(EffnetError) as info:
        call()
    assert isinstance(info.value, (ValueError, TypeError)) and "\n" not in str(info.value)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    return info.value


def test_the_named_examples(tiny: dict[str, Any]) -> None:
    model = tiny["model"]
    _refused(lambda: effnet.optimize_for_inference(model, torch.zeros(1, 1, 32, 32)), "example has 1 channel(s)")
    _refused(lambda: effnet.optimize_for_inference(model, torch.zeros(3, 32, 32)), "example must be an (N, C, H, W)")
    _refused(
        lambda: effnet.eval_transform(None),
        "preprocessing must be an effnet Preprocessing (e.g. model.preprocessing), got NoneType",
    )
    error = _refused(lambda: effnet.resolve("efficientnet_b0"), "resolve's spec must be a NetworkSpec")
    assert isinstance(error, WrongType)
    _refused(lambda: effnet.fit({"epochs": 1}), "config must be a TrainConfig", "got dict")


@pytest.mark.parametrize("value", BAD, ids=lambda v: type(v).__name__)
def test_every_public_function_refuses_wrong_values_in_one_line(tiny: dict[str, Any], value: Any) -> None:
    model, spec = tiny["model"], tiny["spec"]
    calls = {
        "resolve": lambda: effnet.resolve(value),
        "eval_transform": lambda: effnet.eval_transform(value),
        "fit": lambda: effnet.fit(value),
        "run_search": lambda: effnet.run_search(value),
        "run_curves": lambda: effnet.run_curves(value),
        "scale_family": lambda: effnet.scale_family(value),
        "CurvesConfig": lambda: effnet.CurvesConfig(training=value),
        "EfficientNet": lambda: effnet.EfficientNet(value),
        "EfficientNetFeatures": lambda: effnet.EfficientNetFeatures(value),
        "ModelEMA": lambda: effnet.ModelEMA(value),
        "ModelEMA decay": lambda: effnet.ModelEMA(model, decay=value),
        "TFRMSprop": lambda: effnet.TFRMSprop(value),
        "TFRMSprop lr": lambda: effnet.TFRMSprop(model.parameters(), lr=value),
        "fold_batchnorm": lambda: effnet.fold_batchnorm(value),
        "optimize_for_inference": lambda: effnet.optimize_for_inference(value),
        "optimize example": lambda: effnet.optimize_for_inference(model, value),
        "runner call": lambda: effnet.optimize_for_inference(model)(value),
        "load_baseline": lambda: effnet.load_baseline(value),
        "convert_checkpoint": lambda: effnet.convert_checkpoint(value),
        "load_pretrained": lambda: effnet.load_pretrained(None, value),
        "save_pretrained": lambda: effnet.save_pretrained(model, value),
        "export_model": lambda: effnet.export_model(value, "x.onnx", "onnx"),
        "flops_factor": lambda: effnet.flops_factor(value, 1.2, 1.1),
        "cost": lambda: effnet.cost(spec, value),
        "scale": lambda: effnet.scale(spec, width=value),
    }
    if isinstance(value, str):  # a path: it would be written
        del calls["save_pretrained"]
    else:
        calls["list_models"] = lambda: effnet.list_models(value)
        calls["get_spec"] = lambda: effnet.get_spec(value)
        calls["paper_table3"] = lambda: effnet.paper_table3(value)
    escaped = []
    for name, call in calls.items():
        try:
            call()
        except EffnetError as exc:  # a str names a file: MissingFile then
            assert isinstance(exc, (ValueError, TypeError, FileNotFoundError)) and "\n" not in str(exc), (name, exc)
        except Exception as exc:
            escaped.append(f"{name}: {type(exc).__name__}: {exc}")
        else:
            if value is not None and name not in ("list_models", "load_baseline", "get_spec"):
                escaped.append(f"{name}: accepted {value!r}")
    assert not escaped, "\n".join(escaped)


def test_scale_config_checks_its_counts() -> None:
    for changes in ({"batch": "x"}, {"batch": 0}, {"threads": "x"}, {"warmup": -1}, {"repeats": 0}):
        _refused(lambda changes=changes: effnet.ScaleConfig(**changes), next(iter(changes)))


def _export(weights: Path, folder: Path, fmt: str) -> Path:
    suffix = {"onnx": ".onnx", "openvino": ".xml"}[fmt]
    output = folder / f"{weights.stem}{suffix}"
    assert main(["export", "--weights", str(weights), "--format", fmt, "--output", str(output)]) == 0
    return output


def _image(folder: Path) -> Path:
    from PIL import Image

    path = folder / "x.png"
    Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_an_exported_file_for_another_model_is_one_line(
    fmt: str, tiny: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    if fmt == "openvino":
        pytest.importorskip("openvino")
    exported, image = _export(tiny["rgb3"], tmp_path, fmt), _image(tmp_path)
    capsys.readouterr()
    assert main(["predict", "--weights", str(tiny["rgb3"]), "--exported", str(exported), str(image)]) == 0
    capsys.readouterr()
    for other, needle in (("rgb2", "-> 2 classes"), ("gray3", "1-channel")):
        assert main(["predict", "--weights", str(tiny[other]), "--exported", str(exported), str(image)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0], err
        assert err[0].startswith(f"effnet predict: error: --exported {exported} takes 3-channel 32x32 images -> 3")
        assert needle in err[0]


def test_load_exported_signature(tiny: dict[str, Any], tmp_path: Path) -> None:
    from effnet.serving.exported import Signature, load_exported

    exported = _export(tiny["rgb3"], tmp_path, "onnx")
    engine = load_exported(exported)
    assert engine.signature == Signature(3, 32, 3)
    assert load_exported(exported, Signature(3, 32, 3)).signature == Signature(3, 32, 3)
    with pytest.raises(InvalidValue, match="but --weights w give 3-channel 64x64 images -> 3 classes"):
        load_exported(exported, Signature(3, 64, 3), "w")
