"""Predicted latency and peak memory of any network on a profiled device + engine, without building it (torch-free).

:func:`predict_latency` sums the profile's coefficients over the network's per-part features
(:mod:`effnet.latency.features`): milliseconds per batch at the profile's batch size, precision and engine, with
the per-part breakdown ``effnet info --profile`` shows. A prediction takes about a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass

from effnet.architectures import get_spec
from effnet.errors import InvalidValue, WrongType
from effnet.latency.features import BYTES_PER_ELEMENT, FEATURES, Context, network_parts
from effnet.latency.profile import Profile
from effnet.specs import NetworkSpec, resolve

__all__ = ["PartLatency", "LatencyEstimate", "predict_latency", "check_latency_budget"]


@dataclass(frozen=True)
class PartLatency:
    """One part's predicted milliseconds per batch (``stem`` includes the fixed cost of a call)."""

    name: str
    ms: float


@dataclass(frozen=True)
class LatencyEstimate:
    """A network's predicted latency (ms per batch of ``batch`` images) and peak memory (MiB) on the profile's
    ``engine`` at ``precision`` with ``threads`` threads, with the per-part breakdown (``parts`` sum to ``ms``)."""

    name: str
    resolution: int
    ms: float
    peak_memory_mb: float
    batch: int
    engine: str
    precision: str
    threads: int
    parts: tuple[PartLatency, ...]

    @property
    def throughput(self) -> float:
        """Images per second."""
        return self.batch * 1e3 / self.ms if self.ms > 0 else float("inf")


def predict_latency(
    spec: NetworkSpec | str, profile: Profile, resolution: int | None = None, *, batch: int | None = None
) -> LatencyEstimate:
    """The predicted latency and peak memory of ``spec`` (a spec or a registered model name) at ``resolution``
    (default: its own) on ``profile``'s engine, precision and batch.

    ``batch`` other than the profile's is an :class:`~effnet.errors.InvalidValue`: the model was fitted at one batch
    size (profile again at the other). Peak memory is weights plus the largest live activations at the profile's
    precision, corrected by the profile's memory fit.
    """
    if not isinstance(profile, Profile):
        raise WrongType(f"profile must be an effnet.latency.profile.Profile, got {type(profile).__name__}")
    if isinstance(spec, str):
        spec = get_spec(spec)
    if not isinstance(spec, NetworkSpec):
        raise WrongType(f"spec must be a NetworkSpec or a model name, got {type(spec).__name__}")
    fp = profile.fingerprint
    if batch is not None and batch != fp.batch:
        raise InvalidValue(
            f"this profile was measured at batch {fp.batch}, not {batch}; run effnet profile --batch {batch}"
        )
    net = resolve(spec)
    res = resolution or spec.resolution
    coefficients = [profile.model.coefficient(name) for name in FEATURES]
    size = BYTES_PER_ELEMENT.get(fp.precision, 4)
    ctx = Context(batch=fp.batch, cache_bytes=profile.model.cache_bytes, element_bytes=size)
    model, parts = profile.model, []
    found = network_parts(net, res, ctx)
    weights = FEATURES.index("weights")
    for part in found:
        ms = model.scale * sum(c * v for c, v in zip(coefficients, part.features, strict=True))
        ms += model.weights_ms * part.features[weights]  # inside a network, weights come from memory
        parts.append(PartLatency(part.name, ms + (model.offset_ms if part.name == "stem" else 0.0)))
    raw_mb = (sum(p.params for p in found) * size + max(p.peak for p in found) * fp.batch * size) / 2**20
    memory = profile.model.memory_base_mb + profile.model.memory_factor * raw_mb
    return LatencyEstimate(
        name=spec.name,
        resolution=res,
        ms=sum(p.ms for p in parts),
        peak_memory_mb=memory,
        batch=fp.batch,
        engine=fp.engine,
        precision=fp.precision,
        threads=fp.threads,
        parts=tuple(parts),
    )


def check_latency_budget(budget_ms: float, profile: Profile, flag: str = "--max-latency-ms") -> float:
    """``budget_ms`` if some network could meet it on ``profile``'s engine; a one-line ``InvalidValue`` when it is
    below the fixed cost of one call (what any network, however small, takes)."""
    floor = profile.model.scale * profile.model.coefficient("call") + profile.model.offset_ms
    if not budget_ms > floor:
        raise InvalidValue(
            f"{flag} {budget_ms:g} is below anything measurable on this profile's {profile.fingerprint.engine}: "
            f"one call alone takes {floor:.3g} ms at batch {profile.fingerprint.batch}"
        )
    return budget_ms
