"""Inference runtimes and BatchNorm folding: every fast path equals eager, and the user's model is untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from effnet import create_model, get_spec
from effnet.config.serving import RUNTIMES
from effnet.models.fold import count_batchnorm, fold_batchnorm
from effnet.serving.runtimes import optimize_for_inference

TOL = 1e-4


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine params, so folding is actually exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model


def _tiny_spec(**changes: object):
    spec = get_spec("efficientnet_b0")
    return spec.replace(stages=spec.stages[:3], head_channels=128, num_classes=10, **changes)


@pytest.fixture(scope="module")
def b0() -> nn.Module:
    torch.manual_seed(0)
    return _randomize_bn(create_model("efficientnet_b0")).eval()


@pytest.fixture(scope="module")
def x64() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(3, 3, 64, 64)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert list(after) == list(before)
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    assert all(p.is_contiguous() for p in model.parameters()), "user's weights were converted to channels_last"
    assert all(p.requires_grad for p in model.parameters())


def _max_diff(a: object, b: object) -> float:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape
        return (a - b).abs().max().item()
    assert isinstance(a, (list, tuple)) and len(a) == len(b)
    return max(_max_diff(p, q) for p, q in zip(a, b, strict=True))


def test_runtime_and_precision_names_are_checked() -> None:
    assert set(RUNTIMES) == {"default", "compile", "eager", "fused", "onnxruntime", "openvino"}
    with pytest.raises(ValueError, match="runtime must be one of"):
        optimize_for_inference(nn.Identity(), runtime="tensorrt")
    with pytest.raises(ValueError, match="precision must be one of"):
        optimize_for_inference(nn.Identity(), precision="fp8")
    with pytest.raises(ValueError, match="precision bf16 runs on runtime"):
        optimize_for_inference(nn.Identity(), runtime="onnxruntime", precision="bf16")
    with pytest.raises(ValueError, match="precision int8 runs on runtime"):
        optimize_for_inference(nn.Identity(), runtime="fused", precision="int8")


def test_fold_batchnorm_exact_and_pure(b0: nn.Module, x64: torch.Tensor) -> None:
    before = _snapshot(b0)
    b0.train()
    folded = fold_batchnorm(b0)
    assert b0.training, "folding changed the user's train/eval mode"
    b0.eval()
    _assert_unchanged(b0, before)
    assert count_batchnorm(b0) == 49 and count_batchnorm(folded) == 0
    assert not folded.training
    assert isinstance(folded.stem.bn, nn.Identity) and folded.stem.conv.bias is not None
    with torch.no_grad():
        diff = _max_diff(folded(x64), b0(x64))
    assert diff < 1e-5


def test_fold_batchnorm_tf_same_padding_and_torchvision_sequential(x64: torch.Tensor) -> None:
    from torchvision.models import mobilenet_v3_small

    torch.manual_seed(2)
    tf = _randomize_bn(create_model(_tiny_spec(), padding="tf_same")).eval()
    tv = _randomize_bn(mobilenet_v3_small(num_classes=10)).eval()
    for model in (tf, tv):
        folded = fold_batchnorm(model)
        assert count_batchnorm(folded) == 0
        with torch.no_grad():
            assert _max_diff(folded(x64), model(x64)) < 1e-5


def test_eager_runtime(b0: nn.Module, x64: torch.Tensor) -> None:
    run = optimize_for_inference(b0, runtime="eager")
    out = run(x64)
    assert run.backend == "eager" and not out.requires_grad
    with torch.no_grad():
        assert torch.equal(out, b0(x64))


@pytest.mark.parametrize("runtime", ["fused", "onnxruntime", "openvino", "default"])
def test_fast_runtime_equals_eager(runtime: str, b0: nn.Module, x64: torch.Tensor) -> None:
    before = _snapshot(b0)
    run = optimize_for_inference(b0, example=x64[:1], runtime=runtime)
    assert run.backend == (runtime if runtime != "default" else "onnxruntime")
    with torch.no_grad():
        ref = b0(x64)
    out = run(x64)  # a different batch size than the example: the batch axis is dynamic
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert _max_diff(out, ref) < TOL
    _assert_unchanged(b0, before)


@pytest.mark.parametrize("runtime", ["fused", "onnxruntime", "openvino"])
def test_fast_runtime_features_model(runtime: str, x64: torch.Tensor) -> None:
    torch.manual_seed(3)
    model = _randomize_bn(create_model(_tiny_spec(), features_only=True)).eval()
    run = optimize_for_inference(model, runtime=runtime)
    with torch.no_grad():
        ref = model(x64)
    out = run(x64)
    assert isinstance(out, list) and len(out) == len(ref)
    assert all(o.is_contiguous() for o in out)
    assert _max_diff(out, ref) < TOL


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_engine_new_resolution_and_batch_reexports(runtime: str, b0: nn.Module) -> None:
    run = optimize_for_inference(b0, runtime=runtime)
    for size, batch in ((64, 2), (80, 2), (64, 5)):
        x = torch.randn(batch, 3, size, size)
        with torch.no_grad():
            assert _max_diff(run(x), b0(x)) < TOL


def test_default_falls_back_when_compile_fails(monkeypatch: pytest.MonkeyPatch, x64: torch.Tensor) -> None:
    def broken_compile(*args: object, **kwargs: object) -> object:
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken_compile)
    torch.manual_seed(4)
    model = _randomize_bn(create_model(_tiny_spec())).eval()
    run = optimize_for_inference(model, runtime="compile")
    assert run.backend == "fused" and "no compiler here" in run.fallback_reason
    with torch.no_grad():
        assert _max_diff(run(x64), model(x64)) < TOL


def test_default_falls_back_when_first_call_fails(monkeypatch: pytest.MonkeyPatch, x64: torch.Tensor) -> None:
    def lazy_broken_compile(module: nn.Module, **kwargs: object) -> object:
        def call(x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("inductor crashed")

        return call

    monkeypatch.setattr(torch, "compile", lazy_broken_compile)
    torch.manual_seed(5)
    model = _randomize_bn(create_model(_tiny_spec())).eval()
    run = optimize_for_inference(model, runtime="compile")
    with pytest.warns(UserWarning, match="inductor crashed"):
        out = run(x64)
    assert run.backend == "fused"
    with torch.no_grad():
        assert _max_diff(out, model(x64)) < TOL


@pytest.mark.slow
def test_default_compiled_equals_eager_and_pads_tail_batch(x64: torch.Tensor) -> None:
    torch.manual_seed(6)
    model = _randomize_bn(create_model(_tiny_spec())).eval()
    before = _snapshot(model)
    run = optimize_for_inference(model, example=x64, runtime="compile")
    assert run.backend == "compile", run.fallback_reason
    with torch.no_grad():
        ref = model(x64)
    assert _max_diff(run(x64), ref) < TOL
    # A smaller tail batch is padded up to the compiled size: same numbers, no recompilation.
    from torch._dynamo.utils import counters

    frames = counters["stats"]["unique_graphs"]
    assert _max_diff(run(x64[:2]), ref[:2]) < TOL
    assert counters["stats"]["unique_graphs"] == frames
    _assert_unchanged(model, before)


def test_default_picks_the_engine_by_batch_size(monkeypatch: pytest.MonkeyPatch, x64: torch.Tensor) -> None:
    import importlib.util

    from effnet.config.serving import CPU_FP32_CROSSOVER

    torch.manual_seed(7)
    model = _randomize_bn(create_model(_tiny_spec())).eval()
    run = optimize_for_inference(model)  # runtime="default"
    small, large = x64[:1], x64.repeat(CPU_FP32_CROSSOVER[-1][0] // 3 + 1, 1, 1, 1)
    with torch.no_grad():
        assert _max_diff(run(small), model(small)) < TOL and run.backend == CPU_FP32_CROSSOVER[0][1]
        assert _max_diff(run(large), model(large)) < TOL and run.backend == "openvino"
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real_find_spec(name, *a)
    )
    run = optimize_for_inference(model, example=large)
    assert run.backend == "onnxruntime"  # without OpenVINO, fp32 stays on ONNX Runtime


def test_engines_are_read_only_and_the_runner_reads_them(x64: torch.Tensor) -> None:
    from effnet.serving.engines import FusedEngine
    from effnet.serving.select import select_engine

    torch.manual_seed(8)
    model = _randomize_bn(create_model(_tiny_spec())).eval()
    engine = select_engine(model, "cpu", "fused", "fp32")
    assert isinstance(engine, FusedEngine) and (engine.backend, engine.precision) == ("fused", "fp32")
    run = optimize_for_inference(model, runtime="fused")
    for obj, name in ((engine, "backend"), (engine, "precision"), (run, "backend"), (run, "fallback_reason")):
        with pytest.raises(AttributeError):
            setattr(obj, name, "eager")
    assert repr(run) == "InferenceRunner(runtime='fused', backend='fused', precision='fp32')"
    with torch.no_grad():
        assert _max_diff(engine(x64), model(x64)) < TOL


def test_default_backend_table() -> None:
    from effnet.config.serving import default_backend

    assert default_backend("cpu", "fp32", 1) == "onnxruntime"
    assert default_backend("cpu", "fp32", 64) == "openvino"
    assert default_backend("cpu", "fp32", 64, openvino=False) == "onnxruntime"
    assert default_backend("cpu", "bf16", 1) == default_backend("cpu", "int8", 1) == "openvino"
    assert default_backend("cuda", "fp32", 1) == default_backend("cuda", "bf16", 8) == "compile"
    with pytest.raises(ValueError, match="int8 runs on the CPU"):
        default_backend("cuda", "int8", 1)


def test_cpu_bf16_detection_from_cpuinfo() -> None:
    from effnet.latency.fingerprint import cpu_flags
    from effnet.serving.hardware import cpu_has_native_bf16

    zen4 = "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx512_vnni\n\nprocessor\t: 1\n"
    skylake = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n"
    spr = "flags : avx512f amx_bf16 amx_tile\n"
    assert "avx512_bf16" in cpu_flags(zen4)
    assert cpu_has_native_bf16(zen4) and cpu_has_native_bf16(spr)
    assert not cpu_has_native_bf16(skylake) and not cpu_has_native_bf16("no flags here")


def test_bf16_refused_without_native_hardware(monkeypatch: pytest.MonkeyPatch, b0: nn.Module) -> None:
    from effnet.serving import hardware

    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda cpuinfo=None: False)
    with pytest.raises(ValueError, match="AVX512_BF16 or AMX"):
        optimize_for_inference(b0, precision="bf16")


@pytest.mark.parametrize("runtime", ["openvino", "fused", "default"])
def test_bf16_runtimes_track_fp32(runtime: str, b0: nn.Module, x64: torch.Tensor) -> None:
    from effnet.serving.hardware import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16 (AVX512_BF16/AMX)")
    run = optimize_for_inference(b0, example=x64, runtime=runtime, precision="bf16")
    assert run.precision == "bf16" and run.backend == ("openvino" if runtime == "default" else runtime)
    with torch.no_grad():
        ref = b0(x64)
    out = run(x64)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert _max_diff(out, ref) <= 0.05 * ref.abs().max().item() + 1e-6  # bf16 keeps ~3 significant digits


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_int8_calibrates_once_and_refuses_other_shapes(runtime: str, b0: nn.Module, x64: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="needs calibration images"):
        optimize_for_inference(b0, runtime=runtime, precision="int8")
    calibration = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    run = optimize_for_inference(b0, runtime=runtime, precision="int8", calibration=calibration)
    out = run(x64)
    assert out.shape == (3, 1000) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="calibrated for inputs"):
        run(torch.randn(1, 3, 80, 80))


def test_default_without_cpu_engines_is_compile(monkeypatch: pytest.MonkeyPatch, x64: torch.Tensor) -> None:
    import importlib.util

    torch.manual_seed(7)
    model = _randomize_bn(create_model(_tiny_spec())).eval()
    run = optimize_for_inference(model)  # runtime="default"
    assert (run.runtime, run.backend) == ("default", "onnxruntime")
    with torch.no_grad():
        assert _max_diff(run(x64), model(x64)) < TOL
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("onnxruntime", "openvino") else real_find_spec(name, *a),
    )
    monkeypatch.setattr(torch, "compile", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no compiler")))
    assert optimize_for_inference(model).backend == "fused"  # compile path, which falls back here


def test_cli_serving_flags_come_from_config() -> None:
    import argparse

    from effnet.cli.predict import add_arguments
    from effnet.config import serving as cfg

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    actions = {a.dest: a for a in parser._actions}
    assert actions["runtime"].choices == cfg.RUNTIMES and actions["runtime"].default == cfg.DEFAULT_RUNTIME
    assert actions["precision"].choices == cfg.PRECISIONS and actions["precision"].default == cfg.DEFAULT_PRECISION
    assert actions["calibration_size"].default == cfg.DEFAULT_CALIBRATION_SIZE


@pytest.mark.parametrize("runtime, precision", [("openvino", "int8"), ("openvino", "bf16")])
def test_scale_measures_the_served_engine_and_precision(runtime: str, precision: str) -> None:
    from effnet.search.measure import measure
    from effnet.serving.hardware import cpu_has_native_bf16

    if precision == "bf16" and not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16 (AVX512_BF16/AMX)")
    spec = get_spec("efficientnet_b0").replace(resolution=32, width=0.25, depth=0.25)
    m = measure(spec, "cpu", 2, warmup=1, repeats=1, threads=1, runtime=runtime, precision=precision)
    assert (m.runtime, m.precision) == (runtime, precision) and m.latency_ms > 0


_SIGNAL_AFTER_ENGINES = r"""
import gc, signal, sys, threading
import torch
from effnet import create_model, get_spec
from effnet.serving.runtimes import optimize_for_inference

spec = get_spec("efficientnet_b0")
model = create_model(spec.replace(stages=spec.stages[:2], head_channels=64, num_classes=10)).eval()
precision = sys.argv[1]
calibration = torch.randn(4, 3, 32, 32) if precision == "int8" else None
run = optimize_for_inference(model, runtime="openvino", precision=precision, calibration=calibration)
for size in (32, 48, 64) if precision == "fp32" else (32,):  # an engine per input size
    for batch in (1, 2):  # a compiled model per batch size
        run(torch.randn(batch, 3, size, size))
del run  # its engines are freed first made, first freed: the order that used to leave a freed signal stack
gc.collect()
signal.signal(signal.SIGUSR1, lambda *_: None)  # Python's handlers run on the thread's alternate signal stack
signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
print("handled")
"""


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_openvino_engines_leave_signal_handling_intact(precision: str) -> None:
    """Engines freed in the order they were made, then a signal: the process must live (it died with SIGSEGV when
    every engine had its own openvino.Core, whose CPU plugin swaps the thread's sigaltstack)."""
    import subprocess
    import sys

    pytest.importorskip("openvino")
    if precision == "int8":
        pytest.importorskip("nncf")
    proc = subprocess.run(
        [sys.executable, "-c", _SIGNAL_AFTER_ENGINES, precision],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("handled"), (proc.returncode, proc.stderr[-2000:])
