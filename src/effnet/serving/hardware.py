"""What the hardware can run natively, detected at run time (never assumed): bf16 on CPU and CUDA.

Torch-free except :func:`require_native_bf16` / :func:`require_device` for CUDA, which ask torch only then.
"""

from __future__ import annotations

from effnet.config.serving import ServingUnavailable
from effnet.errors import InvalidValue
from effnet.latency.fingerprint import cpu_flags

__all__ = ["BF16_CPU_FLAGS", "cpu_has_native_bf16", "require_native_bf16", "require_device"]

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""``/proc/cpuinfo`` flags of a CPU that computes bf16 dot products in hardware (Zen 4+, Cooper Lake, SPR+)."""


def _openvino_says_bf16() -> bool | None:
    """OpenVINO's CPU plugin's own answer (``BF16`` among its optimization capabilities), None without OpenVINO."""
    from effnet.serving.openvino import openvino_core  # lazy: that module imports torch; this one stays torch-free

    try:
        return "BF16" in openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except (ServingUnavailable, RuntimeError):  # no openvino package; no CPU plugin
        return None


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU has AVX512_BF16 or AMX-BF16 (from ``cpuinfo``, else ``/proc/cpuinfo``, else OpenVINO)."""
    flags = cpu_flags(cpuinfo)
    if flags:
        return any(f in flags for f in BF16_CPU_FLAGS)
    return bool(cpuinfo is None and _openvino_says_bf16())


def require_native_bf16(device: str) -> None:
    """Return when ``device`` (``cpu``, ``cuda[:N]``) computes bf16 natively; else a one-line ``ServingUnavailable``."""
    if device == "cpu":
        if not cpu_has_native_bf16():
            raise ServingUnavailable(
                "precision bf16 needs a CPU with AVX512_BF16 or AMX (this one has neither); "
                "use --precision fp32 or int8"
            )
        return
    import torch  # lazy: this module stays torch-free for the CLI's flag checks

    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return
    raise ServingUnavailable(f"precision bf16 needs native bf16 on {device}, which it lacks; use --precision fp32")


def require_device(device: str) -> str:
    """``device`` if this machine has it (``cpu``, ``cuda``, ``cuda:N``); else a one-line ``ServingUnavailable``."""
    if device == "cpu":
        return device
    if device != "cuda" and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise InvalidValue(f"--device must be cpu, cuda or cuda:N; got {device!r}")
    import torch  # lazy: the CLI checks --device before anything imports torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device[5:]) if ":" in device else 0
    if index >= count:
        raise ServingUnavailable(f"--device {device}: this machine has {count} CUDA device(s); use --device cpu")
    return device
