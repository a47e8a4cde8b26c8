"""Bad input never costs a traceback, a hang, a memory blow-up or a saved file (issue #11).

Table-driven: each case is an input, the fragment its one-line error must contain, the exit status, and the
files that must come out unchanged. Property tests (Hypothesis) feed arbitrary input to the parsers and pure
functions: each answers with a clean ``ValueError`` or a finite result, within a deadline.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import effnet
from effnet.architectures import compound_spec, get_spec, scale
from effnet.cli import main
from effnet.config.scale import parse_count
from effnet.cost import cost
from effnet.errors import BadFile, EffnetError, InvalidValue, MissingFile, OutputConflict, WrongType
from effnet.io import check_output
from effnet.limits import MAX_JSON_BYTES, MAX_MULTIPLIER, MAX_RESOLUTION, json_depth, parse_json
from effnet.scaling import compound
from effnet.specs import NetworkSpec

B0 = get_spec("efficientnet_b0")
PROPERTY = settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line(err: str, *needles: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# --------------------------------------------------------------------------------------------
# Torch-free commands and the core API
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec_files(tmp_path_factory) -> dict[str, Path]:
    """Bad spec files for ``effnet info``: huge width, deep nesting, binary, oversized, a FIFO, NaN."""
    folder = tmp_path_factory.mktemp("specs")
    wide = B0.to_dict() | {"width": 1e300}
    files = {
        "wide": json.dumps(wide),
        "deep": "[" * 100_000 + "]" * 100_000,
        "huge": " " * (MAX_JSON_BYTES + 1) + "{}",
        "nan": B0.to_json().replace('"dropout": 0.2', '"dropout": NaN'),
        "stages": json.dumps(B0.to_dict() | {"stages": "abc"}),
        "repeats": json.dumps(B0.to_dict() | {"stages": [B0.to_dict()["stages"][0] | {"repeats": 10**9}]}),
    }
    out = {}
    for name, text in files.items():
        out[name] = folder / f"{name}.json"
        out[name].write_text(text)
    out["binary"] = folder / "binary.json"
    out["binary"].write_bytes(b"\xff\xfe\x00\x01garbage")
    out["fifo"] = folder / "fifo.json"
    os.mkfifo(out["fifo"])
    return out


TORCH_FREE_CASES = [
    (["table", "--phi-max", "1000"], "--phi-max must be an integer in [0, 20]"),
    (["table", "--phi-max", "17"], "resolution must be an integer in [8, 2048]"),
    (["table", "--alpha", "inf"], "alpha must be a finite number"),
    (["table", "--beta", "1e300", "--phi-max", "3"], "beta must be a finite number in [1, 32]"),
    (["info", "efficientnet_b0", "--resolution", "100000"], "resolution must be an integer in [8, 2048]"),
    (["info", "{wide}"], "width must be a finite number in (0, 32]"),
    (["info", "{deep}"], "nested 100000 levels deep"),
    (["info", "{huge}"], "bytes; at most"),
    (["info", "{binary}"], "not UTF-8"),
    (["info", "{fifo}"], "not a regular file"),
    (["info", "{nan}"], "NaN is not a finite number"),
    (["info", "{stages}"], "'stages' must be a list"),
    (["info", "{repeats}"], "repeats must be an integer in [1, 256]"),
    (["info", "{missing}"], "not found"),
]


@pytest.mark.parametrize("argv,needle", TORCH_FREE_CASES)
def test_torch_free_commands_refuse_in_one_line(argv, needle, spec_files, tmp_path, capsys):
    names = {k: str(v) for k, v in spec_files.items()} | {"missing": str(tmp_path / "missing.json")}
    argv = [a.format(**names) for a in argv]
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err, f"effnet {argv[0]}: error:", needle)
    if argv[0] == "info" and argv[1].endswith(".json"):
        assert argv[1] in line  # the file is named


API_CASES = [
    (lambda: scale(None), WrongType, "NetworkSpec or a model name"),
    (lambda: scale(42), WrongType, "got int"),
    (lambda: scale(B0, depth=1e300), InvalidValue, "depth must be a finite number in (0, 32]"),
    (lambda: scale(B0, depth=math.inf), InvalidValue, "depth"),
    (lambda: scale(B0, width=math.inf), InvalidValue, "width"),
    (lambda: scale(B0, width=math.nan), InvalidValue, "width"),
    (lambda: scale(B0, depth=-1), InvalidValue, "depth"),
    (lambda: scale(B0, depth=20, width=20).replace(depth=40), InvalidValue, "depth"),
    (lambda: scale(B0, resolution=10**6), InvalidValue, "resolution must be an integer in [8, 2048]"),
    (lambda: cost({"name": "b0"}), WrongType, "got dict"),
    (lambda: cost(None), WrongType, "got NoneType"),
    (lambda: cost(B0, 10**6), InvalidValue, "resolution"),
    (lambda: cost(B0, 224.0), InvalidValue, "resolution"),
    (lambda: compound(100), InvalidValue, "phi must be a finite number in [0, 20]"),
    (lambda: compound(math.inf), InvalidValue, "phi"),
    (lambda: compound(1, alpha=1e300), InvalidValue, "alpha must be a finite number in [1, 32]"),
    (lambda: compound_spec(100), InvalidValue, "phi"),
    (lambda: compound_spec(17), InvalidValue, "resolution"),
    (lambda: NetworkSpec.from_json("[" * 100_000), InvalidValue, "nested"),
    (lambda: NetworkSpec.from_json("x" * (MAX_JSON_BYTES + 1)), InvalidValue, "at most"),
    (lambda: NetworkSpec.from_json('{"name": "x", "stages": {}}'), InvalidValue, "'stages' must be a list"),
    (lambda: NetworkSpec.from_dict(B0.to_dict() | {"bn_eps": math.nan}), InvalidValue, "bn_eps"),
    (lambda: NetworkSpec.from_dict(B0.to_dict() | {"num_classes": 10**9}), InvalidValue, "num_classes"),
    (lambda: NetworkSpec.from_file("/nonexistent/spec.json"), MissingFile, "spec file not found"),
    (lambda: effnet.compound_model(phi=100), InvalidValue, "phi"),
]


@pytest.mark.parametrize("call,error,needle", API_CASES)
def test_api_refuses_with_effnet_errors(call, error, needle):
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, ValueError | FileNotFoundError)  # what callers already catch
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_legitimate_inputs_still_answer():
    assert scale("efficientnet_b0", depth=1.1).depth == pytest.approx(1.1)
    assert cost(compound_spec(15)).resolution == 1823  # the largest φ the paper's γ allows under 2048 px
    with pytest.raises(InvalidValue, match="got 2096"):
        compound_spec(16)
    assert cost("efficientnet_l2").params > 400e6  # the largest published model is inside every bound


# --------------------------------------------------------------------------------------------
# CLI dispatcher: --debug, EFFNET_DEBUG, broken pipes
# --------------------------------------------------------------------------------------------


def test_debug_flag_and_env_show_the_traceback(capsys, monkeypatch):
    for argv in (["--debug", "table", "--phi-max", "1000"], ["table", "--phi-max", "1000", "--debug"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and err.strip().endswith("got 1000")
    monkeypatch.setenv("EFFNET_DEBUG", "1")
    assert main(["table", "--phi-max", "1000"]) == 2
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("EFFNET_DEBUG", "0")
    assert main(["table", "--phi-max", "1000"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_broken_pipe_ends_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "effnet", "table"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before effnet writes (as `effnet table | head -0`)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert err == b""


# --------------------------------------------------------------------------------------------
# Outputs never replace inputs
# --------------------------------------------------------------------------------------------


def test_check_output_same_path_symlink_and_hard_link(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    (tmp_path / "link").symlink_to(weights)
    os.link(weights, tmp_path / "hard")
    for out in (weights, tmp_path / "link", tmp_path / "hard", tmp_path / "." / "w.safetensors"):
        with pytest.raises(OutputConflict, match="also the --weights input"):
            check_output(out, inputs={"--weights": weights})
    check_output(tmp_path / "new.json", inputs={"--weights": weights, "--labels": None})  # fine
    with pytest.raises(OutputConflict, match="existing folder; expected a file"):
        check_output(tmp_path)
    with pytest.raises(OutputConflict, match="existing file; expected a folder"):
        check_output(weights, folder=True)
    check_output(tmp_path, folder=True)
    with pytest.raises(OutputConflict, match="lies inside --output"):  # train --weights RUN/best... --output RUN
        check_output(tmp_path, folder=True, inputs={"--weights": tmp_path / "link"})
    check_output(tmp_path / "sub", folder=True, inputs={"--weights": weights})  # beside, not inside: fine
    assert weights.read_bytes() == b"x"


def test_output_conflicts_are_refused_before_work(tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"weights")
    spec = tmp_path / "spec.json"
    spec.write_text(B0.to_json())
    (tmp_path / "data").mkdir()
    cases = [
        (
            ["eval", "--data", str(tmp_path / "data"), "--weights", str(weights), "--output", str(weights)],
            "--output",
            "also the --weights input",
        ),
        (
            ["export", "--weights", str(weights), "--format", "onnx", "--output", str(weights)],
            "--output",
            "names safetensors weights by its suffix",  # refused by its suffix before it is compared with inputs
        ),
        (
            ["export", "--weights", str(weights), "--format", "onnx", "--output", str(tmp_path)],
            "--output",
            "existing folder",
        ),
        (
            ["train", "--data", str(tmp_path / "data"), "--epochs", "1", "--batch-size", "8", "--output", str(weights)],
            "--output",
            "existing file",
        ),
        (
            [
                "train",
                "--data",
                str(tmp_path / "data"),
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--output",
                str(tmp_path / "data"),
            ],
            "--output",
            "also the --data input",
        ),
        (["scale", "--baseline", str(spec), "--output-spec", str(spec)], "--output-spec", "also the --baseline"),
        (["search", "--data", "fashion-mnist", "--output", str(weights)], "--output", "existing file"),
    ]
    before = {p: _digest(p) for p in (weights, spec)}
    for argv, flag, needle in cases:
        assert main(argv) == 2, argv
        _one_line(capsys.readouterr().err, f"effnet {argv[0]}: error: {flag}", needle)
    assert {p: _digest(p) for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "spec.json", "w.safetensors"]


# --------------------------------------------------------------------------------------------
# Labels CSVs
# --------------------------------------------------------------------------------------------


def test_labels_csv_duplicates_and_binary(tmp_path, capsys):
    from effnet.serving.preprocess import read_labels_csv

    dup = tmp_path / "dup.csv"
    dup.write_text("file,index\na.png,0\nb.png,1\na.png,1\n")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"file,index\n\xff\xfe\x00\x00\x01")
    cases = (
        (dup, InvalidValue, f"{dup}:4: a.png is listed again (first on line 2)"),
        (binary, BadFile, "not a UTF-8 text CSV"),
    )
    for path, error, needle in cases:
        with pytest.raises(error) as info:
            read_labels_csv(path)
        assert needle in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)
        assert main(["eval", "--data", str(tmp_path), "--labels", str(path), "--weights", "w.safetensors"]) == 2
        _one_line(capsys.readouterr().err, "effnet eval: error:", str(path), needle)


# --------------------------------------------------------------------------------------------
# Weights files, headers and checkpoints (torch)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    """A 3-class Lite0 in effnet's format, and a set of broken or foreign files beside it."""
    import torch
    from safetensors.torch import save_file

    from effnet.models.factory import create_model, save_pretrained
    from effnet.models.weight_files import read_safetensors_header
    from effnet.preprocessing import Preprocessing

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", num_classes=3).eval()
    good = save_pretrained(model, folder / "good.safetensors", Preprocessing(64, 0.875, "bilinear"))
    data = good.read_bytes()
    (folder / "empty.safetensors").write_bytes(b"")
    (folder / "cut.safetensors").write_bytes(data[:20])
    (folder / "cut5.safetensors").write_bytes(data[:5])
    (folder / "huge.safetensors").write_bytes(struct.pack("<Q", 2**62) + b'{"a": 1}')
    (folder / "text.safetensors").write_text("these are not weights\n")
    (folder / "text.pth").write_text("these are not weights\n")
    (folder / "model.onnx").write_bytes(b"\x08\x07\x12\x07pytorch\x1a\x052.4.0" + bytes(64))
    os.mkfifo(folder / "fifo.pth")
    (folder / "dir.pth").mkdir()
    header = read_safetensors_header(good)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    pre = json.loads(header["effnet.preprocessing"])
    bad_pre = {
        "input_size": {"input_size": 30000},
        "crop": {"crop_fraction": 1e-6},
        "nanmean": {"mean": [math.nan] * 3},
        "infstd": {"std": [math.inf] * 3},
        "onemean": {"mean": [0.5], "std": [0.5]},
        "zerostd": {"std": [0, 1, 1]},
        "names": {"class_names": ["a", "b"]},
        "meanstr": {"mean": "abc"},
    }
    for name, change in bad_pre.items():
        meta = header | {"effnet.preprocessing": json.dumps(pre | change)}
        save_file(tensors, str(folder / f"pre_{name}.safetensors"), metadata=meta)
    spec = json.loads(header["effnet.spec"])
    wide = header | {"effnet.spec": json.dumps(spec | {"width": 1e300})}
    save_file(tensors, str(folder / "spec_wide.safetensors"), metadata=wide)
    return folder


WEIGHTS_CASES = [
    ("empty.safetensors", "is empty (0 bytes)"),
    ("cut.safetensors", "header length 30,"),
    ("cut5.safetensors", "not a readable"),
    ("huge.safetensors", "header length 4,611,686,018,427,387,904 does not fit"),
    ("text.safetensors", "is a text file, not weights"),
    ("text.pth", "is a text file, not weights"),
    ("model.onnx", "looks like an ONNX model"),
    ("fifo.pth", "not a regular file"),
    ("dir.pth", "is a folder"),
    ("missing.pth", "not found"),
    ("pre_input_size.safetensors", "input_size must be an integer in [8, 2048]"),
    ("pre_crop.safetensors", "crop_fraction must be a finite number in [0.5, 1]"),
    ("pre_nanmean.safetensors", "NaN is not a finite number"),
    ("pre_infstd.safetensors", "Infinity is not a finite number"),
    ("pre_onemean.safetensors", "mean and std need one value per input channel (3)"),
    ("pre_zerostd.safetensors", "std value must be a finite number"),
    ("pre_names.safetensors", "2 class names for a model with 3 classes"),
    ("pre_meanstr.safetensors", "mean must be a list"),
    ("spec_wide.safetensors", "effnet.spec is invalid: width"),
]


@pytest.mark.parametrize("name,needle", WEIGHTS_CASES)
def test_bad_weights_api_and_cli(name, needle, weights_dir, capsys):
    from effnet.models.factory import load_pretrained

    path = weights_dir / name
    with pytest.raises((BadFile, MissingFile)) as info:
        load_pretrained(None, path)
    message = str(info.value)
    assert needle in message and str(path) in message and "\n" not in message
    image = weights_dir / "img.png"
    if not image.exists():
        from PIL import Image

        Image.new("RGB", (40, 40), (9, 99, 199)).save(image)
    assert main(["predict", str(image), "--weights", str(path), "--runtime", "eager"]) == 2
    _one_line(capsys.readouterr().err, "effnet predict: error:", str(path), needle)


def test_save_pretrained_refuses_bad_preprocessing(weights_dir, tmp_path):
    from effnet.models.factory import create_model, save_pretrained
    from effnet.preprocessing import Preprocessing

    model = create_model("efficientnet_lite0", num_classes=3)
    for pre, error, needle in (
        ("bogus", WrongType, "must be an effnet Preprocessing"),
        (Preprocessing(class_names=("a", "b")), InvalidValue, "2 class names"),
        (Preprocessing(mean=(0.5,), std=(0.5,), in_chans=1), InvalidValue, "1 values"),
    ):
        with pytest.raises(error, match=needle):
            save_pretrained(model, tmp_path / "m.safetensors", pre)
    assert list(tmp_path.iterdir()) == []


PREPROCESSING_CASES = [  # the message names the field, what it accepts and the value given
    ({"input_size": 30000}, "input_size must be an integer in [8, 2048], got 30000"),
    ({"input_size": 4}, "input_size must be an integer in [8, 2048], got 4"),
    ({"input_size": 224.0}, "input_size must be an integer in [8, 2048], got 224.0"),
    ({"crop_fraction": 1e-6}, "crop_fraction must be a finite number in [0.5, 1], got 1e-06"),
    ({"crop_fraction": math.nan}, "crop_fraction must be a finite number in [0.5, 1], got nan"),
    ({"mean": (math.nan,) * 3}, "mean value must be a finite number in [0, 1000], got nan"),
    ({"std": (0.2, math.inf, 0.2)}, "std value must be a finite number in [1e-06, 1000], got inf"),
    ({"std": (0.2, 0.0, 0.2)}, "std value must be a finite number in [1e-06, 1000], got 0.0"),
    ({"mean": (0.5,)}, "mean and std need one value per input channel (3), got (0.5,) and (0.229, 0.224, 0.225)"),
    ({"mean": ()}, "mean must have 1 to 64 values (one per channel), got 0"),
    ({"mean": "abc"}, "mean must be a list of numbers, one per input channel, got 'abc'"),
    ({"interpolation": "lanczos9"}, "interpolation must be one of nearest, bilinear, bicubic; got 'lanczos9'"),
    ({"class_names": "ab"}, "class_names must be a list of names, one per class, got 'ab'"),
]


@pytest.mark.parametrize("change,needle", PREPROCESSING_CASES)
def test_preprocessing_bounds(change, needle):
    from effnet.preprocessing import Preprocessing

    with pytest.raises(InvalidValue) as info:
        Preprocessing(**change)
    message = str(info.value)
    assert message.startswith(needle) and "\n" not in message, message


def test_resume_from_a_pickle_is_refused_without_weights_only_advice(tmp_path):
    import torch

    from effnet.training.checkpoint import load_checkpoint

    evil = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "spec": "x", "extra": _Evil(str(tmp_path / "ran"))}, evil)
    for path, needle in (
        (evil, "refused: the checkpoint contains pickled Python objects"),
        (tmp_path / "none.pt", "checkpoint not found"),
    ):
        with pytest.raises(EffnetError) as info:
            load_checkpoint(path)
        assert needle in str(info.value) and "weights_only=False" not in str(info.value)
    assert not (tmp_path / "ran").exists()


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.slow
def test_bad_weights_subprocess_has_no_traceback(weights_dir):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "effnet",
            "export",
            "--weights",
            str(weights_dir / "huge.safetensors"),
            "--format",
            "onnx",
            "--output",
            str(weights_dir / "x.onnx"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    _one_line(proc.stderr, "huge.safetensors", "does not fit")
    assert not (weights_dir / "x.onnx").exists()


def test_one_class_image_folder_is_refused(tmp_path):
    from PIL import Image

    from effnet.training.data import load_datasets

    for split in ("train", "val"):
        (tmp_path / split / "cat").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / split / "cat" / "a.png")
    with pytest.raises(ValueError, match="one class folder"):
        load_datasets(str(tmp_path), resolution=16)


# --------------------------------------------------------------------------------------------
# Properties: any input gives a clean error or a finite answer, within the deadline
# --------------------------------------------------------------------------------------------

_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**400), 10**400),
    st.none(),
    st.booleans(),
    st.text(max_size=4),
)
_json = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _finite_spec(spec: NetworkSpec) -> None:
    assert 0 < spec.width <= MAX_MULTIPLIER and 0 < spec.depth <= MAX_MULTIPLIER
    assert 8 <= spec.resolution <= MAX_RESOLUTION


@PROPERTY
@given(depth=_numbers, width=_numbers, resolution=st.one_of(st.none(), st.integers(-10, 5000)))
def test_scale_property(depth, width, resolution):
    try:
        spec = scale(B0, depth=depth, width=width, resolution=resolution)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    _finite_spec(spec)
    c = cost(spec)
    assert c.params > 0 and c.macs > 0


@PROPERTY
@given(field=st.sampled_from(sorted(B0.to_dict())), value=_json)
def test_spec_parsing_property(field, value):
    data = B0.to_dict() | {field: value}
    try:
        spec = NetworkSpec.from_json(json.dumps(data))
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    _finite_spec(spec)
    assert cost(spec).macs > 0


@PROPERTY
@given(stage_field=st.sampled_from(sorted(B0.to_dict()["stages"][0])), value=_json)
def test_stage_parsing_property(stage_field, value):
    data = B0.to_dict()
    data["stages"] = [data["stages"][0] | {stage_field: value}]
    try:
        spec = NetworkSpec.from_dict(data)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    assert cost(spec).macs > 0


@PROPERTY
@given(text=st.text(max_size=64))
def test_json_text_property(text):
    try:
        NetworkSpec.from_json(text)
    except ValueError as exc:
        assert "\n" not in str(exc)


@PROPERTY
@given(text=st.text(alphabet='[]{}"\\ a,:1', max_size=64))
def test_json_depth_matches_the_parser(text):
    try:
        parsed = json.loads(text)
    except ValueError:
        return

    def depth(value):
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        return 0 if children is None else 1 + max((depth(c) for c in children), default=0)

    assert json_depth(text) == depth(parsed)
    assert parse_json(text, "x") == parsed


@PROPERTY
@given(phi=_numbers, resolution=st.one_of(st.none(), _numbers))
def test_compound_and_cost_property(phi, resolution):
    try:
        c = cost(compound_spec(phi), resolution)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    assert math.isfinite(c.macs) and c.params > 0


@PROPERTY
@given(
    text=st.one_of(
        st.text(max_size=12),
        st.from_regex(r"[-+]?[0-9.e]{1,6}[KMGBT]?", fullmatch=True),
        st.sampled_from(["inf", "1e400", "nan", "-5M", "Infinity"]),
    )
)
def test_parse_count_property(text):
    try:
        value = parse_count(text)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    assert math.isfinite(value) and value > 0


@PROPERTY
@given(
    data=st.one_of(
        st.binary(max_size=64),
        st.builds(lambda n, body: struct.pack("<Q", n) + body, st.integers(0, 2**64 - 1), st.binary(max_size=64)),
    )
)
def test_weights_header_property(data):
    pytest.importorskip("torch")
    from effnet.models.weight_files import read_checkpoint

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "w.safetensors"
        path.write_bytes(data)
        try:
            tensors, _ = read_checkpoint(path)
        except ValueError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            return
        assert isinstance(tensors, dict)


@PROPERTY
@given(
    change=st.dictionaries(
        st.sampled_from(["input_size", "crop_fraction", "mean", "std", "interpolation", "class_names"]),
        _json,
        max_size=3,
    )
)
def test_preprocessing_header_property(change):
    from effnet.preprocessing import Preprocessing

    try:
        pre = Preprocessing.from_json(json.dumps(Preprocessing().to_dict() | change))
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    assert 8 <= pre.input_size <= MAX_RESOLUTION and pre.resize_size <= 2 * MAX_RESOLUTION
    assert all(math.isfinite(v) for v in pre.mean + pre.std) and min(pre.std) > 0
