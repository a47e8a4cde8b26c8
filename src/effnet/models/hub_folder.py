"""Hub folders: ``config.json`` + ``model.safetensors`` + ``README.md``, the layout the Hugging Face Hub, timm and
transformers read (timm's ``push_to_hf_hub`` / ``save_for_hf`` writes the same three files).

Two forms, chosen by the spec:

- **timm's own**, for every spec timm's EfficientNet builds (B0-B8, L2, Lite0-4, V2 S/M/L/XL and the TF ports'
  V2 B0-B3, at any class count, input channels, BN eps, padding, activation and input size): ``config.json`` is
  timm's (``architecture``, ``num_classes``, ``num_features``, ``global_pool``, ``label_names``, ``model_args`` for
  what differs from the architecture's defaults, ``pretrained_cfg``) and the tensors carry timm's key names, so
  ``timm.create_model("local-dir:DIR", pretrained=True)`` and transformers' ``TimmWrapper`` load it.
- **effnet's own**, for any other spec (compound-scaled, ``--stem-stride 1``, user specs): ``config.json`` holds
  ``library_name: effnet``, the spec and the same ``pretrained_cfg``; the tensors carry effnet's keys.

Both forms keep the exact spec in ``config.json`` (``effnet_spec``) and effnet's safetensors header, so effnet reads
either back exactly (``effnet.create_model("local-dir:DIR")``, ``load_pretrained``, ``--weights DIR``), and it reads
timm's own folders too (the spec from ``architecture`` + ``model_args``). The model card is
:mod:`effnet.models.model_card`'s. Every bad folder is a one-line error (:mod:`effnet.errors`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from effnet.architectures import get_spec, list_models
from effnet.errors import BadFile, InvalidValue, MissingFile, OutputConflict, Unsupported, WrongType
from effnet.io import atomic_path
from effnet.limits import MAX_CLASSES, check_int, read_json_file
from effnet.models.backbone import timm_pretrained_cfg
from effnet.models.convert import REGISTRY, get_layout, key_map, resolve_model_name
from effnet.models.efficientnet import EfficientNet
from effnet.models.model_card import model_card, run_evaluation
from effnet.models.pretrained import check_preprocessing_fits, default_preprocessing, timm_preprocessing
from effnet.models.weight_files import FORMAT_VERSION, read_safetensors_header, write_effnet_weights
from effnet.preprocessing import Preprocessing
from effnet.specs import NetworkSpec, resolve

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "CARD_FILE",
    "TimmForm",
    "HubFolder",
    "timm_form",
    "read_hub_folder",
    "save_hub_folder",
    "weights_evaluation",
]

CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"
_LEGACY_WEIGHTS = "pytorch_model.bin"
_OPTIONS = (
    *("name", "resolution", "dropout", "drop_path_rate", "activation", "num_classes", "in_chans", "padding"),
    *("bn_eps", "bn_momentum"),
)
"""Spec fields a timm architecture takes from ``model_args`` or ``pretrained_cfg``; the rest is its structure."""
_MODEL_ARGS = (
    *("in_chans", "bn_eps", "bn_momentum", "pad_type", "act_layer", "drop_rate", "drop_path_rate"),
    *("num_classes", "global_pool"),  # config.json's own num_classes decides; the pool must be effnet's (avg)
)
_PADS = {"": "symmetric", "same": "tf_same"}
_IDENTITY = ("architecture", "num_classes", "model_args", "effnet_spec")


@dataclass(frozen=True)
class TimmForm:
    """How timm builds a spec: its ``architecture``, the layout of its tensors (``timm`` or ``tf``) and the
    ``model_args`` that differ from the architecture's defaults."""

    architecture: str
    layout: str
    model_args: Mapping[str, Any]


@dataclass(frozen=True)
class HubFolder:
    """A Hub folder read back: the exact spec, the layout of its tensors, its preprocessing and weights file."""

    path: Path
    spec: NetworkSpec
    source: str
    preprocessing: Preprocessing
    weights: Path
    config: Mapping[str, Any]


def _timm_candidates(spec: NetworkSpec) -> list[TimmForm]:
    forms = []
    for name in list_models():
        base = get_spec(name)
        if spec.replace(**{k: getattr(base, k) for k in _OPTIONS}) != base:
            continue
        for layout in (REGISTRY["tf"], REGISTRY["timm"]):
            if name not in layout.models:
                continue
            own = layout.conventions(base)
            args: dict[str, Any] = {"in_chans": spec.in_chans} if spec.in_chans != 3 else {}
            if spec.bn_eps != own.bn_eps:
                args["bn_eps"] = spec.bn_eps
            if spec.padding != own.padding:
                args["pad_type"] = "same" if spec.padding == "tf_same" else ""
            if spec.activation != base.activation:
                args["act_layer"] = spec.activation
            forms.append(TimmForm(layout.library_name(name), layout.name, args))
    return forms


def timm_form(spec: NetworkSpec) -> TimmForm | None:
    """timm's architecture for ``spec`` (the one needing the fewest ``model_args``), or ``None`` when timm has none:
    a compound-scaled, stem-changed or user spec."""
    forms = _timm_candidates(spec)
    return min(forms, key=lambda f: (len(f.model_args), "pad_type" in f.model_args)) if forms else None


def folder_config(spec: NetworkSpec, pre: Preprocessing, form: TimmForm | None) -> dict[str, Any]:
    """``config.json`` of a Hub folder: timm's keys (with ``architecture`` only in timm's form) and effnet's spec."""
    config: dict[str, Any] = {} if form is not None else {"library_name": "effnet"}
    if form is not None:
        config["architecture"] = form.architecture
    config["num_classes"] = spec.num_classes
    config["num_features"] = resolve(spec).features
    config["global_pool"] = "avg"
    if pre.class_names:
        config["label_names"] = list(pre.class_names)
    if form is not None and form.model_args:
        config["model_args"] = dict(form.model_args)
    config["pretrained_cfg"] = timm_pretrained_cfg(spec, pre, "conv_stem" if form is not None else "stem.conv")
    config["effnet_spec"] = spec.to_dict()
    config["effnet_format_version"] = FORMAT_VERSION
    return config


# --------------------------------------------------------------------------------------------------------- reading


def _architecture_spec(where: str, architecture: Any, model_args: Any) -> tuple[NetworkSpec, str]:
    """The spec timm builds for ``architecture`` with ``model_args``, and its tensors' layout (``timm``/``tf``)."""
    if not isinstance(architecture, str):
        raise BadFile(f"{where}: config.json architecture must be a string, got {architecture!r}")
    try:
        name, hint, _ = resolve_model_name(architecture)
    except ValueError:
        name, hint = "", None
    layout = get_layout("tf" if hint == "tf" else "timm")
    if not name.startswith("efficientnet_") or name not in layout.models:
        raise Unsupported(
            f"{where}: config.json names architecture {architecture!r}, which is not an EfficientNet effnet builds; "
            "accepted: efficientnet_b*/l2/lite*, efficientnetv2_*, tf_efficientnet_*, tf_efficientnetv2_*"
        )
    spec = layout.conventions(get_spec(name))
    args = model_args if model_args is not None else {}
    unknown = sorted(set(args) - set(_MODEL_ARGS)) if isinstance(args, dict) else ["(not an object)"]
    if unknown:
        raise Unsupported(
            f"{where}: config.json model_args {', '.join(map(str, unknown))} are not ones effnet builds; "
            f"it reads {', '.join(_MODEL_ARGS)}"
        )
    if args.get("global_pool", "avg") != "avg":
        raise Unsupported(f"{where}: config.json model_args global_pool {args['global_pool']!r}; effnet pools by 'avg'")
    changes = {k: args[k] for k in ("in_chans", "bn_eps", "bn_momentum", "drop_path_rate") if k in args}
    if "pad_type" in args:
        if args["pad_type"] not in _PADS:
            raise Unsupported(
                f"{where}: config.json model_args pad_type {args['pad_type']!r}; effnet builds '' or 'same'"
            )
        changes["padding"] = _PADS[args["pad_type"]]
    if "act_layer" in args:
        changes["activation"] = "silu" if args["act_layer"] == "swish" else args["act_layer"]
    if "drop_rate" in args:
        changes["dropout"] = args["drop_rate"]
    try:
        return spec.replace(**changes), layout.name
    except (TypeError, ValueError) as exc:
        raise BadFile(f"{where}: config.json model_args: {exc}") from None


def _folder_spec(where: str, config: dict[str, Any]) -> tuple[NetworkSpec, str]:
    """The exact spec of a folder (``effnet_spec``, else timm's ``architecture``) and its tensors' layout."""
    if "effnet_spec" in config:
        try:
            spec = NetworkSpec.from_dict(config["effnet_spec"])
        except (TypeError, ValueError) as exc:
            raise BadFile(f"{where}: config.json effnet_spec is not a valid network spec: {exc}") from None
        if "architecture" not in config:
            return spec, "effnet"
        return spec, _architecture_spec(where, config["architecture"], config.get("model_args"))[1]
    if "architecture" not in config:
        raise BadFile(
            f"{where}: config.json names neither a timm architecture nor an effnet spec; expected a Hub folder "
            "written by effnet export --format hub or by timm"
        )
    spec, layout = _architecture_spec(where, config["architecture"], config.get("model_args"))
    try:
        classes = check_int("num_classes", config.get("num_classes", spec.num_classes), 1, MAX_CLASSES)
    except ValueError as exc:
        raise BadFile(f"{where}: config.json {exc}") from None
    return spec.replace(num_classes=classes), layout


def read_hub_folder(folder: str | os.PathLike[str]) -> HubFolder:
    """Read a Hub folder's ``config.json`` (effnet's or timm's form) and find its weights file.

    A missing folder or file is :class:`~effnet.errors.MissingFile`; a damaged ``config.json`` or one naming no
    model :class:`~effnet.errors.BadFile`; an architecture effnet does not build :class:`~effnet.errors.Unsupported`.
    """
    path = Path(folder)
    where = str(path)
    if not path.is_dir():
        raise MissingFile(f"Hub folder not found: {path}")
    if (path / "best.safetensors").is_file() and (path / "metrics.jsonl").is_file():
        raise BadFile(f"{path} is an effnet train run folder, not a Hub folder; pass its best.safetensors")
    if not (path / CONFIG_FILE).exists():
        raise BadFile(
            f"{path} is a folder with no {CONFIG_FILE}; weights are a file, or a Hub folder ({CONFIG_FILE} + "
            f"{WEIGHTS_FILE})"
        )
    config = read_json_file(path / CONFIG_FILE, "Hub folder config.json")
    if not isinstance(config, dict):
        raise BadFile(f"{where}: config.json must be a JSON object, got {type(config).__name__}")
    spec, source = _folder_spec(where, config)
    cfg = config.get("pretrained_cfg", {})
    if not isinstance(cfg, dict):
        raise BadFile(f"{where}: config.json pretrained_cfg must be an object, got {type(cfg).__name__}")
    labels = config.get("label_names", cfg.get("label_names"))
    names = tuple(labels) if isinstance(labels, list) and len(labels) == spec.num_classes else ()
    try:
        pre = timm_preprocessing(cfg, names, spec.in_chans)
        check_preprocessing_fits(pre, spec)
    except (TypeError, ValueError) as exc:
        raise BadFile(f"{where}: config.json pretrained_cfg does not fit the model: {exc}") from None
    weights = next((path / n for n in (WEIGHTS_FILE, _LEGACY_WEIGHTS) if (path / n).is_file()), None)
    if weights is None:
        raise MissingFile(f"{where}: the Hub folder has neither {WEIGHTS_FILE} nor {_LEGACY_WEIGHTS}")
    return HubFolder(path, spec, source, pre, weights, config)


# --------------------------------------------------------------------------------------------------------- writing


def _identity(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: config.get(k) for k in _IDENTITY}


def _check_target(folder: Path, config: Mapping[str, Any], overwrite: bool) -> None:
    """Refuse (before anything is written) a file, or a folder holding anything, unless ``overwrite``."""
    if folder.exists() and not folder.is_dir():
        raise OutputConflict(f"--output {folder} is an existing file; a Hub folder is a folder (new or empty)")
    if overwrite or not folder.is_dir() or not any(folder.iterdir()):
        return
    existing = folder / CONFIG_FILE
    if not existing.is_file():
        raise OutputConflict(
            f"--output {folder} is not empty and holds no Hub folder ({CONFIG_FILE}); choose a new or empty folder, "
            "or pass --overwrite (overwrite=True) to write into it"
        )
    try:
        old = json.loads(existing.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        old = None
    if not isinstance(old, dict) or _identity(old) != _identity(config):
        raise OutputConflict(
            f"--output {folder} already holds another model ({_describe(old)}, not {_describe(config)}); pass "
            "--overwrite (overwrite=True) to replace it, or choose another folder"
        )
    raise OutputConflict(  # the one rule: a result on disk is never replaced unasked
        f"--output {folder} already holds {_describe(old)} (an earlier export); pass --overwrite (overwrite=True) "
        "to replace it, or choose another folder"
    )


def _describe(config: Any) -> str:
    """A model's name in a folder's config.json, for messages."""
    if not isinstance(config, dict):
        return "an unreadable config.json"
    spec = config.get("effnet_spec") if isinstance(config.get("effnet_spec"), dict) else {}
    name = spec.get("name") or config.get("architecture") or "an unnamed model"
    return f"{name}, {config.get('num_classes')} classes"


def _tensors(model: nn.Module, spec: NetworkSpec, form: TimmForm | None) -> dict[str, Any]:
    """The model's tensors under timm's keys (``form``) or effnet's; a model whose tensors are not its spec's (e.g.
    pruned to a backbone) is a one-line :class:`~effnet.errors.InvalidValue`."""
    state = model.state_dict()
    if set(state) != set(key_map(spec, "effnet")):
        raise InvalidValue(
            f"the model's tensors are not those of its spec {spec.name} (pruned or modified); a Hub folder holds a "
            "whole classifier"
        )
    if form is None:
        return dict(state)
    inverse = {dst: src for src, dst in key_map(spec, "timm").items()}
    return {inverse[k]: v for k, v in state.items()}


@dataclass(frozen=True)
class HubExport:
    """What :func:`save_hub_folder` wrote: the folder, whether timm/transformers read it, and why not."""

    path: Path
    architecture: str | None
    loaders: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"path": str(self.path), "architecture": self.architecture, "loaders": dict(self.loaders)}


def save_hub_folder(
    model: nn.Module,
    folder: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    preprocessing: Preprocessing | None = None,
    evaluation: Mapping[str, Any] | None = None,
) -> HubExport:
    """Write ``model`` as a Hub folder (``config.json``, ``model.safetensors``, ``README.md``) in ``folder``.

    timm's own form where timm builds the spec, else effnet's (module docstring). ``preprocessing`` defaults to the
    model's (``model.preprocessing``), else the spec's resolution at crop 0.875, bicubic, ImageNet mean/std.
    ``evaluation`` (:func:`effnet.models.model_card.run_evaluation`) puts measured accuracy in the model card.
    A ``folder`` that is a file, or holds another model or other files, is refused before anything is written
    unless ``overwrite``; the three files are each replaced atomically. Upload with ``huggingface-cli upload``.
    """
    if not isinstance(model, EfficientNet):
        raise WrongType(f"save_hub_folder needs an effnet classifier (EfficientNet), got {type(model).__name__}")
    spec, target = model.spec, Path(folder)
    pre = preprocessing or getattr(model, "preprocessing", None)
    if pre is None:
        pre = default_preprocessing("effnet", spec.name, spec.resolution, spec.num_classes, in_chans=spec.in_chans)
    check_preprocessing_fits(pre, spec)
    form = timm_form(spec)
    tensors = _tensors(model, spec, form)
    config = folder_config(spec, pre, form)
    card, loaders = model_card(spec, pre, form, evaluation, dict(getattr(model, "weights_metadata", {}) or {}))
    _check_target(target, config, overwrite)
    source = dict(getattr(model, "weights_metadata", {}) or {}).get("source", "effnet")
    with contextlib.ExitStack() as stack:  # all three written first, then renamed into place together
        weights, cfg, readme = (
            stack.enter_context(atomic_path(target / n)) for n in (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE)
        )
        write_effnet_weights(weights, tensors, spec, pre, source)  # timm's keys, or effnet's, with effnet's header
        cfg.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        readme.write_text(card, encoding="utf-8")
    return HubExport(target, form.architecture if form is not None else None, loaders)


def weights_evaluation(weights: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What ``effnet train`` measured for a ``.safetensors`` file of its run folder (for the model card), or
    ``None`` for any other weights (a hub reference, a Hub folder, a foreign checkpoint)."""
    file = Path(weights)
    if file.suffix != ".safetensors" or not file.is_file():
        return None
    return run_evaluation(file, read_safetensors_header(file))
