"""Numbers that are not numbers: JSON files stay strict JSON, a diverged training stops (and its search trial fails,
never chosen), weights holding NaN or Inf are refused at load."""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from effnet.cli import main
from effnet.config.search import SearchConfig
from effnet.config.training import TrainConfig
from effnet.errors import TrainingDiverged
from effnet.io import atomic_write_json, json_text


def _strict(text: str) -> Any:
    """``text`` parsed as strict JSON: a ``NaN``/``Infinity`` literal fails the test."""

    def refuse(name: str) -> None:
        raise AssertionError(f"non-finite JSON literal {name}")

    return json.loads(text, parse_constant=refuse)


# --------------------------------------------------------------------------------------------
# The one JSON writer
# --------------------------------------------------------------------------------------------


def test_json_writer_never_writes_nan_or_infinity(tmp_path: Path) -> None:
    data = {"loss": math.nan, "rows": [math.inf, -math.inf, 1.5], "nested": {"x": (math.nan, 2)}, 3: "key"}
    assert _strict(json_text(data)) == {"loss": None, "rows": [None, None, 1.5], "nested": {"x": [None, 2]}, "3": "key"}
    atomic_write_json(tmp_path / "out.json", data)
    assert _strict((tmp_path / "out.json").read_text())["rows"] == [None, None, 1.5]


# --------------------------------------------------------------------------------------------
# A diverged training
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Fashion-MNIST-shaped IDX set (10 brightness classes with noise)."""
    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 128), ("t10k", 64)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        pixels = np.clip(rng.normal(0, 12, (n, 28, 28)) + 20 + 22 * labels[:, None, None], 0, 255).astype(np.uint8)
        for kind, arr in (("images-idx3", pixels), ("labels-idx1", labels)):
            header = bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
            with gzip.open(root / f"{prefix}-{kind}-ubyte.gz", "wb") as handle:
                handle.write(header + arr.tobytes())
    return root


def _tiny(root: Path, output: Path, **changes: Any) -> TrainConfig:
    base = TrainConfig(
        data="fashion-mnist",
        data_root=str(root),
        model="efficientnet_b0",
        width=0.25,
        depth=0.25,
        resolution=16,
        epochs=2,
        batch_size=32,
        train_limit=64,
        val_limit=64,
        threads=1,
        workers=0,
        augment="none",
        random_crop=False,
        crop_pct=1.0,
        output=str(output),
        seed=0,
    )
    return dataclasses.replace(base, **changes)


def test_a_diverged_run_stops_with_one_line_and_strict_json(fmnist: Path, tmp_path: Path) -> None:
    from effnet.training.trainer import fit

    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"training diverged at epoch 1: .*loss is nan.*lower --lr") as info:
        fit(_tiny(fmnist, out, lr=1e6), progress=False)
    assert "\n" not in str(info.value)
    records = [_strict(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["diverged"] is True and records[-1]["val_loss"] is None
    assert not (out / "best.safetensors").exists() and not (out / "summary.json").exists()
    for file in out.glob("*.json"):
        _strict(file.read_text())


def test_cli_train_that_diverges_exits_non_zero(fmnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["train", "--data", "fashion-mnist", "--data-root", str(fmnist), "--width", "0.25", "--depth", "0.25"]
    args += ["--resolution", "16", "--epochs", "1", "--batch-size", "32", "--train-limit", "64", "--val-limit", "64"]
    args += ["--threads", "1", "--workers", "0", "--lr", "1e6", "--output", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("effnet train: error: training diverged at epoch 1")
    assert "Traceback" not in "\n".join(err)


SMALL = {"step": 0.5, "tol": 0.6, "heartbeat": 1, "seeds": 1}  # 4 grid + 2 single-dimension + baseline = 7


def test_a_diverged_search_trial_fails_once_and_is_never_chosen(tmp_path: Path) -> None:
    from optuna.trial import TrialState

    from effnet.config.search import default_storage
    from effnet.cost import cost
    from effnet.search.run import run_search
    from effnet.search.storage import open_storage

    calls: list[str] = []

    def trainer(config: Any, spec: Any, on_epoch: Any = None) -> Any:
        calls.append(spec.name)
        c = cost(spec)
        if c.macs == max_macs:  # the largest network would win: it diverges instead
            raise TrainingDiverged("training diverged at epoch 1: val loss is nan; lower --lr or use --grad-clip")
        return SimpleNamespace(last_top1=50 + math.log2(c.macs / 1e6), params=c.params, macs=c.macs)

    from effnet.search.grid import baseline_spec, candidates, trial_spec

    config = SearchConfig(**SMALL, output=str(tmp_path))
    base = baseline_spec(config)
    items = candidates(config.target, config.tol, config.step, config.low, config.high, seeds=[config.seed])
    max_macs = max(cost(trial_spec(base, c.alpha, c.beta, c.gamma)).macs for c in items)
    report = run_search(config, trainer=trainer, progress=False)
    assert len(calls) == 7  # the diverged point was not trained again
    assert len(report["trials"]) == 6 and len(report["diverged_trials"]) == 1
    bad = report["diverged_trials"][0]
    assert "diverged" in bad["diverged"]
    chosen = report["chosen"]
    assert chosen is not None and (chosen["alpha"], chosen["beta"], chosen["gamma"]) != (
        bad["alpha"],
        bad["beta"],
        bad["gamma"],
    )
    import optuna

    trials = optuna.load_study(
        study_name="effnet-search", storage=open_storage(default_storage(str(tmp_path)), heartbeat=None)
    ).get_trials()
    assert sum(t.state == TrialState.FAIL for t in trials) == 1 and not any(
        t.state == TrialState.WAITING for t in trials
    )
    _strict((tmp_path / "search_summary.json").read_text())
    again = run_search(config, trainer=trainer, progress=False)  # resumed: nothing is trained again
    assert len(calls) == 7 and again["trials_run_by_this_worker"] == 0


# --------------------------------------------------------------------------------------------
# Non-finite weights
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small 3-class network in effnet's format: finite, with NaN everywhere, with one Inf; a torch .pth too."""
    from effnet.architectures import get_spec
    from effnet.models.factory import create_model, save_pretrained
    from effnet.preprocessing import Preprocessing

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    spec = get_spec("efficientnet_b0").replace(width=0.25, depth=0.25, num_classes=3, name="tiny")
    model = create_model(spec).eval()
    pre = Preprocessing(32, 1.0, "bilinear", class_names=("a", "b", "c"))
    files = {"good": save_pretrained(model, folder / "good.safetensors", pre)}
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(math.nan)
    files["nan"] = save_pretrained(model, folder / "nan.safetensors", pre)
    torch.manual_seed(0)
    model = create_model(spec).eval()
    with torch.no_grad():
        model.classifier.bias[1] = math.inf
    files["inf"] = save_pretrained(model, folder / "inf.safetensors", pre)
    state = model.state_dict()
    torch.save({"state_dict": state}, folder / "inf.pth")
    files["pth"] = folder / "inf.pth"
    return files


def test_nonfinite_weights_are_refused_naming_the_first_bad_tensor(weights: dict[str, Path]) -> None:
    from effnet.errors import BadFile
    from effnet.models.factory import load_pretrained

    with pytest.raises(BadFile, match=r"nan.safetensors: tensor classifier.bias holds NaN or infinite values"):
        load_pretrained(None, weights["nan"])
    with pytest.raises(BadFile, match=r"tensor classifier.bias holds NaN or infinite values \(1 of 3\)"):
        load_pretrained(None, weights["inf"])
    with pytest.raises(BadFile, match=r"inf.pth: tensor classifier.bias"):
        load_pretrained("efficientnet_b0", weights["pth"], source="effnet", drop_head=True, num_classes=3)
    model = load_pretrained(None, weights["nan"], allow_nonfinite=True)  # for debugging
    assert torch.isnan(model.classifier.weight).all()
    assert load_pretrained(None, weights["good"]).spec.num_classes == 3


def _image(folder: Path) -> Path:
    from PIL import Image

    path = folder / "x.png"
    Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_cli_commands_refuse_nonfinite_weights(
    weights: dict[str, Path], fmnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image = _image(tmp_path)
    assert main(["predict", "--weights", str(weights["nan"]), str(image)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tensor classifier.bias holds NaN or infinite values" in err[0]
    assert main(["predict", "--weights", str(weights["nan"]), "--allow-nonfinite", str(image)]) == 0
    capsys.readouterr()
    output = tmp_path / "x.onnx"
    assert main(["export", "--weights", str(weights["inf"]), "--format", "onnx", "--output", str(output)]) == 2
    assert "tensor classifier.bias" in capsys.readouterr().err and not output.exists()
    args = ["train", "--data", "fashion-mnist", "--data-root", str(fmnist), "--weights", str(weights["inf"])]
    args += ["--resolution", "16", "--epochs", "1", "--batch-size", "32", "--train-limit", "64", "--val-limit", "64"]
    assert main([*args, "--threads", "1", "--workers", "0", "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("effnet train: error: ") and "tensor classifier.bias" in err[-1]
