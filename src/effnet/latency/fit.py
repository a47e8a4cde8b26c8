"""Fitting a profile's latency model on measured samples (torch-free; numpy and scipy are imported when it runs).

Two levels, each a non-negative least-squares fit of *relative* errors (a 0.1 ms block counts as much as a 100 ms
one; non-negative, because no feature makes an engine faster):

1. **blocks**: the coefficient of each feature (:data:`effnet.latency.features.FEATURES`), from blocks timed alone;
2. **networks**: ``scale``, ``weights_ms`` and ``offset_ms`` such that a whole network takes ``scale`` × its blocks'
   sum + ``weights_ms`` × its weights + ``offset_ms``, from whole networks timed alone. This carries what a block
   timed by itself does not show: its weights stay in cache between calls, inside a network they come from memory
   (a cost per weight, so it weighs most on wide networks at low resolution), and the fixed cost of a call.

The fit's quality is measured on samples it was not fitted on: k-fold cross-validation of both levels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from effnet.errors import InvalidValue

__all__ = ["Sample", "Fit", "fit_model", "cross_validate"]


@dataclass(frozen=True)
class Sample:
    """One measured unit: its features (in :data:`~effnet.latency.features.FEATURES` order, at the measured batch),
    its median ms, and whether it is a whole network (else a block timed alone)."""

    features: tuple[float, ...]
    ms: float
    network: bool = False


@dataclass(frozen=True)
class Fit:
    """The fitted coefficients (ms per feature unit), and a network's ``scale``, ``weights_ms`` (ms per unit of the
    feature ``weights_feature``, read again from memory) and ``offset_ms``."""

    coefficients: tuple[float, ...]
    scale: float = 1.0
    offset_ms: float = 0.0
    weights_ms: float = 0.0
    weights_feature: int | None = None

    def predict(self, sample: Sample) -> float:
        """The model's ms for ``sample`` (a network: scaled, its weights read from memory, and offset)."""
        raw = sum(c * v for c, v in zip(self.coefficients, sample.features, strict=True))
        if not sample.network:
            return raw
        return self.scale * raw + self.weights_ms * _weights(sample, self.weights_feature) + self.offset_ms


def _nnls(rows: list[list[float]], targets: list[float]) -> list[float]:
    """Non-negative least squares of ``rows · x ≈ targets``, columns scaled to 1 for conditioning."""
    import numpy as np  # lazy: numeric libraries only while a profile is fitted
    from scipy.optimize import nnls  # lazy: as above

    a = np.array(rows, dtype=float)
    norm = np.abs(a).max(axis=0)
    norm[norm == 0] = 1.0
    x, _ = nnls(a / norm, np.array(targets, dtype=float), maxiter=100 * a.shape[1])
    return [float(v) for v in x / norm]


def _weights(sample: Sample, index: int | None) -> float:
    return sample.features[index] if index is not None else 0.0


def _usable(samples: Sequence[Sample]) -> list[Sample]:
    return [s for s in samples if s.ms > 0 and math.isfinite(s.ms)]


def fit_model(samples: Sequence[Sample], weights_feature: int | None = None) -> Fit:
    """Fit both levels (module docstring) on ``samples``; fewer blocks than features is an ``InvalidValue``.
    ``weights_feature``: the index of the feature that counts weights (None: no network-level cost per weight).

    Without at least three networks, ``scale`` stays 1 and ``weights_ms`` and ``offset_ms`` 0.
    """
    blocks = [s for s in _usable(samples) if not s.network]
    width = len(samples[0].features) if samples else 0
    if len(blocks) < width or not blocks:
        raise InvalidValue(f"a latency model needs at least {max(width, 1)} measured blocks, got {len(blocks)}")
    coefficients = _nnls([[v / s.ms for v in s.features] for s in blocks], [1.0] * len(blocks))
    networks = [s for s in _usable(samples) if s.network]
    if len(networks) < 3:
        return Fit(tuple(coefficients), weights_feature=weights_feature)
    raw = [sum(c * v for c, v in zip(coefficients, s.features, strict=True)) for s in networks]
    rows = [[r / s.ms, _weights(s, weights_feature) / s.ms, 1.0 / s.ms] for r, s in zip(raw, networks, strict=True)]
    scale, weights_ms, offset = _nnls(rows, [1.0] * len(networks))
    if scale <= 0:  # degenerate measurements: keep the blocks' own sum
        return Fit(tuple(coefficients), weights_feature=weights_feature)
    return Fit(tuple(coefficients), scale, offset, weights_ms, weights_feature)


def cross_validate(samples: Sequence[Sample], folds: int = 5, weights_feature: int | None = None) -> list[float]:
    """``predicted / measured - 1`` of each sample, predicted by a model fitted without its fold (sample i is in
    fold i % ``folds``; blocks and networks are folded separately, so every fold keeps networks to fit on)."""
    errors = [0.0] * len(samples)
    for network in (False, True):
        indices = [i for i, s in enumerate(samples) if s.network == network]
        for k in range(folds):
            held = {i for j, i in enumerate(indices) if j % folds == k}
            if not held:
                continue
            fit = fit_model([s for i, s in enumerate(samples) if i not in held], weights_feature)
            for i in held:
                errors[i] = fit.predict(samples[i]) / samples[i].ms - 1.0
    return errors
