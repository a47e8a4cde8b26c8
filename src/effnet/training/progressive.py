"""Progressive learning applied to a run (EfficientNetV2, Tan & Le 2021, section 4.2, Algorithm 1).

The stages (epochs, image size, dropout, RandAugment magnitude and mixup alpha of each) are a pure function of the
settings, :func:`effnet.config.training.progressive_stages`; this module applies them to a run. Entering a stage
restages the training data at the stage's image size and RandAugment magnitude (same images, same order) and sets
the model's dropout; each step of the stage mixes its batches with the stage's mixup alpha (:func:`mixup`); each
epoch's record names its stage. Everything is derived from the epoch alone, so a resumed run re-enters the stage
it was in.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from effnet.config.progressive import Stage, progressive_stages
from effnet.config.training import TrainConfig
from effnet.models.efficientnet import EfficientNet
from effnet.specs import NetworkSpec
from effnet.training.batched import ArrayBatches
from effnet.training.data import DataBundle, restage
from effnet.training.loaders import Loaders

__all__ = ["run_stages", "enter_stage", "describe_stage", "stage_record", "mixup", "mixup_targets"]


def run_stages(config: TrainConfig, spec: NetworkSpec) -> tuple[tuple[Stage, ...], NetworkSpec]:
    """The stages of a run training ``spec`` (empty: progressive learning is off), and ``spec`` with the dropout
    the run ends with (what the exported weights carry)."""
    stages = progressive_stages(config, spec.resolution)
    if stages:
        spec = spec.replace(dropout=stages[-1].dropout)
    return stages, spec


def enter_stage(
    stage: Stage, model: EfficientNet, loaders: Loaders, data: DataBundle, config: TrainConfig
) -> DataLoader | ArrayBatches:
    """The training loader of ``stage`` (``data`` at its image size and RandAugment magnitude, read in the same
    order as ``loaders.train``), with ``model``'s dropout set to the stage's."""
    augment = dataclasses.replace(config.augmentation(), randaugment_m=stage.randaugment_m)
    loader = loaders.with_train_dataset(restage(data, stage.resolution, augment)).train
    model.set_dropout(stage.dropout)
    return loader


def describe_stage(stage: Stage, stages: tuple[Stage, ...]) -> str:
    """One line saying which of ``stages`` starts, its epochs and its settings."""
    return (
        f"stage {stages.index(stage) + 1}/{len(stages)} (epochs {stage.first_epoch}-{stage.last_epoch}"
        f"): resolution {stage.resolution}, dropout {stage.dropout:.3g}, RandAugment magnitude "
        f"{stage.randaugment_m}, mixup alpha {stage.mixup_alpha:.3g}"
    )


def stage_record(stage: Stage, stages: tuple[Stage, ...]) -> dict[str, Any]:
    """What an epoch's ``metrics.jsonl`` record says about the stage it trained in (1-based stage number)."""
    return {
        "stage": stages.index(stage) + 1,
        "dropout": stage.dropout,
        "randaugment_m": stage.randaugment_m,
        "mixup_alpha": stage.mixup_alpha,
    }


def mixup(images: torch.Tensor, labels: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Batch mixup (Zhang et al. 2018): ``lam`` x the batch + (1 - ``lam``) x a shuffled copy of it.

    ``lam`` ~ Beta(``alpha``, ``alpha``) and the shuffle come from torch's global CPU RNG, which the checkpoint
    holds, so a resumed run draws the same mixes. Returns (mixed images, the shuffled copy's labels, ``lam``).
    """
    lam = float(torch.distributions.Beta(float(alpha), float(alpha)).sample())
    perm = torch.randperm(len(labels)).to(images.device)
    mixed = images.mul(lam).add_(images[perm], alpha=1.0 - lam)
    return mixed, labels[perm.to(labels.device)], lam


def mixup_targets(labels: torch.Tensor, partner: torch.Tensor, lam: float, num_classes: int) -> torch.Tensor:
    """Soft targets of a mixed batch: ``lam`` one-hot(``labels``) + (1 - ``lam``) one-hot(``partner``); the
    loss's label smoothing is applied on top (``cross_entropy(..., label_smoothing=)`` takes soft targets)."""
    hot = nn.functional.one_hot(labels, num_classes).float()
    return hot.mul_(lam).add_(nn.functional.one_hot(partner, num_classes).float(), alpha=1.0 - lam)
