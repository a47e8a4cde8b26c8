"""Progressive learning (EfficientNetV2, Algorithm 1): the stages, mixup, restaged data, a run, resume, bad flags."""

from __future__ import annotations

import dataclasses
import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from effnet.config.fields import parse_range
from effnet.config.progressive import (
    MIN_RESOLUTION_FRACTION,
    Stage,
    default_min_resolution,
    progressive_stages,
    stage_for_epoch,
)
from effnet.config.training import TrainConfig, resolve_recipe
from effnet.errors import InvalidValue
from effnet.training.named_datasets import DEBIAN_FASHION_MNIST

needs_fmnist = pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST (Debian package dataset-fashion-mnist) not installed at {DEBIAN_FASHION_MNIST}",
)

_FIELDS = ("resolution", "dropout", "randaugment_m", "mixup_alpha")


def _pair(low: float, high: float, integer: bool = False) -> st.SearchStrategy[tuple[float, float]]:
    value = st.integers(int(low), int(high)) if integer else st.floats(low, high, allow_nan=False)
    return st.tuples(value, value)


@settings(max_examples=300, deadline=None)
@given(
    k=st.integers(2, 40),
    extra=st.integers(0, 400),
    final=st.integers(8, 2048),
    data=st.data(),
    dropout=_pair(0.0, 0.99),
    magnitude=_pair(0, 30, integer=True),
    mixup=_pair(0.0, 10.0),
)
def test_stages_cover_every_epoch_once_move_monotonically_and_end_at_the_final_values(
    k, extra, final, data, dropout, magnitude, mixup
):
    epochs = k + extra
    first = data.draw(st.none() | st.integers(8, final), label="min_resolution")
    config = TrainConfig(
        progressive=k,
        epochs=epochs,
        resolution=final,
        min_resolution=first,
        dropout_range=f"{dropout[0]!r},{dropout[1]!r}",
        randaugment_range=f"{magnitude[0]},{magnitude[1]}",
        mixup_range=f"{mixup[0]!r},{mixup[1]!r}",
    )
    stages = progressive_stages(config)
    assert len(stages) == k
    covered = [e for s in stages for e in range(s.first_epoch, s.last_epoch + 1)]
    assert covered == list(range(1, epochs + 1))  # every epoch exactly once, in order
    lengths = [s.last_epoch - s.first_epoch + 1 for s in stages]
    assert max(lengths) - min(lengths) <= 1  # equal stages (up to one epoch when K does not divide the epochs)
    assert all(
        stage_for_epoch(stages, e).first_epoch <= e <= stage_for_epoch(stages, e).last_epoch
        for e in (1, epochs, 1 + epochs // 2)
    )
    start = first if first is not None else default_min_resolution(final)
    ends = {"resolution": (start, final), "dropout": dropout, "randaugment_m": magnitude, "mixup_alpha": mixup}
    for name in _FIELDS:
        values = [getattr(s, name) for s in stages]
        low, high = ends[name]
        assert (values[0], values[-1]) == (low, high), name  # the first and last stage: exactly the range's ends
        steps = [b - a for a, b in zip(values, values[1:], strict=False)]
        assert all(d >= 0 for d in steps) if high >= low else all(d <= 0 for d in steps), (name, values)
    assert all(s.resolution % 8 == 0 for s in stages[1:-1] if start < s.resolution < final)
    assert all(isinstance(s.randaugment_m, int) for s in stages)


def test_stages_follow_algorithm_1_on_the_v2_s_numbers():
    # V2-S (Table 6): 128 -> 300 px, dropout 0.1 -> 0.3, RandAugment 5 -> 15, mixup 0 -> 0; here 4 stages
    config = TrainConfig(progressive=4, epochs=350, resolution=300)
    assert config.min_resolution is None and default_min_resolution(300) == 128
    stages = progressive_stages(config)
    assert [s.resolution for s in stages] == [128, 184, 240, 300]  # 128 + 172 i / 3, to the nearest multiple of 8
    assert [s.randaugment_m for s in stages] == [5, 8, 12, 15]
    assert [s.dropout for s in stages] == pytest.approx([0.1, 0.1667, 0.2333, 0.3], abs=1e-4)
    assert {s.mixup_alpha for s in stages} == {0.0}
    assert [(s.first_epoch, s.last_epoch) for s in stages] == [(1, 87), (88, 175), (176, 262), (263, 350)]
    assert progressive_stages(dataclasses.replace(config, progressive=1)) == ()  # 0 and 1: off
    assert stage_for_epoch((), 5) is None
    with pytest.raises(InvalidValue, match="outside the progressive stages"):
        stage_for_epoch(stages, 351)
    # the default final size is the model's; the first stage never drops below 8 px nor rises above the final
    b0 = progressive_stages(TrainConfig(progressive=2, epochs=2))
    assert (b0[0].resolution, b0[-1].resolution) == (round(224 * MIN_RESOLUTION_FRACTION / 8) * 8, 224) == (96, 224)
    assert default_min_resolution(12) == 8 and default_min_resolution(5) == 5
    assert Stage(1, 2, 16, 0.1, 5, 0.0).to_dict()["resolution"] == 16


def test_progressive_forces_randaugment_and_checks_its_neighbours():
    assert resolve_recipe(TrainConfig(progressive=3, epochs=3)).augment == "randaugment"
    assert resolve_recipe(TrainConfig(progressive=1, epochs=3)).augment == "none"  # off: the recipe's choice
    assert resolve_recipe(TrainConfig(progressive=3, epochs=3, augment="randaugment")).augment == "randaugment"
    assert TrainConfig(augment="autoaugment", dropout=0.2, min_resolution=64, resolution=32).progressive == 0
    with pytest.raises(InvalidValue, match="larger than the final resolution 224"):
        progressive_stages(TrainConfig(progressive=2, epochs=2, min_resolution=256))
    with pytest.raises(InvalidValue, match="needs the final resolution"):
        progressive_stages(TrainConfig(progressive=2, epochs=2, spec_file="net.json"))


_NUMBER = st.floats(0.0, 0.99, allow_nan=False)


@given(low=_NUMBER, high=_NUMBER)
def test_parse_range_reads_what_repr_writes(low, high):
    assert parse_range(f"{low!r},{high!r}", "--x", 0.0, 0.99) == (low, high)
    assert parse_range(f" {low!r}", "--x", 0.0, 0.99) == (low, low)  # one number: a constant


@given(text=st.text(max_size=30))
def test_parse_range_accepts_two_bounded_numbers_or_raises_one_line(text):
    try:
        low, high = parse_range(text, "--dropout-range", 0.0, 0.99)
    except InvalidValue as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith("--dropout-range must be LO,HI") and repr(text) in message
    else:
        assert 0.0 <= low <= 0.99 and 0.0 <= high <= 0.99 and 1 <= text.count(",") + 1 <= 2


def test_parse_range_refusals():
    for text in ("", "1,2,3", "0.1,", "abc", "nan,0.2", "inf", "0.5,1.5", "-0.1,0.2", "1" * 200):
        with pytest.raises(InvalidValue, match=r"^--dropout-range must be LO,HI with numbers in \[0, 0\.99\], got '"):
            parse_range(text, "--dropout-range", 0.0, 0.99)
    assert parse_range("5,15", "--m", 0, 30, integer=True) == (5.0, 15.0)
    with pytest.raises(InvalidValue, match="integers in \\[0, 30\\]"):
        parse_range("2.5,10", "--randaugment-range", 0, 30, integer=True)


def test_mixup_mixes_images_and_targets_with_one_lambda():
    from torch import nn

    from effnet.training.progressive import mixup, mixup_targets

    images, labels = torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 3, 4, 0])
    torch.manual_seed(1)
    mixed, partner, lam = mixup(images, labels, 0.4)
    assert 0.0 <= lam <= 1.0 and sorted(partner.tolist()) == sorted(labels.tolist())
    torch.manual_seed(1)
    torch.distributions.Beta(0.4, 0.4).sample()  # the draws mixup makes: lambda, then the shuffle
    perm = torch.randperm(6)
    assert torch.equal(partner, labels[perm]) and torch.allclose(mixed, lam * images + (1 - lam) * images[perm])
    targets = mixup_targets(labels, partner, lam, 5)
    assert torch.allclose(targets.sum(1), torch.ones(6))
    logits = torch.randn(6, 5)
    smooth = nn.CrossEntropyLoss(label_smoothing=0.1)
    expected = lam * smooth(logits, labels) + (1 - lam) * smooth(logits, partner)  # CE is linear in its target
    assert smooth(logits, targets).item() == pytest.approx(expected.item(), rel=1e-6)
    # the same torch seed gives the same mix: the checkpoint's RNG state makes resumed runs draw it again
    torch.manual_seed(1)
    again, partner2, lam2 = mixup(images, labels, 0.4)
    assert lam2 == lam and torch.equal(again, mixed) and torch.equal(partner2, partner)


def test_restage_changes_the_training_size_only():
    from effnet.config.augment import Augment
    from effnet.preprocessing import Preprocessing
    from effnet.training.data import ArrayDataset, DataBundle, restage, train_transform
    from effnet.training.loaders import build_loaders

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (40, 28, 28), dtype=np.uint8), np.arange(40) % 4
    pre = Preprocessing(32, 1.0, "bicubic", (0.5,), (0.25,), ("a", "b", "c", "d"), 1)
    augment = Augment("randaugment", randaugment_m=5)
    train = torch.utils.data.Subset(ArrayDataset(images, labels, train_transform(pre, augment)), list(range(32)))
    bundle = DataBundle("toy", train, ArrayDataset(images, labels, train_transform(pre, augment)), pre, "memory")
    staged = restage(bundle, 16, dataclasses.replace(augment, randaugment_m=12))
    assert len(staged) == 32 and staged[3][0].shape == (1, 16, 16) and staged[3][1] == train[3][1]
    assert train[3][0].shape == (1, 32, 32)  # the bundle keeps its own transform
    config = TrainConfig(batch_size=8, workers=0, seed=0)
    loaders = build_loaders(bundle, config, torch.device("cpu"), rank=0, world=1)
    swapped = loaders.with_train_dataset(staged)
    assert swapped.generator is loaders.generator and swapped.train.sampler is loaders.sampler
    assert next(iter(swapped.train)).images.shape == (8, 1, 16, 16)
    with pytest.raises(ValueError, match="keep its 32 images"):
        loaders.with_train_dataset(torch.utils.data.Subset(staged, [0, 1]))


def _tiny(output: Path, **changes) -> TrainConfig:
    base = TrainConfig(
        data="fashion-mnist",
        model="efficientnet_b0",
        width=0.25,
        resolution=32,
        epochs=3,
        batch_size=32,
        train_limit=256,
        val_limit=128,
        progressive=3,
        threads=1,
        workers=0,
        deterministic=True,
        output=str(output),
        seed=0,
    )
    return dataclasses.replace(base, **changes)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@needs_fmnist
@pytest.mark.slow
def test_progressive_run_rises_in_resolution_and_records_its_stages(tmp_path, monkeypatch):
    from effnet.cli import main
    from effnet.models.factory import load_pretrained
    from effnet.training import loop

    seen, real_epoch = [], loop.train_epoch

    def watched(state, net, criterion, loader, *args, **kwargs):  # what each epoch really trains with
        seen.append((tuple(loader.dataset[0][0].shape), state.model.dropout.p, kwargs["mixup_alpha"]))
        return real_epoch(state, net, criterion, loader, *args, **kwargs)

    monkeypatch.setattr(loop, "train_epoch", watched)
    run = tmp_path / "run"
    argv = [
        "train",
        "--train-limit",
        "256",
        "--val-limit",
        "128",
        "--epochs",
        "3",
        "--progressive",
        "3",
        "--resolution",
        "32",
        "--width",
        "0.25",
        "--batch-size",
        "32",
        "--threads",
        "1",
        "--output",
        str(run),
        "--mixup-range",
        "0,0.2",
    ]
    assert main(argv) == 0
    records = _records(run)
    assert [r["resolution"] for r in records] == [16, 24, 32]
    assert [(shape, p, alpha) for shape, p, alpha in seen] == [
        ((1, 16, 16), pytest.approx(0.1), 0.0),
        ((1, 24, 24), pytest.approx(0.2), pytest.approx(0.1)),
        ((1, 32, 32), pytest.approx(0.3), pytest.approx(0.2)),
    ]
    assert [r["randaugment_m"] for r in records] == [5, 10, 15]
    assert [r["dropout"] for r in records] == pytest.approx([0.1, 0.2, 0.3])
    assert [r["mixup_alpha"] for r in records] == pytest.approx([0.0, 0.1, 0.2])
    assert all(np.isfinite(r["train_loss"]) for r in records)
    saved = json.loads((run / "config.json").read_text())
    assert saved["augment"] == "randaugment" and saved["progressive"] == 3
    assert [s["resolution"] for s in saved["progressive_stages"]] == [16, 24, 32]
    assert [(s["first_epoch"], s["last_epoch"]) for s in saved["progressive_stages"]] == [(1, 1), (2, 2), (3, 3)]
    model = load_pretrained(None, run / "last.safetensors")  # exported: the final size and dropout
    assert model.preprocessing.input_size == 32 and model.spec.dropout == pytest.approx(0.3)


class _StopAfter:
    """A stop flag that reports SIGTERM after ``steps`` optimizer steps (an in-process, deterministic interrupt)."""

    def __init__(self, steps: int) -> None:
        self.calls, self.steps = 0, steps

    def agreed(self, rt) -> int:
        self.calls += 1
        return signal.SIGTERM if self.calls >= self.steps else 0


class _EndOfEpoch(Exception):
    pass


@needs_fmnist
@pytest.mark.slow
def test_resume_mid_stage_and_at_a_stage_boundary_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    from effnet.training import loop, trainer

    config = _tiny(tmp_path / "ref", mixup_range="0.2,0.4")  # mixup draws from the RNG too
    trainer.fit(config, progress=False)
    ref = _weights(tmp_path / "ref" / "last.safetensors")
    run = tmp_path / "cut"
    cut = dataclasses.replace(config, output=str(run))

    def stop_after_epoch_1(record: dict) -> None:  # a checkpoint at the end of stage 1 (as after SIGKILL there)
        raise _EndOfEpoch

    with pytest.raises(_EndOfEpoch):
        trainer.fit(cut, progress=False, on_epoch=stop_after_epoch_1)
    real_epoch = loop.train_epoch

    def interrupted(state, *args, **kwargs):  # SIGTERM after 3 of epoch 2's 8 steps: mid stage 2
        return real_epoch(state, *args, **{**kwargs, "stop": _StopAfter(3)})

    monkeypatch.setattr(loop, "train_epoch", interrupted)
    with pytest.raises(loop.TrainingInterrupted):
        trainer.fit(dataclasses.replace(cut, resume=True), progress=False)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) == (1, 3)
    monkeypatch.setattr(loop, "train_epoch", real_epoch)
    trainer.fit(dataclasses.replace(cut, resume=True), progress=False)
    got, want = _records(run), _records(tmp_path / "ref")
    assert [r["epoch"] for r in got] == [1, 2, 3] and [r["resolution"] for r in got] == [16, 24, 32]
    assert [r["val_top1"] for r in got] == [r["val_top1"] for r in want]
    assert [r["train_loss"] for r in got] == pytest.approx([r["train_loss"] for r in want], abs=1e-9)
    weights = _weights(run / "last.safetensors")
    assert weights.keys() == ref.keys()
    assert max((weights[k].double() - ref[k].double()).abs().max().item() for k in ref) == 0.0


def _one_line_error(capsys, argv: list[str], pattern: str) -> None:
    from effnet.cli import main

    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("effnet train: error:"), err
    assert pattern in err, err


@pytest.mark.parametrize(
    "flags,pattern",
    [
        (["--progressive", "5"], "--progressive 5 needs at least 5 epochs (one per stage), got --epochs 3"),
        (["--progressive", "-1"], "--progressive must be in [0, 1000], got -1"),
        (["--progressive", "3", "--augment", "autoaugment"], "not --augment autoaugment"),
        (["--progressive", "3", "--augment", "none"], "not --augment none"),
        (["--progressive", "3", "--dropout", "0.2"], "drop --dropout 0.2"),
        (
            ["--progressive", "3", "--min-resolution", "64"],
            "--min-resolution 64 is larger than the final --resolution 32",
        ),
        (["--progressive", "3", "--min-resolution", "4"], "--min-resolution must be in [8, 2048], got 4"),
        (["--progressive", "3", "--resolution", "0"], "--resolution must be >= 1, got 0"),
        (["--dropout-range", "0.1,abc"], "--dropout-range must be LO,HI with numbers in [0, 0.99], got '0.1,abc'"),
        (["--dropout-range", "0.1,1.0"], "--dropout-range must be LO,HI"),
        (["--randaugment-range", "5,40"], "--randaugment-range must be LO,HI with integers in [0, 30], got '5,40'"),
        (["--randaugment-range", "2.5,10"], "integers in [0, 30]"),
        (["--mixup-range=-1,0"], "--mixup-range must be LO,HI with numbers in [0, 10], got '-1,0'"),
        (["--mixup-range", "0,nan"], "--mixup-range must be LO,HI"),
    ],
)
def test_bad_progressive_flags_are_one_line_errors(capsys, tmp_path, flags, pattern):
    out = tmp_path / "out"
    argv = ["train", "--epochs", "3", "--resolution", "32", "--width", "0.25", "--output", str(out), *flags]
    _one_line_error(capsys, argv, pattern)
    assert not out.exists()  # refused before anything was written


def test_a_first_stage_larger_than_the_models_size_is_refused_before_the_run_starts(capsys, tmp_path):
    out = tmp_path / "out"
    _one_line_error(
        capsys,
        ["train", "--epochs", "2", "--progressive", "2", "--min-resolution", "256", "--output", str(out)],
        "--min-resolution 256 is larger than the final resolution 224",
    )
    assert not out.exists()
