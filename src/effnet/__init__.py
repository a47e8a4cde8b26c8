"""effnet: EfficientNet and compound model scaling for PyTorch.

Importing ``effnet`` is cheap: torch is imported only when a name that needs it is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Bound eagerly (torch-free, cheap): a lazy ``cost`` would be replaced by the submodule ``effnet.cost`` as soon as
# anything imports that module, and ``effnet.cost(spec)`` would then fail.
from effnet.cost import Cost as Cost
from effnet.cost import cost as cost

_LAZY = {
    # torch-free
    "compound": "effnet.scaling",
    "flops_factor": "effnet.scaling",
    "NetworkSpec": "effnet.specs",
    "StageSpec": "effnet.specs",
    "scale": "effnet.architectures",
    "resolve": "effnet.specs",
    "get_spec": "effnet.architectures",
    "list_models": "effnet.architectures",
    "compound_spec": "effnet.architectures",
    "TrainConfig": "effnet.config.training",
    "predict_latency": "effnet.latency.predict",
    "LatencyEstimate": "effnet.latency.predict",
    "load_profile": "effnet.latency.profile",
    "Profile": "effnet.latency.profile",
    "current_fingerprint": "effnet.latency.fingerprint",
    # torch
    "create_model": "effnet.models.factory",
    "compound_model": "effnet.models.factory",
    "EfficientNet": "effnet.models.efficientnet",
    "EfficientNetFeatures": "effnet.models.efficientnet",
    "optimize_for_inference": "effnet.serving.runtimes",
    "fold_batchnorm": "effnet.models.fold",
    "load_pretrained": "effnet.models.factory",
    "save_pretrained": "effnet.models.factory",
    "convert_checkpoint": "effnet.models.convert.checkpoint",
    "Preprocessing": "effnet.preprocessing",
    "eval_transform": "effnet.serving.preprocess",
    "export_model": "effnet.serving.export",
    "TrainResult": "effnet.training.trainer",
    "fit": "effnet.training.trainer",
    "TFRMSprop": "effnet.training.optim",
    "ModelEMA": "effnet.training.optim",
    "SearchConfig": "effnet.config.search",
    "run_search": "effnet.search.run",
    "load_baseline": "effnet.search.baselines",
    "paper_table3": "effnet.search.baselines",
    "ScaleConfig": "effnet.config.scale",
    "scale_family": "effnet.search.scaleup",
    "CurvesConfig": "effnet.config.curves",
    "run_curves": "effnet.search.curves",
}

__all__ = sorted([*_LAZY, "Cost", "cost"]) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'effnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
