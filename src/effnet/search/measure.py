"""Measured latency, throughput and peak memory of one network on one device (step 2's hardware measurement).

Latency is the median over ``repeats`` timed forward passes of one batch after ``warmup`` untimed ones
(``torch.inference_mode``, eval mode, random input); throughput = batch / median latency. Peak memory on CUDA is
``torch.cuda.max_memory_allocated`` over the timed runs (weights + input + activations held by the caching
allocator). On CPU each network is measured in its own Python subprocess (:class:`Measurer` keeps it for the
network's later measurements, the mark reset before each): just before the model is built the
kernel's RSS high-water mark is reset (``/proc/self/clear_refs``), and peak memory is the high-water mark after the
timed runs (``VmHWM``) minus the RSS before the build (``VmRSS``): weights + input + activations + allocator
overhead, excluding the interpreter and the torch import. Linux only. With a ``runtime`` other than ``eager``
(:func:`effnet.optimize_for_inference`) the set-up is untimed and the mark is reset again once the runtime is
ready, so the set-up's own peak is not counted. Importing this module does not import torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from effnet.config.serving import RUNTIMES, check_precision
from effnet.errors import InvalidValue
from effnet.machine import bound_count, usable_cpus
from effnet.memory import estimate_memory
from effnet.search.processes import die_with_parent
from effnet.serving.hardware import check_device_memory
from effnet.specs import NetworkSpec

__all__ = ["Measurement", "Measurer", "measure"]

_CHILD = "from effnet.search.measure import _cpu_child; _cpu_child()"


@dataclass(frozen=True)
class Measurement:
    """Measured speed and memory of one model on one device at one batch size."""

    device: str
    batch: int
    latency_ms: float
    throughput: float
    peak_memory_mb: float
    memory_method: str
    latencies_ms: tuple[float, ...] = ()
    runtime: str = "eager"
    precision: str = "fp32"


def _measure_cuda(
    spec: NetworkSpec, batch: int, warmup: int, repeats: int, device: str, runtime: str, precision: str = "fp32"
) -> Measurement:
    import torch  # lazy: effnet scale without --device stays torch-free

    from effnet.models.efficientnet import EfficientNet  # lazy: imports torch, as above

    if not torch.cuda.is_available():
        raise InvalidValue("--device cuda: no CUDA device is available to this process")
    dev = torch.device(device)
    model = EfficientNet(spec).to(dev).eval()
    x = torch.randn(batch, spec.in_chans, spec.resolution, spec.resolution, device=dev)
    run = _runner(model, x, runtime, precision)
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            run(x)
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        for _ in range(repeats):
            start = time.perf_counter()
            run(x)
            torch.cuda.synchronize(dev)
            times.append((time.perf_counter() - start) * 1e3)
        peak = torch.cuda.max_memory_allocated(dev) / 2**20
    del model, x, run
    torch.cuda.empty_cache()
    median = statistics.median(times)
    return Measurement(
        device, batch, median, batch * 1e3 / median, peak, "cuda max_memory_allocated", tuple(times), runtime, precision
    )


def _runner(model: Any, x: Any, runtime: str, precision: str = "fp32") -> Callable[[Any], Any]:
    """The callable a measurement times: the eval-mode module (``eager`` fp32) or :func:`optimize_for_inference`'s
    (int8 calibrated on random inputs: the speed, not the accuracy, is measured)."""
    if runtime == "eager" and precision == "fp32":
        return model
    from effnet.serving.runtimes import optimize_for_inference  # lazy: imports torch; torch-free scale

    calibration = x.new_empty((8, *x.shape[1:])).normal_() if precision == "int8" else None
    return optimize_for_inference(model, example=x, runtime=runtime, precision=precision, calibration=calibration)


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def _reset_high_water_mark() -> bool:
    """Set the process's RSS high-water mark (VmHWM) to its current RSS; False where Linux cannot (< 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _return_free_heap() -> None:
    """Hand memory freed by the set-up back to the OS (glibc ``malloc_trim``), so RSS counts live memory only."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS may keep freed set-up memory
        pass


def _timed(run: Callable[[Any], Any], x: Any, warmup: int, repeats: int) -> list[float]:
    import torch  # lazy: effnet scale without --device stays torch-free

    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            run(x)
        for _ in range(repeats):
            start = time.perf_counter()
            run(x)
            times.append((time.perf_counter() - start) * 1e3)
    return times


def _cpu_child() -> None:
    """Subprocess body of CPU measurements of one network: the first stdin line is a JSON job (the model is built
    and measured once); every further line measures it again, the high-water mark reset first; one JSON result line
    each; EOF ends it. The process dies with its parent."""
    job = json.loads(sys.stdin.readline())
    die_with_parent(int(job["parent"]))
    import torch  # lazy: effnet scale without --device stays torch-free

    from effnet.models.efficientnet import EfficientNet  # lazy: imports torch, as above

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    spec = NetworkSpec.from_dict(job["spec"])
    if _reset_high_water_mark():
        method = "VmHWM - VmRSS before model build (high-water mark reset), fresh process"
    else:
        method = "VmHWM - VmRSS before model build (high-water mark NOT resettable: may include import peak)"
    rss_before = _status_kib("VmRSS")
    torch.manual_seed(0)
    model = EfficientNet(spec).eval()
    x = torch.randn(job["batch"], spec.in_chans, spec.resolution, spec.resolution)
    run = _runner(model, x, job["runtime"], job.get("precision", "fp32"))
    if job["runtime"] != "eager" or job.get("precision", "fp32") != "fp32":
        del model  # the runtime holds what it runs; its set-up (BN folding, export, compilation) is not serving memory
        gc.collect()
        _return_free_heap()
        if _reset_high_water_mark():
            method += "; reset again after the runtime's set-up, whose own peak is not counted"
    while True:
        times = _timed(run, x, job["warmup"], job["repeats"])
        peak = _status_kib("VmHWM")
        result = {"times": times, "memory": (peak - rss_before) / 1024, "method": method}
        print(json.dumps({**result, "threads": torch.get_num_threads()}), flush=True)
        if not sys.stdin.readline():
            return
        _reset_high_water_mark()  # a later round: its own peak, the model already built


class _CpuChild:
    """One network's measuring subprocess (:func:`_cpu_child`), kept alive between its measurements."""

    def __init__(self, spec: NetworkSpec, job: dict[str, Any]) -> None:
        if not sys.platform.startswith("linux"):
            raise InvalidValue("--device cpu measures memory through /proc/self (VmHWM); it needs Linux")
        self.name, self.errors = spec.name, tempfile.TemporaryFile(mode="w+")  # closed by close()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, text=True
        )
        self._send(json.dumps({**job, "spec": spec.to_dict(), "parent": os.getpid()}))
        self.started = False

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # a dead child is reported by measure()
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()

    def measure(self) -> dict[str, Any]:
        """One more measurement: ``{"times", "memory", "method", "threads"}``."""
        if self.started:
            self._send("again")
        self.started = True
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.errors.seek(0)
            tail = self.errors.read().strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"measuring {self.name} on cpu failed (exit {code}): {tail[0]}")
        return dict(json.loads(line))

    def close(self) -> None:
        """End the subprocess (EOF, then a kill if it lingers) and drop its error log."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.errors.close()


def _check(batch: int, warmup: int, repeats: int, runtime: str, precision: str, device: str) -> str:
    """The device kind (``cpu`` or ``cuda``) once every setting is valid; one-line errors naming the flag otherwise."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InvalidValue(f"--batch must be an integer >= 1, got {batch!r}")
    if warmup < 0 or repeats < 1:
        raise InvalidValue(f"need --warmup >= 0 and --repeats >= 1, got {warmup}, {repeats}")
    if runtime not in RUNTIMES:
        raise InvalidValue(f"--runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    check_precision(precision, runtime)
    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda"):
        raise InvalidValue(f"--device must be cpu or cuda[:N], got {device!r}")
    if kind == "cuda" and runtime in ("onnxruntime", "openvino"):
        raise InvalidValue(f"--runtime {runtime} runs on the CPU; measure it with --device cpu")
    return kind


class Measurer:
    """Measures networks on one device, as often as asked: ``measurer(spec) -> Measurement``.

    On the CPU each network gets its own subprocess at its first measurement, kept until :meth:`close` (or the end
    of a ``with`` block): later measurements of it (the rounds of ``effnet scale``) pay neither the import of torch
    nor the model's build and the runtime's set-up again. Settings as in :func:`measure`.
    """

    def __init__(
        self,
        device: str = "cpu",
        batch: int = 1,
        *,
        warmup: int = 2,
        repeats: int = 5,
        threads: int | None = None,
        runtime: str = "eager",
        precision: str = "fp32",
    ) -> None:
        self.kind = _check(batch, warmup, repeats, runtime, precision, device)
        if threads:
            threads = bound_count("--threads", threads, usable_cpus(), f"{usable_cpus()} usable CPU cores")
        self.device, self.batch, self.warmup, self.repeats = device, batch, warmup, repeats
        self.threads, self.runtime, self.precision = threads, runtime, precision
        self._children: dict[NetworkSpec, _CpuChild] = {}

    def __call__(self, spec: NetworkSpec) -> Measurement:
        if self.kind == "cuda":
            check_device_memory(estimate_memory(spec, self.batch), self.device)  # before the batch is allocated
            args = (spec, self.batch, self.warmup, self.repeats, self.device, self.runtime, self.precision)
            return _measure_cuda(*args)
        if spec not in self._children:  # checked once, before its process allocates the batch
            check_device_memory(estimate_memory(spec, self.batch), self.device)
            job = {"batch": self.batch, "warmup": self.warmup, "repeats": self.repeats, "threads": self.threads}
            job.update(runtime=self.runtime, precision=self.precision)
            self._children[spec] = _CpuChild(spec, job)
        out = self._children[spec].measure()
        times, median = out["times"], statistics.median(out["times"])
        return Measurement(
            "cpu",
            self.batch,
            median,
            self.batch * 1e3 / median,
            out["memory"],
            out["method"] + "; later rounds in the same process, the mark reset first",
            tuple(times),
            self.runtime,
            self.precision,
        )

    def close(self) -> None:
        """End every measuring subprocess."""
        for child in self._children.values():
            child.close()
        self._children.clear()

    def __enter__(self) -> Measurer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def measure(
    spec: NetworkSpec,
    device: str = "cpu",
    batch: int = 1,
    *,
    warmup: int = 2,
    repeats: int = 5,
    threads: int | None = None,
    runtime: str = "eager",
    precision: str = "fp32",
) -> Measurement:
    """Median latency (ms per batch), throughput (images/s) and peak memory (MiB) of ``spec`` on ``device``.

    ``runtime`` is how the model runs: ``eager`` (the module) or any runtime of
    :func:`effnet.optimize_for_inference` (set-up — BN folding, export, compilation — happens before the warm-up
    and is not timed; on CPU its own memory peak is not counted). ``onnxruntime`` / ``openvino`` run on the CPU only.
    ``precision`` (fp32, bf16, int8) as in :func:`effnet.optimize_for_inference`. One measurement in a fresh
    process on the CPU; :class:`Measurer` measures again and again.
    """
    with Measurer(
        device, batch, warmup=warmup, repeats=repeats, threads=threads, runtime=runtime, precision=precision
    ) as measurer:
        return measurer(spec)
