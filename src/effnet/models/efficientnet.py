"""The builder: an ``nn.Module`` from a :class:`~effnet.specs.NetworkSpec`, classifier or feature extractor.

It knows nothing of weights files or hubs; :mod:`effnet.models.factory` builds by name and loads weights. A spec
whose weights alone exceed the memory available (:mod:`effnet.memory`) is refused in one line before anything is
allocated.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from effnet.errors import InvalidValue, check_type
from effnet.machine import available_memory
from effnet.memory import check_memory, estimate_memory
from effnet.models.layers import BLOCK_MODULES, ConvBNAct
from effnet.specs import NetworkSpec, ResolvedNetwork, resolve

__all__ = ["EfficientNet", "EfficientNetFeatures", "init_weights"]


def init_weights(module: nn.Module) -> None:
    """TF-style init: conv ``N(0, 2/fan_out)`` (fan_out per group), linear ``U(±1/√out)``, BN to identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.out_features)
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


class _Backbone(nn.Module):
    """Stem and stages shared by the classifier and the feature extractor."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        check_type("spec", spec, NetworkSpec, "a NetworkSpec (effnet.create_model('efficientnet_b0') builds by name)")
        self.spec = spec
        self.resolved: ResolvedNetwork = resolve(spec)
        net = self.resolved
        weights_only = estimate_memory(net, 0)  # a spec within every bound may still not fit: refused before a byte
        check_memory(weights_only, available_memory(), "this machine's available memory")
        bn = {"bn_eps": spec.bn_eps, "bn_momentum": spec.bn_momentum}
        self.stem = ConvBNAct(
            spec.in_chans,
            net.stem_channels,
            spec.stem_kernel,
            spec.stem_stride,
            activation=spec.activation,
            padding=spec.padding,
            **bn,
        )
        self.stem_pool = nn.MaxPool2d(3, 2, 1) if spec.stem_pool else nn.Identity()
        self.stages = nn.Sequential(
            *[
                nn.Sequential(*[BLOCK_MODULES[b.block](b, spec.activation, spec.padding, **bn) for b in stage])
                for stage in net.stages
            ]
        )
        self.grad_checkpointing = False
        self._taps: list[int] = [len(net.stages) - 1]  # stages whose outputs forward returns
        strides = net.stage_strides()
        self.feature_info: list[dict[str, Any]] = [
            {"stage": i, "reduction": strides[i], "num_chs": net.stages[i][-1].out_channels}
            for i in net.feature_stages()
        ]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's activations in backward instead of storing them (saves memory)."""
        self.grad_checkpointing = bool(enable)

    def set_lean_activations(self, enable: bool = True) -> None:
        """Use the memory-lean BatchNorm+activation when training on CPU (on by default; see ``layers``).

        It keeps one activation-sized tensor fewer per conv for backward and recomputes it in backward, trading
        some CPU training speed for memory (measured in ``benchmarks/RESULTS.md``); ``False`` always keeps the
        plain composition.
        """
        for module in self.modules():
            if isinstance(module, ConvBNAct):
                module.lean = bool(enable)

    @torch.jit.unused
    def _checkpointed_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, stage in enumerate(self.stages):
            x = checkpoint(stage, x, use_reentrant=False)
            if i in self._taps:
                outs.append(x)
        return outs

    def _stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of the tapped stages only (others are freed as soon as the next stage has run);
        recomputed in backward when gradient checkpointing is on."""
        if self.grad_checkpointing and self.training and not torch.jit.is_scripting():
            return self._checkpointed_stages(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self._taps:
                outs.append(x)
        return outs


class EfficientNet(_Backbone):
    """A classifier built from a spec: stem, stages, 1×1 head, global pool, dropout, linear."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__(spec)
        net = self.resolved
        self.head = (
            ConvBNAct(
                net.stages[-1][-1].out_channels,
                net.head_channels,
                1,
                activation=spec.activation,
                bn_eps=spec.bn_eps,
                bn_momentum=spec.bn_momentum,
            )
            if net.head_channels
            else nn.Identity()
        )
        self.num_features = net.features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(self.num_features, spec.num_classes)
        init_weights(self)

    @property
    def num_classes(self) -> int:
        """Outputs of the classifier."""
        return self.classifier.out_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's feature map (N, num_features, H/32, W/32)."""
        x = self.stem_pool(self.stem(x))
        return self.head(self._stage_outputs(x)[0])

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, dropout and classify a feature map; ``pre_logits`` returns the pooled features."""
        x = self.pool(x).flatten(1)
        if pre_logits:
            return x
        return self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def set_dropout(self, rate: float) -> None:
        """Set the dropout rate before the classifier (progressive learning raises it stage by stage); the spec
        keeps the rate the network was built with. ``rate`` must be in [0, 1)."""
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise InvalidValue(f"dropout rate must be a number in [0, 1), got {rate!r}")
        self.dropout.p = float(rate)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised one of ``num_classes`` outputs."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise InvalidValue(f"num_classes must be an integer >= 1, got {num_classes!r}")
        self.classifier = nn.Linear(self.num_features, num_classes).to(self.classifier.weight.device)
        init_weights(self.classifier)
        self.spec = self.spec.replace(num_classes=num_classes)


class EfficientNetFeatures(_Backbone):
    """Feature extractor: returns the last map at each stride (2, 4, 8, 16, 32 for EfficientNet)."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__(spec)
        self._taps = [info["stage"] for info in self.feature_info]
        init_weights(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._stage_outputs(self.stem_pool(self.stem(x)))
