"""effnet: EfficientNet and compound model scaling for PyTorch.

Importing ``effnet`` is cheap: torch is imported only when a name that needs it is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    # torch-free
    "compound": "effnet.scaling",
    "flops_factor": "effnet.scaling",
    "NetworkSpec": "effnet.specs",
    "StageSpec": "effnet.specs",
    "scale": "effnet.specs",
    "resolve": "effnet.specs",
    "get_spec": "effnet.specs",
    "list_models": "effnet.specs",
    "compound_spec": "effnet.specs",
    "cost": "effnet.cost",
    "Cost": "effnet.cost",
    # torch
    "create_model": "effnet.model",
    "compound_model": "effnet.model",
    "EfficientNet": "effnet.model",
    "EfficientNetFeatures": "effnet.model",
    "optimize_for_inference": "effnet.runtime",
    "fold_batchnorm": "effnet.fuse",
    "load_pretrained": "effnet.weights",
    "save_pretrained": "effnet.weights",
    "convert_checkpoint": "effnet.weights",
    "Preprocessing": "effnet.preprocess",
    "eval_transform": "effnet.preprocess",
    "export_model": "effnet.export",
    "TrainConfig": "effnet.train",
    "TrainResult": "effnet.train",
    "fit": "effnet.train",
    "TFRMSprop": "effnet.optim",
    "ModelEMA": "effnet.optim",
    "SearchConfig": "effnet.search",
    "run_search": "effnet.search",
    "load_baseline": "effnet.baselines",
    "paper_table3": "effnet.baselines",
    "ScaleConfig": "effnet.scaleup",
    "scale_family": "effnet.scaleup",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'effnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
