"""Published weights: the table of what ``pretrained=True`` loads, and the one place their preprocessing is derived.

:data:`PRETRAINED` holds one :class:`PretrainedWeights` record per model, as torchvision's ``Weights`` enums do: the
reference that names the file, the layout it is in, its preprocessing and its classes. A file's preprocessing is
derived here only (:func:`file_preprocessing`): an effnet header's own; else what its publisher says (torchvision's
weight enum, timm's ``pretrained_cfg`` or a Hub repository's ``config.json``); else the layout's default, with
mean = std = 0.5 for Lite and AdvProp weights. torchvision and timm are imported inside functions only (they are
read offline); nothing here imports torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from effnet.architectures import get_spec
from effnet.errors import BadFile, InvalidValue
from effnet.models.convert import REGISTRY, get_layout
from effnet.models.convert.layout import Layout
from effnet.preprocessing import (
    DEFAULT_CROP_FRACTION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    Preprocessing,
)
from effnet.specs import NetworkSpec

__all__ = [
    "PretrainedWeights",
    "PRETRAINED",
    "imagenet_class_names",
    "torchvision_preprocessing",
    "timm_preprocessing",
    "timm_class_names",
    "default_preprocessing",
    "check_preprocessing_fits",
    "file_preprocessing",
]


@dataclass(frozen=True)
class PretrainedWeights:
    """One published weights file effnet loads by model name.

    ``reference``: the weights reference that downloads it (:func:`effnet.models.hub.resolve_weights`);
    ``layout``: its converter layout (:mod:`effnet.models.convert`); ``library_name``: its name in the publishing
    library (torchvision's model, timm's architecture and tag); ``num_classes``: ImageNet-1k's 1000.
    """

    model: str
    reference: str
    layout: str
    library_name: str
    num_classes: int = 1000

    def class_names(self) -> tuple[str, ...]:
        """The names of the outputs (ImageNet-1k's, read from torchvision offline)."""
        return imagenet_class_names() if self.num_classes == 1000 else ()

    def preprocessing(self) -> Preprocessing:
        """The eval preprocessing the loaded model gets, read offline (torchvision's enum, timm's pretrained_cfg)."""
        record = get_layout(self.layout)
        known = None
        if record.preprocessing == "torchvision":
            from torchvision import models  # lazy: torchvision is read only when asked

            known = torchvision_preprocessing(models.get_model_weights(self.library_name).DEFAULT)
        return file_preprocessing(get_spec(self.model), record, library_name=self.library_name, known=known)


def _torchvision(model: str) -> PretrainedWeights:
    return PretrainedWeights(model, f"torchvision:{model}", "torchvision", model)


def _timm(model: str, repository: str) -> PretrainedWeights:
    source = "tf" if repository.startswith("tf_") else "timm"
    return PretrainedWeights(model, f"hf-hub:timm/{repository}", source, repository)


PRETRAINED: Mapping[str, PretrainedWeights] = MappingProxyType(
    {
        entry.model: entry
        for entry in (
            *(_torchvision(f"efficientnet_b{i}") for i in range(8)),
            *(_torchvision(f"efficientnet_v2_{s}") for s in "sml"),
            _timm("efficientnet_b8", "tf_efficientnet_b8.ra_in1k"),
            _timm("efficientnet_l2", "tf_efficientnet_l2.ns_jft_in1k"),
            _timm("efficientnet_lite0", "efficientnet_lite0.ra_in1k"),
            *(_timm(f"efficientnet_lite{i}", f"tf_efficientnet_lite{i}.in1k") for i in range(1, 5)),
            _timm("efficientnet_v2_xl", "tf_efficientnetv2_xl.in21k_ft_in1k"),
            *(_timm(f"efficientnet_v2_b{i}", f"tf_efficientnetv2_b{i}.in1k") for i in range(4)),
        )
    }
)
"""What ``create_model(name, pretrained=True)`` loads, by model: torchvision's ``DEFAULT`` where torchvision has
weights, else timm's ImageNet-1k repository on the Hugging Face Hub. ``mobilenetv2`` and ``resnet50`` have none."""


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in output order, from torchvision's weight metadata (offline)."""
    from torchvision.models import EfficientNet_B0_Weights  # lazy: torchvision is read only when asked

    return tuple(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


def torchvision_preprocessing(weights: Any) -> Preprocessing:
    """A torchvision weight enum member's ``transforms()`` (sizes, interpolation, mean/std) and categories."""
    t = weights.transforms()
    crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
    interpolation = getattr(t.interpolation, "value", str(t.interpolation))
    return Preprocessing(
        crop, crop / resize, interpolation, tuple(t.mean), tuple(t.std), tuple(weights.meta.get("categories") or ())
    )


def timm_preprocessing(cfg: Mapping[str, Any], class_names: tuple[str, ...], in_chans: int = 3) -> Preprocessing:
    """A timm ``pretrained_cfg``'s input size, crop, interpolation and mean/std (timm's defaults where absent)."""
    size = cfg.get("input_size", [3, 224, 224])
    return Preprocessing(
        size[-1],
        cfg.get("crop_pct", 0.875),
        cfg.get("interpolation", "bicubic"),
        tuple(cfg.get("mean", IMAGENET_MEAN)),
        tuple(cfg.get("std", IMAGENET_STD)),
        class_names,
        in_chans,
    )


def timm_class_names(config: Mapping[str, Any], cfg: Mapping[str, Any], num_classes: int) -> tuple[str, ...]:
    """A timm ``config.json``'s ``label_names`` when they name every class, else ImageNet's for 1000 classes."""
    labels = config.get("label_names", cfg.get("label_names"))
    if isinstance(labels, dict):
        labels = [labels.get(str(i), labels.get(i)) for i in range(len(labels))]
    if isinstance(labels, list) and len(labels) == num_classes and all(isinstance(x, str) for x in labels):
        return tuple(labels)
    return imagenet_class_names() if num_classes == 1000 else ()


def _torchvision_first_weights(name: str) -> Any:
    """torchvision's first ImageNet weights (``IMAGENET1K_V1``) for model ``name``, if it has any."""
    from torchvision import models  # lazy: torchvision is read only when asked

    variant = name.removeprefix("efficientnet_").upper()  # efficientnet_b3 -> B3, efficientnet_v2_s -> V2_S
    enum = getattr(models, f"EfficientNet_{variant}_Weights", None)
    if enum is None or not name.startswith(("efficientnet_b", "efficientnet_v2_")):
        return None
    return enum.IMAGENET1K_V1


def _timm_cfg(timm_name: str) -> dict[str, Any] | None:
    try:
        from timm.models import get_pretrained_cfg  # lazy: timm is optional
    except ImportError:
        return None
    try:
        cfg = get_pretrained_cfg(timm_name)
    except (RuntimeError, ValueError, KeyError):
        return None
    return None if cfg is None else cfg.to_dict()


def default_preprocessing(
    source: str,
    name: str,
    resolution: int,
    num_classes: int = 1000,
    *,
    inception_norm: bool = False,
    timm_name: str | None = None,
    in_chans: int = 3,
) -> Preprocessing:
    """The published eval preprocessing for weights in layout ``source`` for model ``name``.

    torchvision's layout: its weight enum's crop/resize/interpolation, ImageNet mean/std. timm's (``timm``,
    ``tf``): timm's ``pretrained_cfg`` for ``timm_name`` when timm is installed. Others: ``resolution`` at crop
    fraction 0.875, bicubic. ``inception_norm`` (Lite, AdvProp) sets mean = std = 0.5. ImageNet class names are
    attached when the model has 1000 outputs; mean/std follow ``in_chans``.
    """
    convention = REGISTRY[source].preprocessing if source in REGISTRY else "default"
    return _published(convention, name, resolution, num_classes, inception_norm, timm_name).with_in_chans(in_chans)


def _published(
    convention: str, name: str, resolution: int, num_classes: int, inception_norm: bool, timm_name: str | None
) -> Preprocessing:
    classes = imagenet_class_names() if num_classes == 1000 else ()
    mean, std = (INCEPTION_MEAN, INCEPTION_STD) if inception_norm else (IMAGENET_MEAN, IMAGENET_STD)
    if convention == "torchvision":
        weights = _torchvision_first_weights(name)
        if weights is not None:
            return torchvision_preprocessing(weights).replace(mean=mean, std=std, class_names=classes)
    if convention == "timm" and timm_name:
        cfg = _timm_cfg(timm_name)
        if cfg is not None:
            return timm_preprocessing(cfg, classes)
    return Preprocessing(resolution, DEFAULT_CROP_FRACTION, "bicubic", mean, std, classes)


def check_preprocessing_fits(pre: Preprocessing, spec: NetworkSpec) -> None:
    """``InvalidValue`` unless ``pre`` has one mean/std per input channel and one class name per output (or none)."""
    if len(pre.mean) != spec.in_chans:
        raise InvalidValue(
            f"mean and std have {len(pre.mean)} values; {spec.name} takes {spec.in_chans} input "
            "channel(s), one value each"
        )
    if pre.class_names and len(pre.class_names) != spec.num_classes:
        raise InvalidValue(
            f"{len(pre.class_names)} class names for a model with {spec.num_classes} classes; "
            "give one name per class, or none"
        )


def file_preprocessing(
    spec: NetworkSpec,
    record: Layout,
    *,
    header: Mapping[str, str] | None = None,
    file: Path | None = None,
    library_name: str | None = None,
    known: Preprocessing | None = None,
    drop_head: bool = False,
    ckpt_classes: int | None = None,
) -> Preprocessing:
    """The preprocessing of weights for ``spec`` in layout ``record``: the effnet ``header``'s, else the publisher's
    (``known``: a Hub repository's or weight enum's), else :func:`default_preprocessing` for the layout.

    Lite weights and AdvProp files (``adv-`` / ``_ap`` in the ``file`` name) take mean = std = 0.5; timm's V2 files
    are evaluated at the spec's resolution (timm's ``input_size`` is the train size). ``drop_head`` with another
    class count drops the class names; mean/std follow the spec's input channels.
    """
    header = header or {}
    if "effnet.preprocessing" in header:
        try:
            pre = Preprocessing.from_json(header["effnet.preprocessing"])
            if not (drop_head and ckpt_classes != spec.num_classes):  # a new head: the names are dropped below
                check_preprocessing_fits(pre, spec)
        except ValueError as exc:
            raise BadFile(f"{file}: the header's effnet.preprocessing is invalid: {exc}") from None
    else:
        lite = spec.family == "efficientnet_lite"
        advprop = file is not None and bool(re.search(r"(^|[^a-z])adv[-_]|_ap([-_.]|$)", file.name.lower()))
        name = library_name or record.library_name(spec.name)
        pre = known or _published(
            record.preprocessing, spec.name, spec.resolution, spec.num_classes, lite or advprop, name
        )
        if spec.family == "efficientnet_v2" and record.preprocessing == "timm":
            pre = pre.replace(input_size=spec.resolution)  # timm's input_size is V2's train size; eval is larger
    if drop_head and ckpt_classes != spec.num_classes and len(pre.class_names) != spec.num_classes:
        pre = pre.replace(class_names=())
    return pre.with_in_chans(spec.in_chans)
