"""``effnet profile``'s measurement: time sampled blocks and small networks on one CPU engine, fit the latency model
(:mod:`effnet.latency.fit`), and find the fastest engine at each batch size.

What is measured (``docs/hardware-aware.md`` has the method):

* **blocks**: blocks drawn from the registered baselines (EfficientNet-B0, Lite0, V2-S, MobileNetV2, ResNet-50) at a
  random width (0.5–2.2×), resolution (96–600 px) and activation, each the first block of its stage or a repeat,
  built alone (:data:`effnet.models.layers.BLOCK_MODULES`) and served by the engine on an input of its size;
* **networks**: small whole networks (the same baselines at depth 0.5–1.5×, width 0.25–1.6×, 64–320 px, at most
  :data:`MAX_UNIT_MACS` per call or :data:`MIN_NETWORK_MACS` per image, whichever is more), which fix the cost of a
  call and what a network loses between its blocks;
* **engines**: the reference network (B0 at 224 px) on every installed CPU engine that serves the precision, at each
  batch size of the table and the profile's own, the engines taking turns three times.

Each unit is served exactly as effnet serves a model (BN folded, effnet's ONNX export, the engine of
:mod:`effnet.serving.cpu_engines`) and timed in :data:`ROUNDS` interleaved rounds, a burst after a warm-up each: the
least of the bursts' medians (a slow spell of the machine only adds time).
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from effnet.architectures import get_spec, scale
from effnet.config.profile import ProfileConfig
from effnet.config.serving import ServingUnavailable, default_backend
from effnet.errors import InvalidValue
from effnet.latency.features import BYTES_PER_ELEMENT, FEATURES, Context, block_features, network_parts
from effnet.latency.fingerprint import CPU_ENGINES, cache_bytes, current_fingerprint
from effnet.latency.fit import Sample, cross_validate, fit_model
from effnet.latency.profile import EngineTiming, LatencyModel, Profile, nearest_engine
from effnet.machine import available_memory
from effnet.models.efficientnet import EfficientNet
from effnet.models.layers import BLOCK_MODULES
from effnet.serving.cpu_engines import OnnxRuntimeEngine, OpenVinoEngine
from effnet.serving.engines import Engine
from effnet.serving.hardware import require_native_bf16
from effnet.serving.select import installed_engines
from effnet.specs import NetworkSpec, resolve

__all__ = [
    "SAMPLE_BASELINES",
    "MAX_UNIT_MACS",
    "MIN_NETWORK_MACS",
    "REFERENCE",
    "Unit",
    "ProfileRun",
    "sample_units",
    "unit_caps",
    "unit_module",
    "unit_input",
    "make_engine",
    "time_engine",
    "measure_units",
    "unit_bytes",
    "engine_table",
    "profile_device",
    "profile_steps",
]

SAMPLE_BASELINES = ("efficientnet_b0", "efficientnet_lite0", "efficientnet_v2_s", "mobilenetv2", "resnet50")
"""The baselines whose blocks a profile samples (every registered block kind but MobileNetV1's is among them)."""
REFERENCE = "efficientnet_b0"
"""The network of the engine table."""
MAX_UNIT_MACS = 3e9
"""Largest multiply-adds of one timed block call (sampled blocks above it, divided by the batch, are drawn again)."""
MIN_NETWORK_MACS = 0.8e9
"""The profile's networks may reach this many multiply-adds per image at any batch (at batch 1 they reach
:data:`MAX_UNIT_MACS`): the network-level terms are fitted on networks of the size they predict (B0 is 0.39 G). Capped
at :data:`MAX_UNIT_MACS` per call instead, the networks of a batch-32 profile were a quarter of B0, and the model
predicted B0's family 6–35 % low there (``benchmarks/RESULTS.md``)."""
ROUNDS = 2
"""Interleaved rounds in which a profile times every unit (:func:`measure_units`)."""
ROUND_S = 0.12
"""Seconds of one unit's burst in one round."""
SETTLE_S = 0.1
"""Idle seconds before each engine-table timing: ONNX Runtime's threads spin-wait for work after a call, and on few
cores the engine timed next would share them (``benchmarks/common.py``)."""
_ACTIVATIONS = ("silu", "relu6")
_ENGINES: dict[str, Callable[..., Engine]] = {"onnxruntime": OnnxRuntimeEngine, "openvino": OpenVinoEngine}


@dataclass(frozen=True)
class Unit:
    """One thing a profile times: the block ``block`` (an index into the resolved network's blocks) of ``spec`` on
    a ``size``×``size`` input, or the whole ``spec`` (``block`` None)."""

    name: str
    spec: NetworkSpec
    block: int | None
    size: int

    def features(self, ctx: Context) -> tuple[float, ...]:
        """The unit's features (:data:`~effnet.latency.features.FEATURES`) in ``ctx``, as one call of its own."""
        if self.block is None:
            parts = network_parts(self.spec, ctx=ctx)
            return tuple(sum(values) for values in zip(*(p.features for p in parts), strict=True))
        block = resolve(self.spec).blocks[self.block]
        ctx = dataclasses.replace(ctx, activation=self.spec.activation)
        found = block_features(block, self.size, ctx)
        values = dict(zip(FEATURES, found.features, strict=True))
        values["call"] = 1.0  # a block timed alone is one call of its own, and hands its whole output back
        values["output"] = block.out_channels * found.out_size**2 * ctx.batch
        return tuple(values[name] for name in FEATURES)

    def macs(self) -> float:
        """Multiply-adds of one image."""
        values = dict(zip(FEATURES, self.features(Context()), strict=True))
        return values["pw_macs"] + values["kxk_macs"] + values["dw_macs"]


def _random_spec(
    rng: random.Random, width: tuple[float, float], res: tuple[int, int], depth: tuple[float, float] = (1.0, 1.0)
) -> NetworkSpec:
    base = get_spec(rng.choice(SAMPLE_BASELINES))
    activation = base.activation if rng.random() < 0.5 else rng.choice(_ACTIVATIONS)
    resolution = int(round(rng.uniform(*res) / 8) * 8)
    spec = scale(base, depth=rng.uniform(*depth), width=rng.uniform(*width), resolution=resolution)
    name = f"{base.name}_d{spec.depth:.2f}_w{spec.width:.2f}_r{resolution}_{activation}"
    return spec.replace(activation=activation, name=name)


def _block_unit(spec: NetworkSpec, rng: random.Random) -> Unit:
    net = resolve(spec)
    size = int(-(-spec.resolution // spec.stem_stride))
    size = -(-size // 2) if spec.stem_pool else size
    stage = rng.randrange(len(net.stages))
    for earlier in net.stages[:stage]:
        for b in earlier:
            size = -(-size // b.stride)
    index = 0 if rng.random() < 0.5 or len(net.stages[stage]) == 1 else 1
    if index:
        size = -(-size // net.stages[stage][0].stride)
    return Unit(f"{spec.name}/stage{stage}.{index}", spec, net.stages[stage][index].index, size)


def sample_units(
    seed: int, blocks: int, networks: int, max_macs: float, network_macs: float | None = None
) -> list[Unit]:
    """``blocks`` random blocks and ``networks`` random small networks (module docstring), each at most ``max_macs``
    multiply-adds per image (networks: ``network_macs``, default ``max_macs``; larger draws are drawn again)."""
    rng = random.Random(seed)
    units: list[Unit] = []
    network_cap = max_macs if network_macs is None else network_macs
    while len(units) < networks:
        spec = _random_spec(rng, (0.25, 1.6), (64, 320), (0.5, 1.5))
        unit = Unit(spec.name, spec, None, spec.resolution)
        if unit.macs() <= network_cap:
            units.append(unit)
    while len(units) < networks + blocks:
        unit = _block_unit(_random_spec(rng, (0.5, 2.2), (96, 600)), rng)
        if unit.macs() <= max_macs:
            units.append(unit)
    return units


def unit_caps(batch: int) -> tuple[float, float]:
    """The multiply-adds per image a profile's sampled blocks and networks may reach at ``batch``:
    :data:`MAX_UNIT_MACS` per call for blocks, and for networks that or :data:`MIN_NETWORK_MACS`, whichever is more."""
    per_image = MAX_UNIT_MACS / batch
    return per_image, max(per_image, MIN_NETWORK_MACS)


def unit_module(unit: Unit) -> nn.Module:
    """The eval-mode module a unit times: one block (random weights) or the whole network."""
    torch.manual_seed(0)
    spec = unit.spec
    if unit.block is None:
        return EfficientNet(spec).eval()
    config = resolve(spec).blocks[unit.block]
    kwargs = {"bn_eps": spec.bn_eps, "bn_momentum": spec.bn_momentum}
    return BLOCK_MODULES[config.block](config, spec.activation, spec.padding, **kwargs).eval()


def unit_input(unit: Unit, batch: int) -> torch.Tensor:
    """A random input batch of the unit's shape."""
    channels = unit.spec.in_chans if unit.block is None else resolve(unit.spec).blocks[unit.block].in_channels
    return torch.randn(batch, channels, unit.size, unit.size)


def make_engine(module: nn.Module, example: torch.Tensor, engine: str, precision: str) -> Engine:
    """``module`` served by the CPU ``engine`` at ``precision``, prepared for ``example``'s shape."""
    if engine not in _ENGINES:
        raise InvalidValue(f"profile engine must be one of {', '.join(_ENGINES)}; got {engine!r}")
    return _ENGINES[engine](module, precision, example)


def time_engine(
    run: Engine, x: torch.Tensor, warmup: int = 2, min_runs: int = 5, target_s: float = 0.25
) -> list[float]:
    """The ms of each call ``run(x)``: at least ``min_runs`` calls and about ``target_s`` seconds, after ``warmup``."""
    for _ in range(warmup):
        run(x)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - started < target_s and len(times) < 200):
        t0 = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def unit_bytes(unit: Unit, batch: int) -> float:
    """An upper bound on the memory serving ``unit`` at ``batch`` takes: every convolution's input and output
    elements and the weights, at 4 bytes (an engine's arena reuses much of it)."""
    values = dict(zip(FEATURES, unit.features(Context(batch=batch)), strict=True))
    elements = sum(values[k] for k in ("pw_in", "pw_out", "dw_io", "kxk_io", "output", "weights"))
    return 4.0 * elements


def _groups(units: Sequence[Unit], batch: int, room: float) -> list[list[int]]:
    """Consecutive groups of unit indices whose :func:`unit_bytes` sum to at most ``room`` (a larger unit alone)."""
    groups: list[list[int]] = [[]]
    used = 0.0
    for i, unit in enumerate(units):
        need = unit_bytes(unit, batch)
        if groups[-1] and used + need > room:
            groups.append([])
            used = 0.0
        groups[-1].append(i)
        used += need
    return [g for g in groups if g]


def measure_units(
    units: Sequence[Unit],
    engine: str,
    precision: str,
    batch: int,
    on_unit: Callable[[Unit], None] | None = None,
    rounds: int = ROUNDS,
    target_s: float = ROUND_S,
    *,
    warmup: int = 2,
    min_runs: int = 5,
) -> list[float]:
    """Every unit's ms, in order: the least of its burst medians (at least ``min_runs`` calls and ``target_s``
    seconds each, after ``warmup`` calls) over ``rounds`` interleaved rounds, so a slow spell of a shared machine,
    which only adds time, spoils one burst and not the unit. Units are served in groups that fit a third of the
    available memory (:func:`unit_bytes`); a group's units are served once, then timed once per round. ``on_unit``
    after each timing (a progress bar counts ``rounds`` per unit)."""
    free = available_memory()
    room = free / 3 if free else float(2 << 30)
    best = [math.inf] * len(units)
    for group in _groups(units, batch, room):
        prepared = []
        for i in group:
            x = unit_input(units[i], batch)
            prepared.append((i, make_engine(unit_module(units[i]), x, engine, precision), x))
        for _ in range(rounds):
            for i, run, x in prepared:
                times = time_engine(run, x, warmup=warmup, min_runs=min_runs, target_s=target_s)
                best[i] = min(best[i], statistics.median(times))
                if on_unit is not None:
                    on_unit(units[i])
        del prepared
        gc.collect()
    return best


def _reference(batch: int) -> tuple[nn.Module, torch.Tensor]:
    spec = get_spec(REFERENCE)
    torch.manual_seed(0)
    return EfficientNet(spec).eval(), torch.randn(batch, spec.in_chans, spec.resolution, spec.resolution)


def engine_table(
    engines: Sequence[str],
    batches: Sequence[int],
    precision: str,
    rounds: int = 3,
    on_step: Callable[[str], None] | None = None,
) -> tuple[EngineTiming, ...]:
    """Each of ``engines``' median ms on the reference network (:data:`REFERENCE`) at each of ``batches``: the
    engines take turns, ``rounds`` times, so a slow spell of the machine hits them alike, each after
    :data:`SETTLE_S` of idle time."""
    model, example = _reference(1)
    runs = {name: make_engine(model, example, name, precision) for name in engines}
    rows = []
    for batch in batches:
        x = example.expand(batch, -1, -1, -1).contiguous()
        times: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(rounds):
            for name, run in runs.items():
                time.sleep(SETTLE_S)  # the previous engine's threads stop spinning before this one is timed
                times[name].append(statistics.median(time_engine(run, x, warmup=1, min_runs=3, target_s=0.1)))
                if on_step is not None:
                    on_step(f"{name} batch {batch}")
        rows.append(EngineTiming(precision, batch, tuple((n, statistics.median(t)) for n, t in times.items())))
    return tuple(rows)


@dataclass(frozen=True)
class ProfileRun:
    """What :func:`profile_device` measured besides the profile: every unit and its median ms."""

    units: tuple[Unit, ...]
    ms: tuple[float, ...]


def _engines(precision: str) -> list[str]:
    """The installed CPU engines that serve ``precision`` (bf16: OpenVINO only)."""
    installed = [name for name, ok in installed_engines().items() if ok]
    return [e for e in CPU_ENGINES if e in installed and (precision == "fp32" or e == "openvino")]


def _model_engine(config: ProfileConfig, table: tuple[EngineTiming, ...], engines: list[str]) -> str:
    if config.runtime != "default":
        if config.runtime not in engines:
            raise ServingUnavailable(
                f"--runtime {config.runtime} is not installed or does not serve {config.precision}"
            )
        return config.runtime
    fastest = nearest_engine({row.batch: row.fastest for row in table}, config.batch)
    return fastest or default_backend("cpu", config.precision, config.batch, **installed_engines())


def profile_device(config: ProfileConfig, on_step: Callable[[str], None] | None = None) -> tuple[Profile, ProfileRun]:
    """Measure ``config``'s engine on this machine and fit its latency model (module docstring).

    ``on_step`` is called after each measurement with what was measured (a progress bar counts
    :func:`profile_steps` of them).
    """
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if config.precision == "bf16":
        require_native_bf16("cpu")
    engines = _engines(config.precision)
    if not engines:
        raise ServingUnavailable(f"no CPU engine serves {config.precision} here: pip install onnxruntime openvino")
    batches = sorted({*config.engine_batches, config.batch}) if config.engine_batches else []
    table = engine_table(engines, batches, config.precision, on_step=on_step) if len(engines) > 1 else ()
    engine = _model_engine(config, table, engines)
    units = sample_units(config.seed, config.blocks, config.networks, *unit_caps(config.batch))
    ms = measure_units(units, engine, config.precision, config.batch, on_step)
    ctx = Context(batch=config.batch, cache_bytes=cache_bytes(), element_bytes=BYTES_PER_ELEMENT[config.precision])
    samples = [Sample(u.features(ctx), t, u.block is None) for u, t in zip(units, ms, strict=True)]
    weights = FEATURES.index("weights")
    fit, errors = fit_model(samples, weights), cross_validate(samples, weights_feature=weights)
    threads = torch.get_num_threads()
    profile = Profile(
        fingerprint=current_fingerprint(config.runtime, engine, config.precision, config.batch, threads),
        model=LatencyModel(
            FEATURES,
            fit.coefficients,
            fit.scale,
            fit.offset_ms,
            cache_bytes=ctx.cache_bytes,
            weights_ms=fit.weights_ms,
        ),
        engines=table,
        reference=REFERENCE,
        quality=_quality(samples, errors),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    return profile, ProfileRun(tuple(units), tuple(ms))


def _quality(samples: Sequence[Sample], errors: Sequence[float]) -> tuple[tuple[str, float], ...]:
    """Cross-validated errors of the blocks and of the networks: how many, the share within ±10 %, the median."""
    out: list[tuple[str, float]] = []
    for label, network in (("blocks", False), ("networks", True)):
        mine = [abs(e) for e, s in zip(errors, samples, strict=True) if s.network == network]
        if mine:
            out += [
                (f"{label}", float(len(mine))),
                (f"{label}_within_10pct", sum(e <= 0.1 for e in mine) / len(mine)),
                (f"{label}_median_abs_error", statistics.median(mine)),
            ]
    return tuple(out)


def profile_steps(config: ProfileConfig) -> int:
    """How many measurements :func:`profile_device` makes (the length of its progress bar)."""
    engines = len(_engines(config.precision))
    batches = len({*config.engine_batches, config.batch}) if config.engine_batches else 0
    return (batches * 3 * engines if engines > 1 else 0) + ROUNDS * (config.blocks + config.networks)
