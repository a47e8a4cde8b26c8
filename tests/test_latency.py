"""The latency model: hand-made profiles (fast), their refusals, the fit, the engine choice, and one real profile."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from effnet.architectures import get_spec, list_models, scale
from effnet.cli import main
from effnet.config.serving import default_backend
from effnet.cost import cost
from effnet.errors import BadFile, InvalidValue, WrongType
from effnet.latency.features import FEATURES, Context, network_parts
from effnet.latency.fingerprint import current_fingerprint
from effnet.latency.fit import Sample, cross_validate, fit_model
from effnet.latency.predict import check_latency_budget, predict_latency
from effnet.latency.profile import (
    EngineTiming,
    LatencyModel,
    Profile,
    default_profile_path,
    fastest_engines,
    load_profile,
    nearest_engine,
    save_profile,
)
from effnet.limits import MAX_JSON_BYTES

COEFFICIENTS = {name: 1e-6 * (i + 1) for i, name in enumerate(FEATURES)}
OTHER_CPU = "model name\t: Some Other CPU\nflags\t\t: fpu sse sse2\n"


def _profile(threads: int | None = None, batch: int = 1, engines: tuple[EngineTiming, ...] = (), **model) -> Profile:
    """A hand-made profile of this machine (its fingerprint) with known coefficients."""
    fp = current_fingerprint("default", "onnxruntime", "fp32", batch, threads)
    values = {"coefficients": tuple(COEFFICIENTS.values()), **model}
    return Profile(fp, LatencyModel(FEATURES, **values), engines)


def _one_line(err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_profile_survives_json_and_keeps_its_fingerprint(tmp_path):
    profile = _profile(engines=(EngineTiming("fp32", 1, (("onnxruntime", 5.0), ("openvino", 6.0))),))
    path = save_profile(profile, tmp_path / "p.json")
    assert load_profile(path) == profile == Profile.from_dict(json.loads(path.read_text()))
    assert profile.fastest("fp32") == {1: "onnxruntime"} and profile.fastest("bf16") == {}


def test_prediction_is_the_sum_of_its_parts_and_grows_with_the_network():
    profile = _profile()
    b0, b3 = predict_latency("efficientnet_b0", profile), predict_latency(get_spec("efficientnet_b3"), profile)
    assert b0.ms == pytest.approx(sum(p.ms for p in b0.parts)) and b3.ms > b0.ms > 0
    assert [p.name for p in b0.parts] == [p.name for p in cost("efficientnet_b0").parts]
    assert b3.peak_memory_mb > b0.peak_memory_mb > cost("efficientnet_b0").params * 4 / 2**20
    doubled = _profile(coefficients=tuple(2 * v for v in COEFFICIENTS.values()))
    assert predict_latency("efficientnet_b0", doubled).ms == pytest.approx(2 * b0.ms)
    scaled = _profile(scale=1.5, offset_ms=2.0)
    assert predict_latency("efficientnet_b0", scaled).ms == pytest.approx(1.5 * b0.ms + 2.0)
    from_memory = predict_latency("efficientnet_b0", _profile(weights_ms=1e-6))  # 1 ns per weight read
    weights = sum(p.features[FEATURES.index("weights")] for p in network_parts(get_spec("efficientnet_b0")))
    assert 5e6 < weights < cost("efficientnet_b0").params  # BN folded into the convolutions
    assert from_memory.ms == pytest.approx(b0.ms + 1e-6 * weights, rel=1e-6)
    assert predict_latency("efficientnet_b0", profile, 256).ms > b0.ms  # a larger input costs more


def test_features_follow_the_cost_model_for_every_registered_model():
    for name in list_models():
        parts, exact = network_parts(get_spec(name)), cost(name)
        assert sum(p.params for p in parts) == exact.params, name
        assert all(v >= 0 for p in parts for v in p.features), name
    # without squeeze-excite every multiply-add of the network is in a MACs feature
    macs = [FEATURES.index(n) for n in ("pw_macs", "kxk_macs", "dw_macs")]
    for name in ("resnet50", "mobilenetv2", "efficientnet_lite0"):
        assert sum(p.features[i] for p in network_parts(get_spec(name)) for i in macs) == cost(name).macs, name
    batch8 = network_parts(get_spec("efficientnet_b0"), ctx=Context(batch=8))
    batch1 = network_parts(get_spec("efficientnet_b0"))
    assert batch8[1].features[macs[0]] == 8 * batch1[1].features[macs[0]]  # MACs grow with the batch ...
    assert batch8[1].features[FEATURES.index("weights")] == batch1[1].features[FEATURES.index("weights")]  # not these


def test_prediction_takes_milliseconds_and_no_torch():
    profile = _profile()
    times = []
    for _ in range(7):
        start = time.perf_counter()
        predict_latency("efficientnet_b0", profile)
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.010
    code = (
        "import sys, effnet; from effnet.latency.predict import predict_latency; "
        "from effnet.latency.profile import load_profile; import effnet.config.serving; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(Path(effnet_src()))})


def effnet_src() -> Path:
    import effnet

    return Path(effnet.__file__).parents[1]


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.update(format=99), "profile format 99"),
        (lambda d: d["model"]["coefficients"].update(pw_macs=-1.0), "coefficient of pw_macs"),
        (lambda d: d["model"]["coefficients"].update(bogus=1.0), "does not compute: bogus"),
        (lambda d: d["fingerprint"].update(batch="one"), "fingerprint.batch"),
        (lambda d: d.update(engines=[{"precision": "fp32", "batch": 1, "ms": {"tensorrt": 1.0}}]), "engines among"),
        (lambda d: d.pop("model"), "model.coefficients"),
    ],
)
def test_a_damaged_profile_is_one_line(tmp_path, mutate, needle):
    data = _profile().to_dict()
    mutate(data)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BadFile, match=needle):
        load_profile(path)


def test_unreadable_oversized_or_missing_profiles_are_one_line(tmp_path, capsys):
    (tmp_path / "half.json").write_text(json.dumps(_profile().to_dict())[:300])
    (tmp_path / "big.json").write_bytes(b" " * (MAX_JSON_BYTES + 1))
    for name, needle in (("half.json", "not valid JSON"), ("big.json", "at most"), ("none.json", "not found")):
        assert main(["info", "efficientnet_b0", "--profile", str(tmp_path / name)]) == 2
        _one_line(capsys.readouterr().err, needle)


def test_a_profile_from_another_machine_is_refused_unless_accepted(tmp_path, capsys):
    path = save_profile(_profile(), tmp_path / "p.json")
    with pytest.raises(BadFile, match="cpu model 'Intel|cpu model '") as info:
        load_profile(path, cpuinfo=OTHER_CPU)
    assert "Some Other CPU" in str(info.value) and "--accept-foreign-profile" in str(info.value)
    assert load_profile(path, cpuinfo=OTHER_CPU, accept_foreign=True).fingerprint.engine == "onnxruntime"
    with pytest.raises(BadFile, match="threads"):
        load_profile(path, threads=current_fingerprint().threads + 1)
    data = _profile().to_dict()
    data["fingerprint"]["versions"]["onnxruntime"] = "0.0.1"
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert main(["info", "efficientnet_b0", "--profile", str(tmp_path / "old.json")]) == 2
    _one_line(capsys.readouterr().err, "onnxruntime 0.0.1 (here ")
    assert main(["info", "efficientnet_b0", "--profile", str(tmp_path / "old.json"), "--accept-foreign-profile"]) == 0
    out = capsys.readouterr().out
    assert "latency_ms" in out and "predicted on onnxruntime fp32, batch 1, " in out


def test_info_json_carries_each_stage_latency(tmp_path, capsys):
    path = save_profile(_profile(), tmp_path / "p.json")
    assert main(["info", "efficientnet_b0", "--profile", str(path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["latency"]["ms"] == pytest.approx(sum(p["latency_ms"] for p in data["parts"]), rel=1e-3)


def test_bad_arguments_to_the_predictor_are_one_line():
    with pytest.raises(WrongType, match="profile must be"):
        predict_latency("efficientnet_b0", {"model": {}})
    with pytest.raises(InvalidValue, match="measured at batch 1, not 32"):
        predict_latency("efficientnet_b0", _profile(), batch=32)
    floor = _profile().model.coefficient("call")
    with pytest.raises(InvalidValue, match="below anything measurable"):
        check_latency_budget(floor / 2, _profile())
    assert check_latency_budget(10.0, _profile()) == 10.0


def test_fit_recovers_a_known_model_and_its_network_scale():
    truth = [1e-6 * (1 + i % 3) for i in range(len(FEATURES))]
    specs = [scale("efficientnet_b0", width=w, resolution=r) for w in (0.5, 1.0, 1.5) for r in (128, 224, 320)]
    specs += [scale(n, width=w) for n in ("resnet50", "mobilenetv2", "efficientnet_v2_s") for w in (0.5, 1.0, 2.0)]
    blocks = []
    for spec in specs:
        for part in network_parts(spec):
            if any(part.features):
                blocks.append(Sample(part.features, sum(c * v for c, v in zip(truth, part.features, strict=True))))
    nets, weights = [], FEATURES.index("weights")
    for spec in specs[:9] + specs[-3:]:
        total = tuple(map(sum, zip(*(p.features for p in network_parts(spec)), strict=True)))
        ms = 1.2 * sum(c * v for c, v in zip(truth, total, strict=True)) + 2e-6 * total[weights] + 0.5
        nets.append(Sample(total, ms, network=True))
    fit = fit_model(blocks + nets, weights)
    assert fit.scale == pytest.approx(1.2, rel=1e-3) and fit.offset_ms == pytest.approx(0.5, rel=1e-2)
    assert fit.weights_ms == pytest.approx(2e-6, rel=1e-2)
    assert max(abs(e) for e in cross_validate(blocks + nets, weights_feature=weights)) < 1e-3
    plain = fit_model(blocks + nets)  # no cost per weight: the scale and offset take what they can, not all
    assert plain.weights_ms == 0.0 and max(abs(plain.predict(n) / n.ms - 1) for n in nets) > 1e-2
    with pytest.raises(InvalidValue, match="at least"):
        fit_model(blocks[:3])


def test_default_runtime_follows_the_profiled_engine_table(tmp_path, monkeypatch):
    assert nearest_engine({1: "openvino", 8: "onnxruntime", 32: "openvino"}, 6) == "onnxruntime"
    assert nearest_engine({}, 6) is None
    fastest = {1: "openvino", 32: "onnxruntime"}
    assert default_backend("cpu", "fp32", 1, fastest=fastest) == "openvino"
    assert default_backend("cpu", "fp32", 64, fastest=fastest) == "onnxruntime"  # the measured choice, not 4's bound
    assert default_backend("cpu", "fp32", 64, openvino=False, fastest=fastest) == "onnxruntime"
    assert default_backend("cpu", "bf16", 1, fastest=fastest) == "openvino"
    rows = (
        EngineTiming("fp32", 1, (("onnxruntime", 5.0), ("openvino", 4.0))),
        EngineTiming("fp32", 32, (("onnxruntime", 100.0), ("openvino", 120.0))),
    )
    monkeypatch.setenv("EFFNET_PROFILES", str(tmp_path))
    assert fastest_engines("fp32", threads=3) == {}
    profile = _profile(threads=3, engines=rows)
    path = save_profile(profile)
    assert path == default_profile_path(profile.fingerprint) and path.is_relative_to(tmp_path)
    (path.parent / "damaged.json").write_text("{")  # skipped, not fatal
    assert fastest_engines("fp32", threads=3) == fastest
    assert fastest_engines("fp32", threads=4) == {}  # profiled with other threads: not this set-up


def test_default_runtime_serves_with_the_profiled_engine(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    from effnet.models.efficientnet import EfficientNet
    from effnet.serving.runtimes import optimize_for_inference

    monkeypatch.setenv("EFFNET_PROFILES", str(tmp_path))
    rows = (EngineTiming("fp32", 1, (("onnxruntime", 5.0), ("openvino", 4.0))),)
    save_profile(_profile(threads=torch.get_num_threads(), engines=rows))
    model = EfficientNet(scale("efficientnet_b0", width=0.25, resolution=64)).eval()
    run = optimize_for_inference(model, torch.randn(1, 3, 64, 64))
    assert run.backend == "openvino"  # without the profile: onnxruntime at batch 1


def test_profile_flags_refuse_bad_values(capsys):
    for argv, needle in (
        (["--blocks", "5"], "--blocks"),
        (["--engine-batches", "1,x"], "--engine-batches"),
        (["--precision", "int8"], "--precision"),
        (["--device", "cuda"], "--device"),
    ):
        try:
            status = main(["profile", *argv])
        except SystemExit as exc:  # argparse's usage error
            status = exc.code
        assert status == 2 and needle in capsys.readouterr().err


@pytest.mark.slow
def test_profile_a_tiny_set_for_real(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "profile.json"
    argv = ["profile", "--runtime", "onnxruntime", "--blocks", "40", "--networks", "3", "--engine-batches", "none"]
    assert main([*argv, "--output", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    profile = load_profile(out)
    assert summary["profile"] == str(out) and summary["quality"]["blocks"] == 40
    assert profile.fingerprint.engine == "onnxruntime" and profile.model.scale > 0
    estimate = predict_latency("efficientnet_b0", profile)
    assert 0 < estimate.ms < 60_000 and estimate.parts[0].name == "stem"


def test_units_are_served_in_groups_that_fit_the_memory():
    """A profile holds only as many served units as fit its share of memory (batch 32 of 132 units held at once
    was killed for memory): groups are consecutive, cover every unit once, and stay under the room unless a unit is
    alone in its group."""
    from effnet.serving.profile import _groups, sample_units, unit_bytes

    units = sample_units(0, 40, 4, 3e9 / 32)
    sizes = [unit_bytes(u, 32) for u in units]
    room = sorted(sizes)[len(sizes) // 2] * 3
    groups = _groups(units, 32, room)
    assert [i for g in groups for i in g] == list(range(len(units)))
    assert all(len(g) == 1 or sum(sizes[i] for i in g) <= room for g in groups)
    assert 1 < len(groups) < len(units)
    assert unit_bytes(units[-1], 32) > 8 * unit_bytes(units[-1], 1)  # activations grow with the batch, weights not


def test_a_large_batch_profile_times_networks_of_the_size_it_predicts():
    """At batch 32 the blocks stay within MAX_UNIT_MACS per call, but the networks reach MIN_NETWORK_MACS per image:
    capped per call, they were a quarter of B0 and the fitted network terms predicted B0's family 6-35 % low."""
    from effnet.serving.profile import MAX_UNIT_MACS, MIN_NETWORK_MACS, sample_units, unit_caps

    assert unit_caps(1) == (MAX_UNIT_MACS, MAX_UNIT_MACS)  # batch 1: one cap, as before
    per_image, network_cap = unit_caps(32)
    assert per_image == MAX_UNIT_MACS / 32 and network_cap == MIN_NETWORK_MACS
    units = sample_units(0, 40, 12, per_image, network_cap)
    networks = [u.macs() for u in units if u.block is None]
    blocks = [u.macs() for u in units if u.block is not None]
    assert len(networks) == 12 and len(blocks) == 40
    assert max(blocks) <= per_image < max(networks) <= MIN_NETWORK_MACS
    assert sample_units(0, 40, 12, per_image) != units  # the default keeps one cap for both
    assert all(u.macs() <= per_image for u in sample_units(0, 40, 12, per_image))
