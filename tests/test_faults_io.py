"""Files and folders never lose data, hang or blow up memory (issue #20: the file and I/O classes).

Outputs never write an input (companions included), a run folder with results is kept unless asked, planted links are
never written through; damaged datasets, special files, symlink loops and odd images give one line or a skipped file
and a right answer. The write faults (disk full, read-only, permission denied) are in ``test_write_faults.py``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import signal
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from effnet.cli import main
from effnet.config.serving import export_files
from effnet.errors import BadFile, InvalidValue, OutputConflict
from effnet.io import append_line, atomic_write_text, check_output
from effnet.serving import image_files
from effnet.serving.image_files import find_images, image_folder_samples, load_image, to_eight_bit
from faults import TINY_TRAIN


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _one_line(err: str, *needles: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@contextlib.contextmanager
def _deadline(seconds: int):
    """Fail (instead of hanging the suite) when the block runs longer than ``seconds``."""

    def _timeout(*_):
        raise TimeoutError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _tree(root: Path, per_class: int = 4, classes=("a", "b")) -> Path:
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(np.full((12, 12, 3), 40 * i + 9, np.uint8)).save(root / split / c / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A 3-class Lite0 in effnet's format (64 px)."""
    import torch

    from effnet.models.factory import create_model, save_pretrained
    from effnet.preprocessing import Preprocessing

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", num_classes=3).eval()
    folder = tmp_path_factory.mktemp("weights")
    return save_pretrained(model, folder / "w.safetensors", Preprocessing(64, 0.875, "bilinear"))


# --------------------------------------------------------------------------------------------
# Data lost: an output that is an input, companions, run folders with results, planted links
# --------------------------------------------------------------------------------------------


def test_an_output_naming_any_file_the_command_reads_is_refused(tmp_path, capsys):
    data = tmp_path / "data"
    for c, name in (("cat", "1.JPEG"), ("dog", "2.png")):
        (data / c).mkdir(parents=True)
        Image.new("RGB", (16, 16), (9, 99, 199)).save(data / c / name, format="PNG")
    weights = data / "model.bin"  # Hugging Face's usual name for a PyTorch state dict
    weights.write_bytes(b"weights")
    (tmp_path / "link.json").symlink_to(data / "cat" / "1.JPEG")
    os.link(data / "dog" / "2.png", tmp_path / "hard.json")
    image = str(data / "cat" / "1.JPEG")
    cases = [
        (["eval", "--data", str(data), "--output", image], "is also the --data input (a file it reads)"),
        (["eval", "--data", str(data), "--output", str(tmp_path / "link.json")], "link.json is a symbolic link (to"),
        (["eval", "--data", str(data), "--output", str(tmp_path / "hard.json")], "is also the --data input"),
        (
            ["export", "--format", "onnx", "--precision", "int8", "--calibration", str(data), "--output", image],
            "is also the --calibration input (a file it reads)",
        ),
        (
            ["export", "--format", "openvino", "--output", str(data / "model.xml")],
            f"{weights}, which --output {data / 'model.xml'} writes beside it, is also the --weights input",
        ),
    ]
    before = _digests(tmp_path)
    for argv, needle in cases:
        assert main([*argv, "--weights", str(weights)]) == 2, argv
        _one_line(capsys.readouterr().err, f"effnet {argv[0]}: error:", needle)
    assert _digests(tmp_path) == before
    assert sorted(p.name for p in data.iterdir()) == ["cat", "dog", "model.bin"]
    # a new file in an input folder stays allowed: the check passes, the fake weights are what fails
    assert main(["eval", "--data", str(data), "--weights", str(weights), "--output", str(data / "new.json")]) == 2
    assert "is also" not in capsys.readouterr().err


def test_export_suffix_naming_another_format_is_refused(tmp_path, capsys):
    cases = [
        ("torchscript", "x.onnx", "names onnx by its suffix"),
        ("torchscript", "x.xml", "names openvino"),
        ("onnx", "x.pt", "names torchscript"),
        ("onnx", "x.safetensors", "names safetensors weights"),
        ("onnx", "x.bin", "names openvino weights"),
        ("openvino", "x.onnx", "must end in .xml"),
    ]
    for fmt, name, needle in cases:
        with pytest.raises(InvalidValue, match=needle):
            export_files(fmt, tmp_path / name)
        assert main(["export", "--weights", "w.safetensors", "--format", fmt, "--output", str(tmp_path / name)]) == 2
        _one_line(capsys.readouterr().err, needle)
    assert export_files("torchscript", tmp_path / "m.torchscript.pt") == (tmp_path / "m.torchscript.pt",)
    assert export_files("onnx", tmp_path / "m.ONNX") == (tmp_path / "m.ONNX",)
    assert export_files("openvino", tmp_path / "m.xml") == (tmp_path / "m.xml", tmp_path / "m.bin")
    assert list(tmp_path.iterdir()) == []


def test_export_api_refuses_a_suffix_of_another_format(tmp_path):
    import torch

    from effnet.serving.export import export_model

    with pytest.raises(InvalidValue, match="names onnx by its suffix"):
        export_model(torch.nn.Identity(), tmp_path / "x.onnx", "torchscript")
    assert list(tmp_path.iterdir()) == []


_names = st.sampled_from(["a.png", "a.bin", "a.xml", "model.bin", "model.xml", "b.JPEG"])


@settings(max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    inputs=st.lists(_names, min_size=1, max_size=4, unique=True),
    name=_names,
    spelling=st.sampled_from(["same", "dot", "dotdot", "linked_folder", "symlink", "hardlink"]),
    openvino=st.booleans(),
)
def test_property_outputs_and_companions_never_name_an_input(tmp_path_factory, inputs, name, spelling, openvino):
    """Any output path (or a companion it writes beside itself) that equals, or links to, a file the command reads
    is refused, naming it; a link is never written through; any other path is accepted. Nothing read changes."""
    assume(not openvino or name.endswith(".xml"))
    root = tmp_path_factory.mktemp("prop")
    (root / "in").mkdir()
    files = [root / "in" / n for n in inputs]
    for f in files:
        f.write_bytes(f.name.encode())
    (root / "view").symlink_to(root / "in")
    real = root / "in" / name
    if spelling == "hardlink" and not real.exists():
        spelling = "same"
    out = {
        "same": real,
        "dot": root / "in" / "." / name,
        "dotdot": root / "in" / ".." / "in" / name,
        "linked_folder": root / "view" / name,
        "symlink": root / f"link_{name}",
        "hardlink": root / f"hard_{name}",
    }[spelling]
    if spelling == "symlink":
        out.symlink_to(real)
    elif spelling == "hardlink":
        os.link(real, out)
    companions = export_files("openvino", out)[1:] if openvino else ()
    written = [out, *companions]
    hit = any(os.path.exists(w) and any(os.path.samefile(w, f) for f in files) for w in written)
    before = _digests(root / "in")
    try:
        check_output(out, inputs={"--weights": files[0], "--data": files}, companions=companions)
        refused = ""
    except OutputConflict as exc:
        refused = str(exc)
        assert "\n" not in refused
    if hit:
        assert "is also the" in refused, (spelling, out, companions, refused)
    elif spelling == "symlink":
        assert "is a symbolic link" in refused
    else:
        assert refused == "", (spelling, out, companions, refused)
    assert _digests(root / "in") == before


def test_a_run_folder_holding_results_is_refused_unless_overwrite(tmp_path, capsys):
    tree = _tree(tmp_path / "tree")
    run = tmp_path / "run"
    assert main(["train", "--data", str(tree), "--output", str(run), *TINY_TRAIN]) == 0
    (run / "checkpoint.pt").unlink()  # a finished run whose checkpoint was deleted
    capsys.readouterr()
    before = _digests(run)
    assert main(["train", "--data", str(tree), "--output", str(run), *TINY_TRAIN]) == 2
    line = _one_line(capsys.readouterr().err, "already holds a run (best.safetensors", "--overwrite")
    assert "--resume" not in line  # no checkpoint: nothing to resume
    assert _digests(run) == before
    assert main(["train", "--data", str(tree), "--output", str(run), *TINY_TRAIN, "--resume", "--overwrite"]) == 2
    _one_line(capsys.readouterr().err, "give one")
    assert main(["train", "--data", str(tree), "--output", str(run), *TINY_TRAIN, "--overwrite", "--seed", "3"]) == 0
    assert json.loads((run / "config.json").read_text())["seed"] == 3
    assert (run / "checkpoint.pt").is_file() and _digests(run)["best.safetensors"] != before["best.safetensors"]


@pytest.mark.parametrize("name", ["run.lock", "config.json", "metrics.jsonl", "best.safetensors", "checkpoint.pt"])
def test_planted_links_in_a_run_folder_are_never_written_through(name, tmp_path, capsys):
    tree = _tree(tmp_path / "tree")
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / name).symlink_to(victim)
    argv = ["train", "--data", str(tree), "--output", str(run), *TINY_TRAIN]
    assert main(argv) == 2
    err = capsys.readouterr().err
    if name in ("run.lock", "config.json"):
        _one_line(err, f"{run / name} is a symbolic link", "does not write through links")
    else:  # a result of a run: kept, unless --overwrite, which removes the link itself
        _one_line(err, f"already holds a run ({name}")
        assert main([*argv, "--overwrite"]) == 0 and not (run / name).is_symlink()
    assert victim.read_text() == "the user's file\n"


def test_run_lock_and_appends_never_write_through_links_devices_or_hard_links(tmp_path):
    from effnet.training.rundir import RunLock

    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    for kind in ("symlink", "hardlink", "fifo"):
        run = tmp_path / kind
        run.mkdir()
        for name in ("run.lock", "metrics.jsonl"):
            if kind == "symlink":
                (run / name).symlink_to(victim)
            elif kind == "hardlink":
                os.link(victim, run / name)
            else:
                os.mkfifo(run / name)
        with pytest.raises(OutputConflict, match="run.lock") as info, _deadline(20):
            RunLock(run).acquire()
        assert "\n" not in str(info.value)
        if kind == "hardlink":  # the run's own copy gets the line; the other name keeps its content
            append_line(run / "metrics.jsonl", '{"epoch": 1}')
            assert (run / "metrics.jsonl").read_text() == 'keep\n{"epoch": 1}\n'
        else:
            with pytest.raises(OutputConflict, match="metrics.jsonl"), _deadline(20):
                append_line(run / "metrics.jsonl", '{"epoch": 1}')
        with pytest.raises(OutputConflict, match="metrics.jsonl") if kind == "symlink" else contextlib.nullcontext():
            atomic_write_text(run / "metrics.jsonl", "new\n")  # a hard link or FIFO is replaced, not written into
    assert victim.read_text() == "keep\n"


# --------------------------------------------------------------------------------------------
# Damaged built-in datasets
# --------------------------------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _fake_fmnist(folder: Path, n: int = 16) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "labels"])
def test_damaged_fashion_mnist_is_one_line_naming_the_file(damage, tmp_path, capsys):
    root = tmp_path / "root"
    _fake_fmnist(root)
    bad = root / "train-images-idx3-ubyte.gz"
    if damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:-40])
    elif damage == "garbage":
        bad.write_bytes(b"\x1f\x8b" + b"\x00" * 50)
    else:
        bad = root / "t10k-labels-idx1-ubyte.gz"
        _write_idx(bad, np.full(16, 200))
    argv = ["train", "--data", "fashion-mnist", "--data-root", str(root), "--output", str(tmp_path / "run")]
    assert main([*argv, *TINY_TRAIN[2:]]) == 2
    _one_line(capsys.readouterr().err, str(bad))
    assert not (tmp_path / "run").exists()


def test_damaged_cifar_batch_is_one_line_naming_the_file(tmp_path, capsys):
    from torchvision import datasets as tvd

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, _ in [*tvd.CIFAR10.train_list, *tvd.CIFAR10.test_list]:
        (folder / name).write_bytes(b"not a pickle")
    (folder / "batches.meta").write_bytes(b"x")
    argv = ["train", "--data", "cifar10", "--data-root", str(tmp_path), "--output", str(tmp_path / "run")]
    assert main([*argv, *TINY_TRAIN[2:]]) == 2
    _one_line(capsys.readouterr().err, str(folder / "data_batch_1"), "missing or damaged")


def test_image_folder_whose_class_folder_vanishes_mid_scan(tmp_path, monkeypatch):
    tree = _tree(tmp_path / "tree")
    real_scandir = os.scandir

    class Listing(list):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    def vanishing(path="."):
        with real_scandir(path) as listing:
            entries = Listing(listing)
        if isinstance(path, str | os.PathLike) and Path(path) == tree / "train":
            shutil.rmtree(tree / "train" / "b")  # gone between the listing and its walk
        return entries

    monkeypatch.setattr(image_files.os, "scandir", vanishing)
    with pytest.raises(BadFile) as info:
        image_folder_samples(tree / "train")
    assert str(tree / "train" / "b") in str(info.value) and "cannot read folder" in str(info.value)


# --------------------------------------------------------------------------------------------
# Hangs: special files, symlinked folders; images counted twice
# --------------------------------------------------------------------------------------------


def test_a_fifo_among_images_is_skipped_and_reported_never_opened(tmp_path, weights, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (40, 40), (9, 99, 199)).save(folder / "ok.png")
    os.mkfifo(folder / "pipe.jpg")
    with _deadline(120):
        code = main(["predict", str(folder), str(folder / "pipe.jpg"), "--weights", str(weights), "--runtime", "eager"])
    assert code == 1  # some input skipped
    captured = capsys.readouterr()
    assert "ok.png" in captured.out and "1 image(s) classified" in captured.out
    assert "pipe.jpg: cannot read image (not a regular file" in captured.err and "Traceback" not in captured.err
    with pytest.raises(BadFile, match="not a regular file"), _deadline(10):
        load_image(folder / "pipe.jpg")


def test_a_fifo_in_an_image_folder_train_split_is_skipped(tmp_path, capsys):
    tree = _tree(tmp_path / "tree")
    os.mkfifo(tree / "train" / "a" / "pipe.jpg")
    with _deadline(300):
        assert main(["train", "--data", str(tree), "--output", str(tmp_path / "run"), *TINY_TRAIN]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 unreadable image(s)" in out and "pipe.jpg" in out


def test_symlinked_folder_loops_walk_each_real_folder_once(tmp_path):
    top = tmp_path / "top"
    (top / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(top / "sub" / "x.png")
    Image.new("RGB", (8, 8)).save(top / "y.png")
    for name in ("up1", "up2"):  # two links to the parent: 2^depth paths for a naive walk
        (top / "sub" / name).symlink_to(top)
    (top / "self").symlink_to(top)
    (top / "twin.png").symlink_to(top / "y.png")
    with _deadline(20):
        files, problems = find_images([top])
    assert sorted(p.resolve().name for p in files) == ["x.png", "y.png"] and problems == []  # each real file once


def test_each_real_image_is_evaluated_once(tmp_path):
    tree = tmp_path / "data"
    for c in ("cat", "dog"):
        (tree / c).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tree / c / f"{c}.png")
    (tree / "cat" / "again").symlink_to(tree / "cat")
    (tree / "dog" / "loop").symlink_to(tree)
    with _deadline(20):
        samples, classes = image_folder_samples(tree)
    assert classes == ["cat", "dog"] and sorted(p.name for p, _ in samples) == ["cat.png", "dog.png"]


def test_walk_bounds_are_one_line_naming_the_folder(tmp_path, monkeypatch):
    deep = tmp_path / "deep"
    (deep / "a" / "b" / "c" / "d").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(deep / "a" / "b" / "c" / "d" / "x.png")
    monkeypatch.setattr(image_files, "MAX_WALK_DEPTH", 3)
    with pytest.raises(InvalidValue, match="nest deeper than 3 levels"):
        find_images([deep])
    monkeypatch.setattr(image_files, "MAX_WALK_DEPTH", 32)
    monkeypatch.setattr(image_files, "MAX_WALK_ENTRIES", 3)
    with pytest.raises(InvalidValue, match=f"{deep}: more than 3 files and folders"):
        find_images([deep])


# --------------------------------------------------------------------------------------------
# Images: bit depth and shape
# --------------------------------------------------------------------------------------------


def _picture() -> np.ndarray:
    y, x = np.mgrid[0:48, 0:48]
    return ((x * 5 + y * 3) % 256).astype(np.uint8)


def test_sixteen_bit_float_and_int_images_give_the_8_bit_answer(tmp_path, weights, capsys):
    gray = _picture()
    Image.fromarray(gray, "L").save(tmp_path / "g8.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "g16.png")  # I;16: the same picture
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    Image.fromarray(gray.astype(np.float32) / 255, "F").save(tmp_path / "gf.tiff")
    Image.fromarray(gray.astype(np.int32) * 257, "I").save(tmp_path / "gi.tiff")
    reference = np.asarray(load_image(tmp_path / "g8.png"))
    for name in ("g16.png", "gf.tiff", "gi.tiff"):
        assert np.array_equal(np.asarray(load_image(tmp_path / name)), reference), name
    files = [str(tmp_path / n) for n in ("g8.png", "g16.png", "gf.tiff", "gi.tiff")]
    assert main(["predict", *files, "--weights", str(weights), "--runtime", "eager", "--json"]) == 0
    tops = [p["top"] for p in json.loads(capsys.readouterr().out)["predictions"]]
    assert all(t == tops[0] for t in tops), tops


def test_out_of_range_float_and_int_images_are_refused_not_clipped(tmp_path):
    Image.fromarray(np.full((8, 8), 3.5, np.float32), "F").save(tmp_path / "f.tiff")
    Image.fromarray(np.full((8, 8), 70000, np.int32), "I").save(tmp_path / "i.tiff")
    for name, needle in (("f.tiff", "float pixels must be finite and in [0, 1]"), ("i.tiff", "in 0..65535")):
        with pytest.raises(BadFile) as info:
            load_image(tmp_path / name)
        assert f"{tmp_path / name}: " in str(info.value) and needle in str(info.value)
    with pytest.raises(BadFile, match="float pixels"):
        to_eight_bit(Image.fromarray(np.full((4, 4), np.nan, np.float32), "F"))


def test_extreme_image_shapes_are_refused_before_decoding(tmp_path, weights, capsys):
    Image.new("L", (65000, 1)).save(tmp_path / "line.png")
    assert (tmp_path / "line.png").stat().st_size < 1000  # a tiny file asking for a 16.6G px resize
    with pytest.raises(BadFile, match="65000x1 px is refused") as info:
        load_image(tmp_path / "line.png")
    assert str(tmp_path / "line.png") in str(info.value)
    Image.new("RGB", (40, 40)).save(tmp_path / "ok.png")
    files = [str(tmp_path / "line.png"), str(tmp_path / "ok.png")]
    assert main(["predict", *files, "--weights", str(weights), "--runtime", "eager"]) == 1
    err = capsys.readouterr().err
    assert "line.png: an image of 65000x1 px is refused" in err and "Traceback" not in err


def test_the_resize_is_bounded_before_it_allocates():
    from effnet.preprocessing import Preprocessing
    from effnet.serving.preprocess import eval_transform

    transform = eval_transform(Preprocessing(2048, 0.875, "bilinear"))
    with pytest.raises(BadFile, match="resized to 2340 px on its short side"):
        transform(Image.new("RGB", (60 * 50, 50)))
    assert tuple(transform(Image.new("RGB", (300, 200))).shape) == (3, 2048, 2048)
