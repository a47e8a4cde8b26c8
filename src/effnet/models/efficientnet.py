"""The builder: an ``nn.Module`` from a :class:`~effnet.specs.NetworkSpec`, classifier or feature extractor.

It knows nothing of weights files or hubs; :mod:`effnet.models.factory` builds by name and loads weights. A spec
whose weights alone exceed the memory available (:mod:`effnet.memory`) is refused in one line before anything is
allocated. Both models carry timm's backbone API with timm's names and semantics (:mod:`effnet.models.backbone`):
``feature_info``, ``forward_intermediates``, ``prune_intermediate_layers``, ``group_matcher``,
``set_grad_checkpointing``, ``pretrained_cfg`` / ``default_cfg``.
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
from effnet.models.backbone import FeatureInfo, feature_list, take_indices, timm_pretrained_cfg
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
    """Stem and stages shared by the classifier and the feature extractor, with timm's backbone API."""

    __jit_unused_properties__ = ["pretrained_cfg", "default_cfg", "num_classes"]

    def __init__(self, spec: NetworkSpec, out_indices: tuple[int, ...] | None = None) -> None:
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
        self._feature_stages = net.feature_stages()  # timm's stage_ends, counted from stage 0
        features = feature_list(net)
        chosen, _ = take_indices(len(features), list(out_indices) if out_indices is not None else None)
        self.feature_info = FeatureInfo(features, chosen)

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """timm's ``pretrained_cfg`` from the attached ``.preprocessing`` (else the spec's resolution at crop 0.875,
        bicubic, ImageNet mean/std): ``timm.data.resolve_data_config(model=m)`` + ``create_transform`` build the same
        eval tensor as :func:`effnet.serving.preprocess.eval_transform`."""
        return timm_pretrained_cfg(self.spec, getattr(self, "preprocessing", None))

    @property
    def default_cfg(self) -> dict[str, Any]:
        """timm's older name for :attr:`pretrained_cfg`."""
        return self.pretrained_cfg

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter groups (layer-wise LR decay): the stem, each block (each stage if ``coarse``), the head."""
        blocks = r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.(\d+)"
        return {"stem": r"^stem\.", "blocks": [(blocks, None), (r"^head\.", (99999,))]}

    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and self.training:
            return checkpoint(stage, x, use_reentrant=False)
        return stage(x)

    def _final(self, x: torch.Tensor) -> torch.Tensor:
        """What follows the last stage in ``forward_intermediates`` (the classifier's 1x1 head; here nothing)."""
        return x

    @torch.jit.ignore
    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's ``forward_intermediates``: the feature maps ``indices`` selects (``None``: all features, ``n``: the
        last ``n``, a sequence: those; indices count :attr:`feature_info`'s features over the whole network), and
        unless ``intermediates_only`` the final map too (after the 1x1 head when every stage ran). ``stop_early``
        runs only the stages needed. ``norm`` has no effect (as in timm's EfficientNet: no final norm to apply)."""
        if output_fmt != "NCHW":
            raise InvalidValue(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        taken, last = take_indices(len(self._feature_stages), indices)
        taps = {self._feature_stages[i] for i in taken}
        end = self._feature_stages[last] if stop_early else len(self.stages) - 1
        x = self.stem_pool(self.stem(x))
        intermediates = []
        for i, stage in enumerate(self.stages):
            if i > end:
                break
            x = self._run_stage(stage, x)
            if i in taps:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return (self._final(x) if end == len(self.stages) - 1 else x), intermediates

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

    def _prune_stages(self, indices: int | list[int] | tuple[int, ...]) -> tuple[list[int], int, bool]:
        """Drop the stages after the last feature ``indices`` needs: (taken indices, its channels, any dropped)."""
        taken, last = take_indices(len(self._feature_stages), indices)
        keep = self._feature_stages[last] + 1
        dropped = keep < len(self.stages)
        self.stages = self.stages[:keep]
        self._taps = [t for t in self._taps if t < keep] or [keep - 1]
        return taken, int(self.resolved.stages[keep - 1][-1].out_channels), dropped

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
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(self.num_features, spec.num_classes)
        init_weights(self)

    @property
    def num_classes(self) -> int:
        """Outputs of the classifier (0 after ``prune_intermediate_layers`` removed it)."""
        return int(getattr(self.classifier, "out_features", 0))

    def _final(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    @torch.jit.ignore
    def prune_intermediate_layers(
        self, indices: int | list[int] | tuple[int, ...] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """timm's ``prune_intermediate_layers``: drop the stages after the last feature ``indices`` needs, and the
        1x1 head and classifier (the head whenever stages were dropped, or ``prune_norm``/``prune_head``). Returns
        the taken feature indices. A pruned model is a backbone: its state no longer matches ``.spec``."""
        taken, channels, dropped = self._prune_stages(indices)
        if dropped or prune_norm or prune_head:  # as timm: forward then returns the last kept feature map
            self.head = nn.Identity()
            self.num_features = channels
            self.pool = nn.Identity()
            self.classifier = nn.Identity()
        return taken

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's feature map (N, num_features, H/32, W/32)."""
        x = self.stem_pool(self.stem(x))
        return self.head(self._stage_outputs(x)[0])

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, dropout and classify a feature map; ``pre_logits`` returns the pooled features."""
        x = self.pool(x)
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
    """Feature extractor (timm's ``features_only``): returns the last map at each stride (2, 4, 8, 16, 32 for
    EfficientNet), or those ``out_indices`` selects (indices into every stride's feature, negative from the end)."""

    def __init__(self, spec: NetworkSpec, out_indices: tuple[int, ...] | None = None) -> None:
        super().__init__(spec, out_indices)
        self._taps = [self._feature_stages[i] for i in self.feature_info.out_indices]
        init_weights(self)

    @torch.jit.ignore
    def prune_intermediate_layers(
        self, indices: int | list[int] | tuple[int, ...] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last feature ``indices`` needs (timm's semantics); the taken indices."""
        return self._prune_stages(indices)[0]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._stage_outputs(self.stem_pool(self.stem(x)))
