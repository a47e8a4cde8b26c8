"""Pretrained weights by reference: parse ``hf-hub:`` / ``torchvision:`` references, resolve them to a file, its
layout and the publisher's preprocessing. The downloads themselves are :mod:`effnet.models.download`'s.

Two forms, as timm and torchvision users write them:

- ``hf-hub:<namespace>/<repo>[@<revision>]`` (also ``hf_hub:``): a timm model repository on the Hugging Face Hub,
  e.g. ``hf-hub:timm/efficientnet_b0.ra_in1k``. Its ``config.json`` names the timm architecture (which must be an
  EfficientNet / EfficientNetV2 / Lite that effnet builds) and holds the ``pretrained_cfg`` (input_size,
  crop_pct, interpolation, mean, std, num_classes, label_names); the weights are ``model.safetensors``, else
  ``pytorch_model.bin`` (read with ``torch.load(weights_only=True)``).
- ``torchvision:<Enum>[.<MEMBER>]`` or ``torchvision:<model name>`` (the enum's ``DEFAULT``), e.g.
  ``torchvision:EfficientNet_B0_Weights.IMAGENET1K_V1`` or ``torchvision:efficientnet_v2_s``. The file is the
  enum's ``url``; the preprocessing is the enum's ``transforms()`` and the class names its ``meta["categories"]``.
- ``local-dir:<folder>`` (timm's spelling), or a folder given as a path: a Hub folder on disk
  (:mod:`effnet.models.hub_folder`: effnet's or timm's ``config.json`` + ``model.safetensors``), read with its
  exact spec.

:func:`default_weights` names the reference ``pretrained=True`` loads (:data:`effnet.models.pretrained.PRETRAINED`).
Every failure is one line (:mod:`effnet.errors`): an unknown repository, enum or file (``MissingFile``), a
repository that is not an EfficientNet (``Unsupported``), and the download's own failures. :func:`parse_weights_ref`
is pure; nothing is imported from torch, torchvision or huggingface_hub until a reference is resolved.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effnet.errors import BadFile, InvalidValue, MissingFile, Unsupported
from effnet.limits import MAX_CLASSES, MAX_IN_CHANS, check_int, read_json_file
from effnet.models.convert import resolve_model_name
from effnet.models.download import NoSuchEntry, hf_file, torchvision_file
from effnet.models.pretrained import PRETRAINED, timm_class_names, timm_preprocessing, torchvision_preprocessing
from effnet.preprocessing import Preprocessing
from effnet.specs import NetworkSpec

__all__ = [
    "HF_PREFIXES",
    "TORCHVISION_PREFIX",
    "LOCAL_PREFIX",
    "WeightsRef",
    "HubWeights",
    "parse_weights_ref",
    "is_weights_ref",
    "default_weights",
    "resolve_weights",
]

HF_PREFIXES = ("hf-hub:", "hf_hub:")
"""Prefixes of a Hugging Face Hub reference (timm accepts both spellings)."""
TORCHVISION_PREFIX = "torchvision:"
LOCAL_PREFIX = "local-dir:"
"""Prefix of a Hub folder on disk (timm's ``local-dir:``)."""

_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_REPO = re.compile(rf"(?:{_PART}/)?{_PART}")
_REVISION = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_./-]{0,255}")
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")
_ACCEPTED = (
    "hf-hub:<namespace>/<repo>[@<revision>] (e.g. hf-hub:timm/efficientnet_b0.ra_in1k) or "
    "torchvision:<Enum>[.<MEMBER>] / torchvision:<model> "
    "(e.g. torchvision:EfficientNet_B0_Weights.IMAGENET1K_V1) or local-dir:<Hub folder>"
)


@dataclass(frozen=True)
class WeightsRef:
    """A parsed weights reference. ``hub``: ``hf-hub``, ``torchvision`` or ``local-dir``; ``name``: the repository
    id, the torchvision weight enum / model name, or the folder; ``member``: the revision (hf-hub) or enum member
    (torchvision), if given."""

    hub: str
    name: str
    member: str | None = None

    def __str__(self) -> str:
        if self.hub == "hf-hub":
            return f"hf-hub:{self.name}" + (f"@{self.member}" if self.member else "")
        if self.hub == "local-dir":
            return f"{LOCAL_PREFIX}{self.name}"
        return f"torchvision:{self.name}" + (f".{self.member}" if self.member else "")


@dataclass(frozen=True)
class HubWeights:
    """A resolved reference: the local file, the converter layout (``timm``, ``tf``, ``torchvision``), the model
    name the source uses (timm architecture / torchvision model), the source's preprocessing and class count;
    ``spec``: the exact spec, where the source states it (a Hub folder)."""

    ref: str
    path: Path
    source: str
    model_name: str
    preprocessing: Preprocessing
    num_classes: int
    spec: NetworkSpec | None = None


def _is_valid_repo(name: str) -> bool:
    return bool(_REPO.fullmatch(name)) and ".." not in name and "--" not in name and not name.endswith(".git")


def parse_weights_ref(text: str) -> WeightsRef | None:
    """The reference in ``text``, or ``None`` when it has no hub prefix (a local path). Pure; no I/O.

    A prefixed text that is not well formed is a one-line :class:`InvalidValue` saying what is accepted.
    """
    if not isinstance(text, str):
        return None
    prefix = next((p for p in (*HF_PREFIXES, TORCHVISION_PREFIX, LOCAL_PREFIX) if text.startswith(p)), None)
    if prefix is None:
        return None
    body = text[len(prefix) :]
    if prefix == LOCAL_PREFIX:
        if not body:
            raise InvalidValue(f"weights reference {text!r} names no folder; expected local-dir:<folder>")
        return WeightsRef("local-dir", body)
    if prefix in HF_PREFIXES:
        repo, sep, revision = body.partition("@")
        if not _is_valid_repo(repo) or (sep and (not _REVISION.fullmatch(revision) or ".." in revision)):
            raise InvalidValue(f"weights reference {text!r} is not well formed; expected {_ACCEPTED}")
        return WeightsRef("hf-hub", repo, revision or None)
    name, sep, member = body.partition(".")
    if not _IDENT.fullmatch(name) or (sep and not _IDENT.fullmatch(member)):
        raise InvalidValue(f"weights reference {text!r} is not well formed; expected {_ACCEPTED}")
    if sep and not name.endswith("_Weights"):
        raise InvalidValue(
            f"weights reference {text!r}: a member (.{member}) follows a weight enum such as "
            "EfficientNet_B0_Weights; a model name (torchvision:efficientnet_b0) means its "
            "DEFAULT"
        )
    return WeightsRef("torchvision", name, member or None)


def is_weights_ref(value: Any) -> bool:
    """Whether ``value`` is a hub reference: a resolved :class:`HubWeights`, a prefixed string, or a folder (read as
    a Hub folder; a weights *file* is not a reference)."""
    if isinstance(value, str) and value.startswith((*HF_PREFIXES, TORCHVISION_PREFIX, LOCAL_PREFIX)):
        return True
    return isinstance(value, HubWeights) or (isinstance(value, (str, os.PathLike)) and Path(value).is_dir())


def default_weights(name: str) -> str:
    """The reference ``pretrained=True`` loads for model ``name`` (:data:`~effnet.models.pretrained.PRETRAINED`);
    a model with none is a one-line :class:`~effnet.errors.Unsupported`."""
    if name not in PRETRAINED:
        raise Unsupported(
            f"model {name!r} has no default pretrained weights; pretrained=True works for "
            f"{', '.join(PRETRAINED)} (or pass a reference: {_ACCEPTED})"
        )
    return PRETRAINED[name].reference


def resolve_weights(ref: str | WeightsRef | HubWeights) -> HubWeights:
    """Download (or find in the cache) the weights ``ref`` names; the file, its layout and preprocessing."""
    if isinstance(ref, HubWeights):
        return ref
    if isinstance(ref, os.PathLike) or (isinstance(ref, str) and parse_weights_ref(ref) is None and Path(ref).is_dir()):
        ref = WeightsRef("local-dir", os.fspath(ref))
    parsed = ref if isinstance(ref, WeightsRef) else parse_weights_ref(ref)
    if parsed is None:
        raise InvalidValue(f"{ref!r} is not a weights reference; expected {_ACCEPTED}")
    if parsed.hub == "local-dir":
        return _resolve_local(parsed)
    return _resolve_hf(parsed) if parsed.hub == "hf-hub" else _resolve_torchvision(parsed)


def _resolve_local(ref: WeightsRef) -> HubWeights:
    """A Hub folder on disk: its weights file, layout, exact spec and preprocessing (``read_hub_folder``)."""
    from effnet.models.hub_folder import read_hub_folder  # lazy: it imports torch; references parse without it

    folder = read_hub_folder(ref.name)
    architecture = folder.config.get("architecture")
    name = architecture if isinstance(architecture, str) else folder.spec.name
    spec, pre = folder.spec, folder.preprocessing
    return HubWeights(str(ref), folder.weights, folder.source, name, pre, spec.num_classes, spec)


# --------------------------------------------------------------------------------------------
# Hugging Face Hub (timm repositories)
# --------------------------------------------------------------------------------------------


def _timm_config(config: Any, ref: WeightsRef) -> tuple[str, Preprocessing, int]:
    """(architecture, preprocessing, num_classes) from a timm ``config.json``; malformed fields are one line."""
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise Unsupported(
            f"{ref}: config.json names no timm architecture; effnet loads timm EfficientNet "
            "repositories (hf-hub:timm/<architecture>.<tag>)"
        )
    cfg = config.get("pretrained_cfg", config)
    if not isinstance(cfg, dict):
        raise BadFile(f"{ref}: config.json pretrained_cfg must be an object, got {type(cfg).__name__}")
    try:
        num_classes = check_int("num_classes", config.get("num_classes", cfg.get("num_classes", 1000)), 1, MAX_CLASSES)
        size = cfg.get("input_size", [3, 224, 224])
        if not isinstance(size, list) or len(size) != 3:
            raise InvalidValue(f"input_size must be [channels, height, width], got {size!r}")
        in_chans = check_int("input_size channels", size[0], 1, MAX_IN_CHANS)
        pre = timm_preprocessing(cfg, timm_class_names(config, cfg, num_classes), in_chans)
    except (TypeError, ValueError) as exc:
        raise BadFile(f"{ref}: config.json pretrained_cfg: {exc}") from None
    return config["architecture"], pre, num_classes


def _timm_source(architecture: str, ref: WeightsRef) -> str:
    """``tf`` or ``timm`` for an architecture effnet builds; any other is a one-line Unsupported."""
    try:
        name, hint, _ = resolve_model_name(architecture)
    except ValueError:
        name, hint = "", None
    if not name.startswith("efficientnet_"):
        raise Unsupported(
            f"{ref}: timm architecture {architecture!r} is not an EfficientNet effnet builds; "
            "accepted: efficientnet_b*/lite*, efficientnetv2_*, tf_efficientnet_*, "
            "tf_efficientnetv2_*"
        )
    return "tf" if hint == "tf" else "timm"


def _resolve_hf(ref: WeightsRef) -> HubWeights:
    what = str(ref)
    try:
        config_file = hf_file(what, ref.name, ref.member, "config.json")
    except NoSuchEntry:
        raise Unsupported(
            f"{ref}: the repository has no config.json, so it is not a timm model; effnet loads "
            "timm EfficientNet repositories (hf-hub:timm/<architecture>.<tag>)"
        ) from None
    architecture, pre, num_classes = _timm_config(read_json_file(config_file, f"{ref} config.json"), ref)
    source = _timm_source(architecture, ref)
    try:
        weights = hf_file(what, ref.name, ref.member, "model.safetensors", sized=True)
    except NoSuchEntry:
        try:
            weights = hf_file(what, ref.name, ref.member, "pytorch_model.bin", sized=True)
        except NoSuchEntry:
            raise MissingFile(f"{ref}: the repository has neither model.safetensors nor pytorch_model.bin") from None
    return HubWeights(what, weights, source, architecture, pre, num_classes)


# --------------------------------------------------------------------------------------------
# torchvision
# --------------------------------------------------------------------------------------------


def _torchvision_enums() -> list[str]:
    from torchvision import models  # lazy: torchvision is imported only when a reference is resolved

    return sorted(n for n in dir(models) if n.startswith("EfficientNet") and n.endswith("_Weights"))


def _torchvision_member(ref: WeightsRef) -> Any:
    """The weight enum member ``ref`` names (``DEFAULT`` when no member is given)."""
    from torchvision import models  # lazy: torchvision is imported only when a reference is resolved

    if ref.name.endswith("_Weights"):
        enum = getattr(models, ref.name, None)
        if not (isinstance(enum, type) and issubclass(enum, models.WeightsEnum)):
            raise MissingFile(
                f"{ref}: torchvision has no weight enum {ref.name}; EfficientNet ones: "
                f"{', '.join(_torchvision_enums())}"
            )
    else:
        try:
            enum = models.get_model_weights(ref.name)
        except (ValueError, KeyError):
            names = ", ".join(n for n in models.list_models() if n.startswith("efficientnet"))
            raise MissingFile(
                f"{ref}: torchvision has no model {ref.name!r} with weights; EfficientNet ones: {names}"
            ) from None
    if not enum.__name__.startswith("EfficientNet_"):
        raise Unsupported(
            f"{ref}: {enum.__name__} are not EfficientNet weights; effnet loads {', '.join(_torchvision_enums())}"
        )
    member = ref.member or "DEFAULT"
    if member not in enum.__members__:
        raise MissingFile(f"{ref}: {enum.__name__} has no member {member}; it has {', '.join(enum.__members__)}")
    return enum[member]


def _resolve_torchvision(ref: WeightsRef) -> HubWeights:
    weights = _torchvision_member(ref)
    model_name = type(weights).__name__.removesuffix("_Weights").lower()
    pre = torchvision_preprocessing(weights)
    path = torchvision_file(str(ref), weights.url)
    return HubWeights(str(ref), path, "torchvision", model_name, pre, len(weights.meta.get("categories") or ()) or 1000)
