"""timm's backbone API on effnet models, with timm's names and semantics: the pieces the builder's methods share.

A *feature* is the last stage at each stride (timm's ``feature_info`` and ``stage_ends``): B0 has five, at strides
2, 4, 8, 16 and 32. :class:`FeatureInfo` describes them as timm does (``num_chs``, ``reduction``, ``module``,
``stage`` counted with the stem as 0, and ``channels()`` / ``reduction()`` / ``module_name()``);
:func:`take_indices` is timm's ``feature_take_indices`` (``None``: all, an int ``n``: the last ``n``, a sequence:
those, negative from the end); :func:`timm_pretrained_cfg` is the ``pretrained_cfg`` that
``timm.data.resolve_data_config`` reads. The methods themselves (``forward_intermediates``,
``prune_intermediate_layers``, ``group_matcher``, ...) live on the models in :mod:`effnet.models.efficientnet`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from effnet.errors import InvalidValue
from effnet.preprocessing import Preprocessing
from effnet.specs import NetworkSpec, ResolvedNetwork, resolve

__all__ = ["FeatureInfo", "feature_list", "take_indices", "timm_pretrained_cfg"]


class FeatureInfo(list):
    """The selected features (dicts with ``num_chs``, ``reduction``, ``module``, ``stage``, ``index``), a list with
    the accessors of timm's ``FeatureInfo`` (``out_indices``, ``channels()``, ``reduction()``, ``module_name()``,
    ``get()``, ``get_dicts()``); ``idx`` indexes the selected features."""

    def __init__(self, features: Sequence[dict[str, Any]], out_indices: Sequence[int]) -> None:
        super().__init__(features[i] for i in out_indices)
        self.out_indices = tuple(out_indices)

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        """Field ``key`` of every selected feature (``idx`` None), of one, or of several."""
        if idx is None:
            return [f[key] for f in self]
        if isinstance(idx, int):
            return self[idx][key]
        return [self[i][key] for i in idx]

    def get_dicts(self, keys: Sequence[str] | None = None, idx: int | Sequence[int] | None = None) -> Any:
        """The features' dicts (restricted to ``keys``), of all selected, one or several."""
        pick = (lambda f: dict(f)) if keys is None else (lambda f: {k: f[k] for k in keys})
        if idx is None:
            return [pick(f) for f in self]
        return pick(self[idx]) if isinstance(idx, int) else [pick(self[i]) for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        """Output channels of the selected features."""
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        """Stride (input pixels per output pixel) of the selected features."""
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        """Module name (``stages.<i>``) whose output each selected feature is."""
        return self.get("module", idx)


def feature_list(net: ResolvedNetwork) -> list[dict[str, Any]]:
    """Every feature of a network, as timm's feature_info dicts (``stage``: stem 0, stage ``i`` is ``i + 1``)."""
    strides = net.stage_strides()
    return [
        {"num_chs": net.stages[i][-1].out_channels, "reduction": strides[i], "module": f"stages.{i}", "stage": i + 1}
        for i in net.feature_stages()
    ]


def take_indices(count: int, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
    """timm's ``feature_take_indices``: the feature indices to take (of ``count``) and the largest; out-of-range
    indices are a one-line :class:`~effnet.errors.InvalidValue`."""
    if indices is None:
        indices = count
    if isinstance(indices, int) and not isinstance(indices, bool):
        if not 0 < indices <= count:
            raise InvalidValue(f"indices: last-n ({indices}) is out of range (1 to {count})")
        taken = [count - indices + i for i in range(indices)]
    elif isinstance(indices, Sequence) and indices and all(isinstance(i, int) for i in indices):
        taken = [count + i if i < 0 else i for i in indices]
        bad = [i for i, t in zip(indices, taken, strict=True) if not 0 <= t < count]
        if bad:
            raise InvalidValue(f"indices: feature index {bad[0]} is out of range (0 to {count - 1}, or negative)")
    else:
        raise InvalidValue(f"indices must be None, an int (the last n) or a sequence of ints, got {indices!r}")
    return taken, max(taken)


def timm_pretrained_cfg(spec: NetworkSpec, pre: Preprocessing | None, first_conv: str = "stem.conv") -> dict[str, Any]:
    """timm's ``pretrained_cfg`` for a model of ``spec`` expecting ``pre`` (default: the spec's resolution at crop
    0.875, bicubic, ImageNet mean/std): what ``timm.data.resolve_data_config(model=...)`` reads."""
    pre = pre if pre is not None else Preprocessing(input_size=spec.resolution).with_in_chans(spec.in_chans)
    stride = resolve(spec).stage_strides()[-1]
    return {
        "tag": "effnet",
        "custom_load": False,
        "input_size": [pre.in_chans, pre.input_size, pre.input_size],
        "fixed_input_size": False,
        "interpolation": pre.interpolation,
        "crop_pct": pre.crop_fraction,
        "crop_mode": "center",
        "mean": list(pre.mean),
        "std": list(pre.std),
        "num_classes": spec.num_classes,
        "pool_size": [math.ceil(pre.input_size / stride)] * 2,
        "first_conv": first_conv,
        "classifier": "classifier",
    }
