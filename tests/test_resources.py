"""What a command may take from the machine: counts of processes and threads are lowered to the cores (and trials),
and a network or batch whose estimated memory exceeds what the machine has is refused in one line, before anything
is allocated (``effnet.machine``, ``effnet.memory``)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from effnet.architectures import get_spec
from effnet.cli import main
from effnet.config.search import SearchConfig
from effnet.cost import cost
from effnet.errors import InvalidValue, Lowered
from effnet.machine import available_memory, bound_count, usable_cpus
from effnet.memory import GIB, check_memory, estimate_memory
from effnet.specs import NetworkSpec

# A 735-byte spec inside every documented bound (<= 256 repeats, <= 16,384 channels, kernel <= 31, expansion <= 64)
# that asks for 2.2e13 parameters (90 TB of weights).
HUGE = {
    **{k: v for k, v in get_spec("efficientnet_b0").to_dict().items() if k != "stages"},
    "name": "huge",
    "stages": [
        {
            "block": "mbconv",
            "expand_ratio": 64,
            "kernel": 31,
            "stride": 1,
            "out_channels": 16384,
            "repeats": 256,
            "se_ratio": 0.25,
            "scale_repeats": True,
        }
    ]
    * 2,
}


@pytest.fixture
def huge_spec(tmp_path: Path) -> Path:
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(HUGE))
    assert path.stat().st_size < 1024
    return path


def _one_line(err: str, command: str, *needles: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("effnet ")]
    assert lines and "Traceback" not in err, err
    assert lines[-1].startswith(f"effnet {command}: error: "), err
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])
    return lines[-1]


# --------------------------------------------------------------------------------------------
# What the machine has
# --------------------------------------------------------------------------------------------


def test_available_memory_reads_meminfo_and_the_cgroup_limit(tmp_path: Path) -> None:
    meminfo = "MemTotal:       32000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n"
    assert available_memory(meminfo, tmp_path / "none") == 20_000_000 * 1024
    (tmp_path / "memory.max").write_text("4294967296\n")
    (tmp_path / "memory.current").write_text("1073741824\n")
    assert available_memory(meminfo, tmp_path) == 3 * GIB  # the container's room, not the host's
    (tmp_path / "memory.max").write_text("max\n")
    assert available_memory(meminfo, tmp_path) == 20_000_000 * 1024
    assert available_memory("", tmp_path / "none") is None
    assert available_memory() is None or available_memory() > 0


def test_bound_count_lowers_with_one_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert bound_count("--jobs", 2, 4, "4 usable CPU cores") == 2
        assert bound_count("--jobs", 1000, 4, "4 usable CPU cores, 6 trials") == 4
        assert bound_count("--workers", 0, 4, "x") == 0
        assert bound_count("--jobs", 3, 0, "no trials") == 1
    assert [str(w.message) for w in caught if w.category is Lowered] == [
        "--jobs 1000 lowered to 4 (4 usable CPU cores, 6 trials)",
        "--jobs 3 lowered to 1 (no trials)",
    ]


# --------------------------------------------------------------------------------------------
# Counts that spawn processes or threads
# --------------------------------------------------------------------------------------------


SMALL = {"step": 0.5, "tol": 0.6, "heartbeat": 1, "seeds": 1}  # 7 trials


@pytest.mark.parametrize(("cpus", "jobs"), [(64, 7), (2, 2)])
def test_search_jobs_are_bounded_by_cores_and_trials(
    cpus: int, jobs: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from effnet.search import jobs as jobs_module

    started: list[str] = []
    monkeypatch.setattr(jobs_module, "usable_cpus", lambda: cpus)
    monkeypatch.setattr(jobs_module, "_start", lambda env: _Done())
    monkeypatch.setattr(jobs_module, "_send", lambda child, payload: payload and started.append(payload))

    def runner(config: object, on_ready: Callable[[], None], **kw: object) -> dict[str, bool]:
        on_ready()  # the study is open and checked: the helpers start now
        return {"ran": True}

    monkeypatch.setattr(jobs_module, "_runner", lambda tool: runner)
    with pytest.warns(Lowered, match=rf"--jobs 1000 lowered to {jobs} \({cpus} usable CPU cores, 7 trials\)"):
        report = jobs_module.run_jobs("search", SearchConfig(**SMALL, output=str(tmp_path)), 1000, progress=False)
    assert len(started) == jobs - 1 and report["jobs"] == jobs
    assert report["threads_per_job"] == max(1, cpus // jobs)


class _Done:
    """A helper process that has already finished."""

    def poll(self) -> int:
        return 0

    def wait(self, timeout: float | None = None) -> int:
        return 0


def test_train_workers_and_threads_are_bounded_by_the_cores() -> None:
    import torch

    from effnet.config.training import TrainConfig
    from effnet.training.loaders import build_loaders
    from effnet.training.trainer import _process_settings

    data = SimpleNamespace(train=list(range(64)), val=list(range(16)))
    config = TrainConfig(batch_size=8, workers=500, threads=1000, seed=0)
    with pytest.warns(Lowered, match=rf"--workers 500 lowered to {usable_cpus()} \("):
        loaders = build_loaders(data, config, torch.device("cpu"), rank=0, world=1)
    assert loaders.train.num_workers == usable_cpus() == loaders.val.num_workers
    before = torch.get_num_threads()
    with pytest.warns(Lowered, match=rf"--threads 1000 lowered to {usable_cpus()} "):
        with _process_settings(config):
            assert torch.get_num_threads() == usable_cpus()
    assert torch.get_num_threads() == before


def _weights(folder: Path) -> Path:
    """A small 2-class network in effnet's format."""
    import torch

    from effnet.models.factory import create_model, save_pretrained
    from effnet.preprocessing import Preprocessing

    torch.manual_seed(0)
    spec = get_spec("efficientnet_b0").replace(width=0.25, depth=0.25, num_classes=2, name="tiny")
    return save_pretrained(create_model(spec).eval(), folder / "tiny.safetensors", Preprocessing(32, 1.0))


def _images(folder: Path, n: int = 4) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        target = folder / str(i % 2)
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(target / f"{i}.png")
    return folder


def test_eval_workers_are_lowered_with_a_note_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights, data = _weights(tmp_path), _images(tmp_path / "data")
    args = ["eval", "--weights", str(weights), "--data", str(data), "--workers", "500", "--no-progress"]
    assert main([*args, "--batch-size", "2"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    lowered = f"--workers 500 lowered to {min(2, usable_cpus())} ({usable_cpus()} usable CPU cores, 2 batches)"
    assert notes == [f"effnet eval: note: {lowered}"]


# --------------------------------------------------------------------------------------------
# Memory: estimated from the cost model, refused before anything is built
# --------------------------------------------------------------------------------------------


def test_the_estimate_is_the_cost_model_in_bytes() -> None:
    spec = get_spec("efficientnet_b0")
    c = cost(spec)
    weights_only = estimate_memory(spec, 0)
    assert weights_only.total == weights_only.weights == 4 * c.params
    train = estimate_memory(spec, 32, training=True)
    assert train.training_state == 2 * 4 * c.params and train.activations == 32 * 4 * c.activations
    infer = estimate_memory(spec, 8)
    assert 8 * 4 * 3 * 224**2 < infer.activations < train.activations / 4  # input + largest map, far below training
    assert estimate_memory(spec, 32, training=True, recompute=True).activations < train.activations
    assert check_memory(infer, None, "x") is infer  # unknown memory: nothing refused
    with pytest.raises(InvalidValue, match=r"needs at least .* more than the 1.07 GB of --max-memory 1"):
        check_memory(estimate_memory(spec, 10_000), 10**12, "this machine's available memory", max_memory_gib=1)


def test_a_small_spec_asking_for_terabytes_is_refused_before_a_byte(huge_spec: Path) -> None:
    import effnet

    spec = NetworkSpec.from_json(huge_spec.read_text())
    assert cost(spec).params > 10**13
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(InvalidValue, match=r"^huge needs at least [\d.e+]+ GB \(weights .*\), more than the .* of "):
        effnet.create_model(spec)
    assert time.perf_counter() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200_000  # KiB: nothing was allocated


def test_cli_train_refuses_a_spec_or_batch_that_cannot_fit(
    huge_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--spec", str(huge_spec), "--epochs", "1", "--output", str(out)]) == 2
    _one_line(capsys.readouterr().err, "train", "huge at batch 128, 224 px needs at least", "available memory")
    assert not out.exists()  # refused before the run folder
    args = ["train", "--data", "fashion-mnist", "--width", "0.25", "--depth", "0.25", "--output", str(out)]
    assert main([*args, "--max-memory", "0.001"]) == 2
    _one_line(capsys.readouterr().err, "train", "more than the 1.07 MB of --max-memory 0.001")
    assert not out.exists()


def test_scale_batch_that_cannot_fit_is_one_line_before_measuring(capsys: pytest.CaptureFixture) -> None:
    start = time.perf_counter()
    assert main(["scale", "--device", "cpu", "--batch", "100000", "--phi-max", "2"]) == 2
    _one_line(capsys.readouterr().err, "scale", "efficientnet_b0_paper_phi0 at batch 100000, 224 px needs at least")
    assert time.perf_counter() - start < 30


def test_scale_does_not_measure_members_over_max_memory() -> None:
    from effnet.config.scale import ScaleConfig
    from effnet.search.measure import Measurement
    from effnet.search.scaleup import family, scale_family

    members = family(phi_max=3)
    needs = [estimate_memory(m.spec, 16).total for m in members]
    limit = (needs[1] + needs[2]) / 2 / GIB  # phi 0 and 1 fit, 2 and 3 do not
    measured: list[str] = []

    def measure_one(spec: NetworkSpec) -> Measurement:
        measured.append(spec.name)
        return Measurement("cpu", 16, 1.0 + len(spec.name), 1.0, 10.0, "fake")

    config = ScaleConfig(phi_max=3, device="cpu", batch=16, max_memory=limit, min_rounds=1, max_rounds=1)
    result = scale_family(config, measure_one=measure_one)
    assert {name.rsplit("_", 1)[1] for name in measured} == {"phi0", "phi1"}
    assert result.chosen is not None and result.chosen.phi == 1
    assert [bool(m.over_memory) for m in result.members] == [False, False, True, True]
    assert "--max-memory" in result.members[2].violations[0]
    with pytest.raises(InvalidValue, match=r"phi0 at batch 16, 224 px needs at least .* --max-memory"):
        scale_family(ScaleConfig(phi_max=1, device="cpu", batch=16, max_memory=1e-6), measure_one=measure_one)


def test_predict_eval_export_refuse_what_cannot_fit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights, data = _weights(tmp_path), _images(tmp_path / "data")
    tiny = ["--max-memory", "0.00001"]
    assert main(["predict", "--weights", str(weights), str(data), *tiny]) == 2
    _one_line(capsys.readouterr().err, "predict", "tiny at batch 4, 32 px needs at least", "--max-memory 1e-05")
    assert main(["eval", "--weights", str(weights), "--data", str(data), "--no-progress", *tiny]) == 2
    _one_line(capsys.readouterr().err, "eval", "tiny at batch 4, 32 px")
    output = tmp_path / "x.onnx"
    assert main(["export", "--weights", str(weights), "--format", "onnx", "--output", str(output), *tiny]) == 2
    _one_line(capsys.readouterr().err, "export", "tiny at batch 3, 32 px")
    assert not output.exists()


def test_a_calibration_size_that_cannot_fit_is_refused(tmp_path: Path) -> None:
    from effnet.preprocessing import Preprocessing
    from effnet.serving.quantize import calibration_batch

    folder = _images(tmp_path / "calib", 2)
    with pytest.raises(InvalidValue, match=r"--calibration-size 10000 images of 2048 px need at least 503 GB"):
        calibration_batch(folder, Preprocessing(2048, 1.0), 10_000)


@pytest.mark.slow
def test_a_huge_spec_costs_no_memory_in_a_fresh_process(huge_spec: Path) -> None:
    """The acceptance bound: a file under 1 MB never costs more than 2 GB (here far less). What the file costs is
    the peak over what the command's imports already hold (importing a CUDA build of torch alone can take
    gigabytes on some machines)."""
    code = (
        "import resource, sys; from effnet.cli import main; import effnet.training.trainer; "
        "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; before = peak(); "
        "status = main(sys.argv[1:]); print(before, peak())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "train", "--spec", str(huge_spec), "--output", str(huge_spec.parent / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "needs at least" in proc.stderr and "Traceback" not in proc.stderr
    before, after = map(int, proc.stdout.strip().splitlines()[-1].split())
    assert after - before < 256 * 1024, (before, after)  # KiB: the spec allocated nothing
