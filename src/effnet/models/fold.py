"""Fold inference-mode BatchNorm into the preceding convolution (a pure function: the input is not changed)."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from effnet.errors import check_type

__all__ = ["fold_batchnorm", "count_batchnorm"]


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and type(bn) is nn.BatchNorm2d
        and bn.running_mean is not None
        and bn.running_var is not None
        and conv.out_channels == bn.num_features
    )


def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv (same class, e.g. ``Conv2dSame``) with the BN's eval-mode affine map baked into weight and bias."""
    with torch.no_grad():
        fused = fuse_conv_bn_eval(conv.eval(), bn.eval())
    fused.weight.requires_grad_(False)
    if fused.bias is not None:
        fused.bias.requires_grad_(False)
    return fused


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm that directly follows a conv folded into it.

    Two patterns are folded: modules with ``conv`` and ``bn`` children (effnet's ``ConvBNAct``) and
    adjacent ``Conv2d`` → ``BatchNorm2d`` children of an ``nn.Sequential`` (torchvision's
    ``Conv2dNormActivation``). A folded BN is replaced by ``nn.Identity`` so module paths stay valid;
    the conv gains a bias. The result computes the same eval-mode function (to float rounding);
    ``model`` itself is left untouched (not even its train/eval mode).
    """
    check_type("model", model, nn.Module, "a torch nn.Module")
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if conv is not None and bn is not None and _foldable(conv, bn):
            module.conv = _fold_pair(conv, bn)
            module.bn = nn.Identity()
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in zip(names[:-1], names[1:], strict=True):
                conv, bn = module._modules[first], module._modules[second]
                if _foldable(conv, bn):
                    module._modules[first] = _fold_pair(conv, bn)
                    module._modules[second] = nn.Identity()
    return folded


def count_batchnorm(model: nn.Module) -> int:
    """Number of ``BatchNorm2d`` modules left in ``model`` (0 after folding a plain EfficientNet)."""
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
