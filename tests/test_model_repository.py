"""``effnet export --format triton | ovms``: versioned model repositories whose configs match the model's graph.

What can be checked without a Triton or OpenVINO Model Server: the layout, ``config.pbtxt`` parsed by Triton's own
``ModelConfig`` schema (from ``tritonclient``) against the written ONNX graph's tensor names, types and shapes, the
OVMS ``config.json``, and the model files running at another batch size.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from effnet.cli import main
from effnet.errors import InvalidValue
from effnet.models.factory import create_model, save_pretrained
from effnet.preprocessing import Preprocessing
from effnet.serving.export import export_model
from effnet.serving.model_repository import (
    TRITON_TYPES,
    check_ovms_repository,
    check_triton_repository,
    onnx_signature,
)

pytestmark = pytest.mark.slow
NAMES = ("ant", "bee", "cat", "dog")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    model = create_model("efficientnet_lite0", num_classes=4).eval()
    path = tmp_path_factory.mktemp("repo") / "w.safetensors"
    return save_pretrained(model, path, Preprocessing(48, 0.875, "bicubic", class_names=NAMES))


@functools.cache
def _triton_schema():
    """Triton's ``model_config.proto`` (``ModelConfig``, ``DataType``), loaded from tritonclient's generated module
    without its gRPC package."""
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs tritonclient (the test extra) for Triton's model_config.proto")
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_triton_repository_matches_the_onnx_graph(weights, tmp_path, capsys):
    from google.protobuf import text_format

    root = tmp_path / "models"
    for _ in range(2):
        assert main(["export", "--weights", str(weights), "--format", "triton", "--output", str(root)]) == 0
    folder = root / "efficientnet_lite0"
    assert sorted(p.name for p in folder.iterdir()) == ["1", "2", "config.pbtxt", "labels.txt"]
    assert (folder / "2" / "model.onnx").is_file() and "wrote" in capsys.readouterr().out
    schema = _triton_schema()
    config = text_format.Parse((folder / "config.pbtxt").read_text(), schema.ModelConfig())  # unknown fields raise
    signature = onnx_signature(folder / "2" / "model.onnx")
    assert config.name == "efficientnet_lite0" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size > 1 and config.HasField("dynamic_batching")
    for declared, (name, elem_type, dims) in zip(
        [*config.input, *config.output], [*signature["inputs"], *signature["outputs"]], strict=True
    ):
        assert declared.name == name and dims[0] == -1  # the batch axis is dynamic in the graph
        assert list(declared.dims) == dims[1:]
        assert declared.data_type == schema.DataType.Value(TRITON_TYPES[elem_type])
    assert [t.name for t in config.input] == ["input"] and list(config.input[0].dims) == [3, 48, 48]
    assert [t.name for t in config.output] == ["logits"] and list(config.output[0].dims) == [4]
    assert config.output[0].label_filename == "labels.txt"
    assert (folder / "labels.txt").read_text().split() == list(NAMES)
    preprocessing = json.loads(config.parameters["effnet_preprocessing"].string_value)
    assert preprocessing["input_size"] == 48 and preprocessing["interpolation"] == "bicubic"
    assert check_triton_repository(folder) == []

    import onnxruntime as ort

    session = ort.InferenceSession(str(folder / "2" / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": np.zeros((5, 3, 48, 48), np.float32)})
    assert logits.shape == (5, 4)


def test_the_checker_finds_a_config_that_disagrees_with_the_model(weights, tmp_path):
    model = create_model("efficientnet_lite0", num_classes=4).eval()
    model.preprocessing = Preprocessing(48, 0.875, class_names=NAMES)
    export_model(model, tmp_path, "triton")
    folder = tmp_path / "efficientnet_lite0"
    config = folder / "config.pbtxt"
    config.write_text(config.read_text().replace("dims: [ 4 ]", "dims: [ 1000 ]"))
    assert any("outputs" in p for p in check_triton_repository(folder))
    (folder / "labels.txt").write_text("one\n")
    config.write_text(config.read_text().replace("dims: [ 1000 ]", "dims: [ 4 ]"))
    assert any("1 labels for 4 classes" in p for p in check_triton_repository(folder))
    (folder / "1" / "model.onnx").unlink()
    assert any("no model.onnx" in p for p in check_triton_repository(folder))


def test_ovms_repository_holds_versioned_irs_and_its_config(weights, tmp_path):
    openvino = pytest.importorskip("openvino")
    root = tmp_path / "ovms"
    for _ in range(2):
        assert main(["export", "--weights", str(weights), "--format", "ovms", "--output", str(root)]) == 0
    config = json.loads((root / "config.json").read_text())
    assert config == {
        "model_config_list": [
            {"config": {"name": "efficientnet_lite0", "base_path": "efficientnet_lite0", "target_device": "CPU"}}
        ]
    }
    for version in ("1", "2"):
        assert (root / "efficientnet_lite0" / version / "model.bin").is_file()
    ir = openvino.Core().read_model(str(root / "efficientnet_lite0" / "2" / "model.xml"))
    assert ir.inputs[0].get_any_name() == "input" and ir.inputs[0].get_partial_shape()[0].is_dynamic
    assert list(ir.inputs[0].get_partial_shape().to_string().strip("[]").split(","))[1:] == ["3", "48", "48"]
    assert check_ovms_repository(root) == []
    (root / "efficientnet_lite0" / "1" / "model.bin").unlink()
    assert check_ovms_repository(root) == [f"{root / 'efficientnet_lite0' / '1' / 'model.xml'}: no model.bin beside it"]


def test_a_repository_of_another_format_is_refused_before_writing(weights, tmp_path):
    model = create_model("efficientnet_lite0", num_classes=4).eval()
    foreign = tmp_path / "efficientnet_lite0" / "1"
    foreign.mkdir(parents=True)
    (foreign / "model.xml").write_text("<net/>")
    with pytest.raises(InvalidValue, match="another format's model"):
        export_model(model, tmp_path, "triton")
    assert sorted(p.name for p in (tmp_path / "efficientnet_lite0").iterdir()) == ["1"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidValue, match="is a file"):
        export_model(model, tmp_path / "file", "triton")
