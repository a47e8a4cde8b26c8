"""Build an ``nn.Module`` from a :class:`~effnet.specs.NetworkSpec`: classifier or feature extractor."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from effnet.architectures import compound_spec, get_spec
from effnet.models.layers import BLOCK_MODULES, ConvBNAct
from effnet.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA
from effnet.specs import (
    NetworkSpec,
    ResolvedNetwork,
    resolve,
)

__all__ = ["EfficientNet", "EfficientNetFeatures", "create_model", "compound_model", "init_weights"]


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
        self.spec = spec
        self.resolved: ResolvedNetwork = resolve(spec)
        net = self.resolved
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
            raise ValueError(f"dropout rate must be a number in [0, 1), got {rate!r}")
        self.dropout.p = float(rate)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised one of ``num_classes`` outputs."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
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


def _apply_options(
    spec: NetworkSpec,
    num_classes: int | None,
    in_chans: int | None,
    drop_rate: float | None,
    drop_path_rate: float | None,
    activation: str | None,
    padding: str | None,
    resolution: int | None,
) -> NetworkSpec:
    changes = {
        "num_classes": num_classes,
        "in_chans": in_chans,
        "dropout": drop_rate,
        "drop_path_rate": drop_path_rate,
        "activation": activation,
        "padding": padding,
        "resolution": resolution,
    }
    return spec.replace(**{k: v for k, v in changes.items() if v is not None})


def create_model(
    name: str | NetworkSpec,
    *,
    pretrained: bool | str = False,
    num_classes: int | None = None,
    in_chans: int | None = None,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
    activation: str | None = None,
    padding: str | None = None,
    resolution: int | None = None,
    features_only: bool = False,
    grad_checkpointing: bool = False,
) -> EfficientNet | EfficientNetFeatures:
    """Build a named model (see ``effnet.list_models()``) or a spec, with options overriding the spec.

    ``padding="tf_same"`` reproduces TensorFlow's asymmetric padding (for TF-ported weights);
    ``features_only`` returns an :class:`EfficientNetFeatures`. Options left ``None`` keep the spec's value.

    ``pretrained``: ``True`` loads the model's default weights (:data:`effnet.models.hub.DEFAULT_WEIGHTS`:
    torchvision's ``DEFAULT`` where torchvision has them, else timm's Hugging Face repository; a model with
    none is a one-line :class:`~effnet.errors.Unsupported`); a string is a weights reference
    (``hf-hub:timm/efficientnet_b0.ra_in1k``, ``torchvision:EfficientNet_B0_Weights.IMAGENET1K_V1``) or a local
    file, loaded by :func:`effnet.models.weights.load_pretrained` (eval mode, ``.preprocessing`` attached).
    The weights fix ``in_chans``, ``activation`` and ``padding``; a ``num_classes`` other than the hub weights'
    gives a fresh classifier on the pretrained backbone.
    """
    if pretrained is not False:
        return _pretrained(
            name,
            pretrained,
            num_classes,
            in_chans,
            activation,
            padding,
            features_only,
            {
                "drop_rate": drop_rate,
                "drop_path_rate": drop_path_rate,
                "resolution": resolution,
                "grad_checkpointing": grad_checkpointing,
            },
        )
    spec = _apply_options(
        get_spec(name), num_classes, in_chans, drop_rate, drop_path_rate, activation, padding, resolution
    )
    model = EfficientNetFeatures(spec) if features_only else EfficientNet(spec)
    model.set_grad_checkpointing(grad_checkpointing)
    return model


def _pretrained(
    name: str | NetworkSpec,
    pretrained: bool | str,
    num_classes: int | None,
    in_chans: int | None,
    activation: str | None,
    padding: str | None,
    features_only: bool,
    options: dict[str, Any],
) -> EfficientNet | EfficientNetFeatures:
    """``create_model(..., pretrained=...)``: resolve the weights, load them, optionally keep the backbone only."""
    from effnet.errors import Unsupported, WrongType
    from effnet.models.hub import default_weights, is_weights_ref, resolve_weights
    from effnet.models.weights import load_pretrained

    spec = get_spec(name)
    if pretrained is True:
        ref: Any = default_weights(spec.name)
    elif isinstance(pretrained, str) and pretrained:
        ref = pretrained
    else:
        raise WrongType(f"pretrained must be True, False or a weights reference / file, got {pretrained!r}")
    fixed = [
        k for k, v in {"in_chans": in_chans, "activation": activation, "padding": padding}.items() if v is not None
    ]
    if fixed:
        raise Unsupported(
            f"create_model(pretrained=...) takes {', '.join(fixed)} from the weights; leave {', '.join(fixed)} unset"
        )
    weights = resolve_weights(ref) if is_weights_ref(ref) else ref
    drop_head = num_classes is not None and is_weights_ref(weights) and num_classes != weights.num_classes
    model = load_pretrained(
        name,
        weights,
        drop_head=drop_head,
        num_classes=num_classes,
        drop_rate=options["drop_rate"],
        drop_path_rate=options["drop_path_rate"],
        resolution=options["resolution"],
        grad_checkpointing=bool(options["grad_checkpointing"]),
    )
    if not features_only:
        return model
    features = EfficientNetFeatures(model.spec)
    wanted = features.state_dict()
    features.load_state_dict({k: v for k, v in model.state_dict().items() if k in wanted})
    features.set_grad_checkpointing(bool(options.get("grad_checkpointing")))
    features.preprocessing = model.preprocessing
    features.weights_metadata = model.weights_metadata
    return features.eval()


def compound_model(
    phi: float,
    alpha: float = PAPER_ALPHA,
    beta: float = PAPER_BETA,
    gamma: float = PAPER_GAMMA,
    baseline: str | NetworkSpec = "efficientnet_b0",
    *,
    target: float | None = None,
    tol: float = 0.1,
    num_classes: int | None = None,
    in_chans: int | None = None,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
    features_only: bool = False,
) -> EfficientNet | EfficientNetFeatures:
    """A model scaled by the exact rule ``d = α^φ, w = β^φ, r = γ^φ``; the options as in :func:`create_model`."""
    spec = compound_spec(phi, alpha, beta, gamma, baseline, target=target, tol=tol)
    return create_model(
        spec,
        num_classes=num_classes,
        in_chans=in_chans,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
        features_only=features_only,
    )
