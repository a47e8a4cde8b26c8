"""What a training run reads and keeps: `--weights` names the network to fine-tune, `--artifacts` what the run folder
keeps, the validation set decoded once, and what DDP's rank check compares."""

from __future__ import annotations

import dataclasses
import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from effnet.cli import main
from effnet.config.training import TrainConfig
from effnet.training.trainer import fit


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory) -> Path:
    """A small Fashion-MNIST-shaped IDX set: 10 brightness classes with noise."""
    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 320), ("t10k", 96)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = np.clip(rng.normal(0, 12, (n, 28, 28)) + 20 + 22 * labels[:, None, None], 0, 255).astype(np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            header = bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
            with gzip.open(root / f"{prefix}-{kind}-ubyte.gz", "wb") as handle:
                handle.write(header + arr.tobytes())
    return root


def _config(root: Path, output: Path, **changes) -> TrainConfig:
    base = TrainConfig(
        data="fashion-mnist",
        data_root=str(root),
        width=0.25,
        depth=0.25,
        resolution=16,
        epochs=1,
        batch_size=32,
        threads=1,
        augment="none",
        random_crop=False,
        hflip=0.0,
        output=str(output),
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def trained(fmnist, tmp_path_factory) -> Path:
    """The best weights of a tiny run (B0 at width 0.25, depth 0.25, 16 px, 1 input channel, 10 classes)."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    fit(_config(fmnist, run), progress=False)
    return run / "best.safetensors"


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("effnet train: error:"), err
    return err


def test_weights_name_the_network_to_fine_tune(fmnist, trained, tmp_path, capsys):
    """`train --weights FILE` trains the network the file holds (no model flags needed); flags that describe it are
    accepted, flags that describe another network are one line naming both; --resolution still overrides."""
    result = fit(
        TrainConfig(
            data="fashion-mnist",
            data_root=str(fmnist),
            weights=str(trained),
            recipe="finetune",
            epochs=1,
            batch_size=32,
            threads=1,
            output=str(tmp_path / "tune"),
        ),
        progress=False,
    )
    held = json.loads((tmp_path / "tune" / "config.json").read_text())["spec"]
    assert (result.spec["width"], result.spec["depth"], result.spec["resolution"]) == (0.25, 0.25, 16)
    assert held["width"] == 0.25 and held["num_classes"] == 10 and held["in_chans"] == 1
    same = fit(_config(fmnist, tmp_path / "same", weights=str(trained), resolution=24), progress=False)
    assert (same.spec["width"], same.spec["resolution"]) == (0.25, 24)  # the flags describe it; size overridden
    common = ["train", "--data", "fashion-mnist", "--data-root", str(fmnist), "--weights", str(trained)]
    err = _error(capsys, [*common, "--width", "0.5", "--depth", "0.25", "--output", str(tmp_path / "wide")])
    assert "--width 0.5 --depth 0.25 describe efficientnet_b0 at width 0.5, depth 0.25" in err, err
    assert f"--weights {trained} holds efficientnet_b0 at width 0.25, depth 0.25" in err, err
    err = _error(capsys, [*common, "--model", "efficientnet_lite0", "--output", str(tmp_path / "lite")])
    assert "--model efficientnet_lite0 describe efficientnet_lite0 at width 1, depth 1" in err, err
    assert not (tmp_path / "wide").exists() and not (tmp_path / "lite").exists()  # refused before any work


@pytest.mark.parametrize(
    ("artifacts", "kept"),
    [
        ("weights", {"config.json", "metrics.jsonl", "last.safetensors"}),
        ("metrics", {"config.json", "metrics.jsonl"}),
    ],
)
def test_artifacts_keep_only_what_was_asked(fmnist, tmp_path, artifacts, kept, capsys):
    """`--artifacts weights|metrics`: no checkpoint, best/EMA weights, summary or PNG at the end (`all`, the default,
    keeps them all), and no summary table printed (a search's trials print one line each); the metrics are the
    same as a full run's."""
    full = fit(_config(fmnist, tmp_path / "all", ema_decay=0.9), progress=True)
    assert {p.name for p in (tmp_path / "all").iterdir()} >= {"checkpoint.pt", "best.safetensors", "curves.png"}
    assert "| best_top1 |" in capsys.readouterr().out
    lean = fit(_config(fmnist, tmp_path / artifacts, ema_decay=0.9, artifacts=artifacts), progress=True)
    assert {p.name for p in (tmp_path / artifacts).iterdir()} == kept
    assert "best_top1" not in capsys.readouterr().out
    assert [r["val_top1"] for r in lean.history] == [r["val_top1"] for r in full.history]


def test_validation_is_decoded_once_and_gives_the_same_batches(fmnist):
    """An in-memory validation share small enough is decoded at set-up: the same images, labels and batches as a
    loader that decodes every epoch, every time it is read."""
    from torch.utils.data import DataLoader

    from effnet.serving.preprocess import collate_skip
    from effnet.training.batched import ArrayBatches
    from effnet.training.data import load_datasets
    from effnet.training.loaders import DecodedBatches, Shard, build_loaders

    config = _config(fmnist, Path("unused"), val_limit=70)
    data = load_datasets("fashion-mnist", resolution=16, data_root=str(fmnist), train_limit=64, val_limit=70)
    loaders = build_loaders(data, config, torch.device("cpu"), rank=0, world=1)
    assert isinstance(loaders.val, DecodedBatches)
    decoding = ArrayBatches(data.val, Shard(len(data.val), 0, 1), 64, data.val.dataset.batch_transform)
    per_sample = DataLoader(data.val, batch_size=64, sampler=Shard(len(data.val), 0, 1), collate_fn=collate_skip)
    for _ in range(2):
        pairs = list(zip(loaders.val, decoding, per_sample, strict=True))
        assert [len(a.labels) for a, _, _ in pairs] == [64, 6]
        for a, b, c in pairs:
            assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
            # 28 -> 16 px: torch's resize of the batch vs PIL's per image, within 2 grey levels (docs/speed.md)
            assert torch.equal(a.labels, c.labels) and (a.images - c.images).abs().max() * data.std[0] * 255 <= 2.001


_RANK = r"""
import sys, torch, torch.distributed as dist
from torch import nn
from effnet.training.distributed import rank_parameter_diff

rank, port = int(sys.argv[1]), int(sys.argv[2])
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
model[1].running_mean += rank  # per-rank BatchNorm statistics, as DDP leaves them
same = rank_parameter_diff(model, 2)
with torch.no_grad():
    model[0].weight[0, 0, 0, 0] += 0.25 * rank
print(rank, same, rank_parameter_diff(model, 2), flush=True)
dist.barrier()
dist.destroy_process_group()
"""


def test_rank_check_compares_parameters_not_batchnorm_statistics(tmp_path):
    """`rank_parameter_max_diff` is 0 when only BatchNorm's running statistics differ between ranks (they do by
    design), and the largest parameter difference otherwise."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "rank.py"
    script.write_text(_RANK)
    ranks = [
        subprocess.Popen([sys.executable, str(script), str(r), str(port)], stdout=subprocess.PIPE, text=True)
        for r in (0, 1)
    ]
    lines = [rank.communicate(timeout=300)[0].strip() for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], lines
    assert lines == ["0 0.0 0.25", "1 0.0 0.25"], lines
