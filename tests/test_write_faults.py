"""Disk full, read-only file system, permission denied: every writing command ends in one line naming the path and
the OS error, leaves nothing partial under a final name, and never empties or corrupts a file that was complete.

The faults come from ``tests/faults.py`` (the nth Python-level write under a folder, and every later one, fails) and
from real file systems (``conftest.small_tmpfs``, a 3 MiB tmpfs, and ``conftest.read_only_tmpfs``; skipped where
mounting is not allowed), which also stop the writers in C (torch.save, safetensors, OpenVINO, SQLite).
"""

from __future__ import annotations

import errno
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import faults
from effnet.cli import main
from effnet.errors import WriteFailed
from effnet.io import append_line, atomic_write_json

REASONS = {code: os.strerror(code) for code in faults.ERRORS.values()}


def _tree(root: Path) -> Path:
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(4):
                Image.fromarray(np.full((12, 12, 3), 40 * i + 9, np.uint8)).save(root / split / c / f"{i}.png")
    return root


def _complete(path: Path) -> None:
    """``path`` is a whole file of its kind (JSON, JSONL, safetensors, PNG, checkpoint, ONNX, spec)."""
    data = path.read_bytes()
    if path.suffix == ".json":
        json.loads(data)
    elif path.suffix == ".jsonl":
        assert data == b"" or data.endswith(b"\n"), path
        for line in data.splitlines():
            json.loads(line)
    elif path.suffix == ".safetensors":
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
        assert len(data) == 8 + n + end, path
    elif path.suffix == ".png":
        with Image.open(path) as image:
            image.load()
    elif path.suffix == ".pt":
        import torch

        torch.load(path, weights_only=True) if path.name == "checkpoint.pt" else torch.jit.load(str(path))
    elif path.suffix == ".xml":
        from effnet.serving.openvino import openvino_core

        openvino_core().read_model(str(path))  # with its .bin beside it
    elif path.suffix == ".onnx":
        import onnx

        onnx.checker.check_model(str(path))
    else:
        assert data, path


def _check_folder(root: Path, before: dict[Path, bytes]) -> None:
    """No temp file left, every file under ``root`` complete, every file that existed before unchanged."""
    for path in root.rglob("*"):
        if path.is_file():
            assert not path.name.endswith(".tmp"), f"temp file left: {path}"
            _complete(path)
    for path, data in before.items():
        assert path.read_bytes() == data, f"changed: {path}"


def _failures(argv, root, error, capsys, keep=(), nths=None, names=()):
    """Run ``argv`` with the nth write under ``root`` failing, for every n (or ``nths``) until it succeeds: each
    run is one line naming a path under ``root`` and the OS error, and leaves ``root`` whole. Returns the count."""
    before = {p: p.read_bytes() for p in keep}
    nth = 0
    for nth in nths or range(1, 1000):
        with faults.inject(root, error, nth, names) as injector:
            code = main(argv)
        err = capsys.readouterr().err
        if injector.failed == 0:
            assert code == 0, err
            break
        assert code == 2, (nth, err)
        lines = [line for line in err.strip().splitlines() if "error:" in line or "Traceback" in line]
        assert len(lines) == 1 and "Traceback" not in err, (nth, err)
        assert str(root) in lines[0] and REASONS[error] in lines[0], (nth, lines[0])
        _check_folder(root, before)
    return nth


@pytest.mark.parametrize("name", sorted(faults.ERRORS))
def test_atomic_writes_and_appends_fail_cleanly_at_every_write(name, tmp_path):
    error = faults.ERRORS[name]
    target = tmp_path / "out" / "result.json"
    atomic_write_json(target, {"old": True})
    log = tmp_path / "out" / "metrics.jsonl"
    log.write_text('{"epoch": 1}\n{"epoch": 2}\n')
    for nth in range(1, 20):
        with faults.inject(tmp_path / "out", error, nth) as injector:
            try:
                atomic_write_json(target, {"new": list(range(1000))})
                append_line(log, json.dumps({"epoch": 3}))
            except WriteFailed as exc:
                assert "\n" not in str(exc) and os.strerror(error) in str(exc)
                assert str(target) in str(exc) or str(log) in str(exc)
        _check_folder(tmp_path / "out", {})
        assert json.loads(target.read_text()) in ({"old": True}, {"new": list(range(1000))})
        assert log.read_text().startswith('{"epoch": 1}\n{"epoch": 2}\n')
        if injector.failed == 0:
            break
        target.write_text('{"old": true}')
        log.write_text('{"epoch": 1}\n{"epoch": 2}\n')
    assert nth > 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """A 2-class EfficientNet-B0 at width and depth 0.25 (32 px) in effnet's format, and images to evaluate it on."""
    import torch

    from effnet.architectures import scale
    from effnet.models.factory import create_model, save_pretrained
    from effnet.preprocessing import Preprocessing

    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    model = create_model(scale("efficientnet_b0", width=0.25, depth=0.25).replace(num_classes=2)).eval()
    pre = Preprocessing(32, 0.875, "bilinear", class_names=("a", "b"))
    return save_pretrained(model, folder / "w.safetensors", pre), _tree(folder / "tree") / "val"


def test_scale_spec_and_eval_output_fail_in_one_line(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    old = out / "old.json"
    old.write_text('{"kept": true}\n')
    spec = ["scale", "--phi-max", "2", "--output-spec", str(out / "spec.json"), "--overwrite"]  # each run replaces
    for name, error in faults.ERRORS.items():
        assert _failures(spec, out, error, capsys, keep=(old,)) >= 3, name
    weights, data = tiny
    evaluate = ["eval", "--data", str(data), "--weights", str(weights), "--runtime", "eager", "--workers", "0"]
    _failures([*evaluate, "--no-progress", "--overwrite", "--output", str(old)], out, errno.EACCES, capsys, nths=(1, 3))
    assert old.read_text() == '{"kept": true}\n'


@pytest.mark.slow
def test_eval_output_and_export_fail_in_one_line_at_every_write(tiny, tmp_path, capsys):
    weights, data = tiny
    out = tmp_path / "out"
    out.mkdir()
    old = out / "old.json"
    old.write_text('{"kept": true}\n')
    evaluate = ["eval", "--data", str(data), "--weights", str(weights), "--runtime", "eager", "--workers", "0"]
    assert _failures([*evaluate, "--no-progress", "--overwrite", "--output", str(old)], out, errno.ENOSPC, capsys) >= 3
    assert json.loads(old.read_text())["images"] == 8  # written at last, whole
    keep = out / "keep.json"
    keep.write_text("{}")
    for fmt, name, nths in (("torchscript", "m.pt", (1, 2)), ("onnx", "m.onnx", None), ("openvino", "m.xml", None)):
        export = ["export", "--weights", str(weights), "--format", fmt, "--output", str(out / name), "--overwrite"]
        assert _failures(export, out, errno.ENOSPC, capsys, keep=(keep,), nths=nths) >= 2, fmt
    assert _failures(export, out, errno.EROFS, capsys, keep=(keep,), nths=(1, 2, 3)) == 3  # over a complete IR


@pytest.mark.parametrize("name", sorted(faults.ERRORS))
def test_train_fails_in_one_line_at_its_first_writes(name, tmp_path, capsys):
    tree = _tree(tmp_path / "tree")
    run = tmp_path / "run"
    argv = ["train", "--data", str(tree), "--output", str(run), *faults.TINY_TRAIN, "--overwrite"]
    _failures(argv, tmp_path / "run", faults.ERRORS[name], capsys, nths=(1, 2, 3, 5, 8, 13))


@pytest.mark.slow
def test_train_fails_in_one_line_at_its_writes(tmp_path, capsys):
    """Every other write of a training run fails in turn (it makes 73 for one epoch): the run folder holds whole
    files after each."""
    tree = _tree(tmp_path / "tree")
    run = tmp_path / "run"
    argv = ["train", "--data", str(tree), "--output", str(run), *faults.TINY_TRAIN, "--overwrite"]
    assert _failures(argv, run, errno.ENOSPC, capsys, nths=range(1, 1000, 2)) > 40


@pytest.mark.slow
def test_search_report_fails_in_one_line_and_leaves_whole_files(tmp_path, capsys):
    tree = _tree(tmp_path / "tree")
    out = tmp_path / "search"
    argv = ["search", "--data", str(tree), "--output", str(out), "--step", "0.5", "--tol", "0.6", "--width", "0.25"]
    argv += ["--resolution", "16", "--epochs", "1", "--batch-size", "8", "--seeds", "1", "--threads", "1", "--quiet"]
    argv += ["--jobs", "1"]  # one process: every report write goes through this one's injector
    assert main(argv) == 0  # the study is done: running again writes the report again, each write failing in turn
    capsys.readouterr()
    report = ("search_", "accuracy_vs_macs")
    assert _failures(argv, out, errno.ENOSPC, capsys, names=report) >= 15
    assert _failures(argv, out, errno.EACCES, capsys, names=report, nths=(1, 7)) == 7


@pytest.mark.slow
def test_child_process_disk_full_is_one_line(tmp_path):
    tree = _tree(tmp_path / "tree")
    run = tmp_path / "run"
    argv = ["train", "--data", str(tree), "--output", str(run), *faults.TINY_TRAIN]
    done = faults.run_child(argv, run, errno.ENOSPC, 9)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"cannot write {run}" in lines[0] and "No space left on device" in lines[0]
    _check_folder(run, {})


@pytest.mark.slow
def test_a_full_and_a_read_only_tmpfs_stop_every_writer_in_one_line(
    small_tmpfs, read_only_tmpfs, tiny, tmp_path, capsys
):
    """Real file systems: a 3 MiB tmpfs fills up (the C-level writers, torch.save, safetensors, ONNX, SQLite, hit
    ENOSPC too) and a read-only one refuses every write (EROFS): train, export, search, curves, scale."""
    tree = _tree(tmp_path / "tree")
    run = small_tmpfs.path / "run"
    assert main(["train", "--data", str(tree), "--output", str(run), *faults.TINY_TRAIN]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"cannot write {run}" in lines[0] and "No space left on device" in lines[0]
    _check_folder(small_tmpfs.path, {})
    export = ["export", "--weights", str(tiny[0]), "--format", "onnx"]
    assert main([*export, "--output", str(small_tmpfs.path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err and str(small_tmpfs.path / "m.onnx") in err
    _check_folder(small_tmpfs.path, {})
    search = ["search", "--data", str(tree), "--step", "0.5", "--tol", "0.6", "--width", "0.25", "--resolution", "16"]
    search += ["--epochs", "1", "--batch-size", "8", "--seeds", "1", "--threads", "1", "--quiet", "--jobs", "1"]
    assert main([*search, "--output", str(small_tmpfs.path / "search")]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err and str(small_tmpfs.path / "search") in err
    assert main([*export, "--output", str(read_only_tmpfs.path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "Read-only file system" in err and "Traceback" not in err and str(read_only_tmpfs.path / "m.onnx") in err
    curves = ["curves", "--data", str(tree), "--epochs", "1", "--jobs", "1", "--quiet"]
    train = ["train", "--data", str(tree), *faults.TINY_TRAIN]
    for argv in (search, curves, train, ["scale", "--output-spec", "x/spec.json"]):
        folder = read_only_tmpfs.path / argv[0]
        argv = [a.replace("x/", f"{folder}/") for a in argv]
        assert main([*argv, *(["--output", str(folder)] if argv[0] != "scale" else [])]) == 2
        err = capsys.readouterr().err
        assert "Read-only file system" in err and "Traceback" not in err and str(folder) in err, err
