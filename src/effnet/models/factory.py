"""Models by name, with or without pretrained weights: the factory above the builder.

:func:`create_model` and :func:`compound_model` build from a name or spec (:mod:`effnet.models.efficientnet`);
``pretrained=`` and :func:`load_pretrained` fill the model from a weights file or hub reference in any registered
layout (:mod:`effnet.models.convert`); :func:`save_pretrained` writes effnet's own format
(:mod:`effnet.models.weight_files`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from effnet.architectures import compound_spec, get_spec
from effnet.errors import InvalidValue, Unsupported, WrongType, check_type
from effnet.models.convert import source_spec
from effnet.models.convert.checkpoint import convert_checkpoint
from effnet.models.efficientnet import EfficientNet, EfficientNetFeatures
from effnet.models.hub import LOCAL_PREFIX, HubWeights, default_weights, is_weights_ref, resolve_weights
from effnet.models.hub_folder import read_hub_folder
from effnet.models.pretrained import check_preprocessing_fits, default_preprocessing
from effnet.models.weight_files import write_effnet_weights
from effnet.preprocessing import Preprocessing
from effnet.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA
from effnet.specs import NetworkSpec

__all__ = ["create_model", "compound_model", "load_pretrained", "save_pretrained"]

_SHOW = 5  # offending keys listed in an error


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
    out_indices: tuple[int, ...] | None = None,
    grad_checkpointing: bool = False,
) -> EfficientNet | EfficientNetFeatures:
    """Build a named model (see ``effnet.list_models()``), a spec, or a Hub folder's model (``local-dir:DIR``, as
    in timm: the folder's exact spec; ``pretrained=True`` also loads its weights), with options overriding the spec.

    ``padding="tf_same"`` reproduces TensorFlow's asymmetric padding (for TF-ported weights);
    ``features_only`` returns an :class:`~effnet.models.efficientnet.EfficientNetFeatures` of the features
    ``out_indices`` selects (timm's semantics; default all). Options left ``None`` keep the spec's value.

    ``pretrained``: ``True`` loads the model's default weights (:data:`effnet.models.pretrained.PRETRAINED`:
    torchvision's ``DEFAULT`` where torchvision has them, else timm's Hugging Face repository; a model with
    none is a one-line :class:`~effnet.errors.Unsupported`); a string is a weights reference
    (``hf-hub:timm/efficientnet_b0.ra_in1k``, ``torchvision:EfficientNet_B0_Weights.IMAGENET1K_V1``) or a local
    file, loaded by :func:`load_pretrained` (eval mode, ``.preprocessing`` attached).
    The weights fix ``in_chans``, ``activation`` and ``padding``; a ``num_classes`` other than the hub weights'
    gives a fresh classifier on the pretrained backbone.
    """
    check_type("features_only", features_only, bool, "True or False")
    check_type("grad_checkpointing", grad_checkpointing, bool, "True or False")
    if out_indices is not None and not features_only:
        raise InvalidValue("out_indices selects the outputs of features_only=True; pass features_only=True too")
    if isinstance(name, str) and name.startswith(LOCAL_PREFIX):
        pretrained = name if pretrained is True else pretrained
        name = read_hub_folder(name[len(LOCAL_PREFIX) :]).spec
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
                "out_indices": out_indices,
                "drop_rate": drop_rate,
                "drop_path_rate": drop_path_rate,
                "resolution": resolution,
                "grad_checkpointing": grad_checkpointing,
            },
        )
    spec = _apply_options(
        get_spec(name), num_classes, in_chans, drop_rate, drop_path_rate, activation, padding, resolution
    )
    model = EfficientNetFeatures(spec, out_indices) if features_only else EfficientNet(spec)
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
    features = EfficientNetFeatures(model.spec, options["out_indices"])
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


def _check_module_fits(model: nn.Module, spec: NetworkSpec, source: str, path: object) -> None:
    """An existing module must have been built with the weights' padding, BN eps and activation."""
    need = {"padding": spec.padding, "bn_eps": spec.bn_eps, "activation": spec.activation}
    stated = isinstance(path, HubWeights) and path.spec is not None  # a Hub folder states its exact spec
    if source != "effnet" and not stated:
        need = {k: getattr(source_spec(spec, source), k) for k in need}
    wrong = {k: v for k, v in need.items() if getattr(model.spec, k) != v}
    if wrong:
        fix = ", ".join(f"{k}={v!r}" for k, v in wrong.items())
        where = path.ref if isinstance(path, HubWeights) else path
        raise InvalidValue(
            f"{where}: these {source} weights need a model built with {fix}; pass the model name instead of a module"
        )


def load_pretrained(
    model_or_name: str | NetworkSpec | nn.Module | None,
    path: str | os.PathLike[str] | HubWeights,
    source: str = "auto",
    drop_head: bool = False,
    *,
    num_classes: int | None = None,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
    resolution: int | None = None,
    grad_checkpointing: bool = False,
    allow_nonfinite: bool = False,
) -> EfficientNet:
    """An effnet model holding the weights in ``path`` (any layout in :data:`~effnet.models.convert.SOURCES`), in
    eval mode.

    ``path``: a local file or a hub reference, ``hf-hub:timm/efficientnet_b0.ra_in1k`` or
    ``torchvision:EfficientNet_B0_Weights.IMAGENET1K_V1`` (see
    :func:`~effnet.models.convert.checkpoint.convert_checkpoint`).

    ``model_or_name``: a name (``efficientnet_b0``, ``tf_efficientnet_b2``, ``efficientnet-b3``), a spec, an
    existing :class:`~effnet.models.efficientnet.EfficientNet` (loaded in place; its padding/BN eps must match the
    weights'), or ``None`` (the spec comes from an effnet safetensors header, or is inferred from the tensor
    shapes). ``drop_head`` keeps the model's own freshly initialised classifier (of ``num_classes`` outputs); the
    other options are :func:`create_model`'s. The model gets ``.preprocessing`` and ``.weights_metadata``.
    Weights holding NaN or Inf are a one-line :class:`~effnet.errors.BadFile` naming the first such tensor, unless
    ``allow_nonfinite`` (for debugging).
    """
    converted = convert_checkpoint(
        path, model_or_name, source, drop_head=drop_head, num_classes=num_classes, allow_nonfinite=allow_nonfinite
    )
    spec = converted.spec
    if isinstance(model_or_name, nn.Module):
        _check_module_fits(model_or_name, spec, converted.source, path)
        model = model_or_name
    else:
        model = create_model(
            spec,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            resolution=resolution,
            grad_checkpointing=grad_checkpointing,
        )
    missing, unexpected = model.load_state_dict(converted.state_dict, strict=False)
    allowed = {"classifier.weight", "classifier.bias"} if drop_head else set()
    missing = [k for k in missing if k not in allowed and not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise InvalidValue(
            f"{path}: state dict does not fit the model: missing {missing[:_SHOW]}, unexpected {unexpected[:_SHOW]}"
        )
    model.eval()
    model.preprocessing = converted.preprocessing
    model.weights_metadata = dict(converted.metadata)
    return model


def save_pretrained(
    model: EfficientNet,
    path: str | os.PathLike[str],
    preprocessing: Preprocessing | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model``'s weights as safetensors (atomically) with its spec and preprocessing in the header.

    ``preprocessing`` defaults to ``model.preprocessing`` (set by :func:`load_pretrained`), else the spec's
    resolution at crop 0.875, bicubic, ImageNet mean/std. Returns the path written.
    """
    spec = getattr(model, "spec", None)
    if not isinstance(spec, NetworkSpec):
        raise WrongType("save_pretrained needs an effnet model (with a .spec)")
    check_type("path", path, (str, os.PathLike), "a file path")
    check_type("metadata", metadata, (Mapping, type(None)), "a mapping of str to str, or None")
    if preprocessing is None:
        preprocessing = getattr(model, "preprocessing", None) or default_preprocessing(
            "effnet", spec.name, spec.resolution, spec.num_classes, in_chans=spec.in_chans
        )
    if not isinstance(preprocessing, Preprocessing):
        raise WrongType(f"preprocessing must be an effnet Preprocessing (or None), got {type(preprocessing).__name__}")
    check_preprocessing_fits(preprocessing, spec)
    source = dict(getattr(model, "weights_metadata", {}) or {}).get("source", "effnet")
    return write_effnet_weights(path, model.state_dict(), spec, preprocessing, source, metadata)
