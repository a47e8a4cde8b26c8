"""What each weight source publishes about its inputs: eval preprocessing per source and model, ImageNet names.

torchvision's weight enums (crop/resize/interpolation, class names) and timm's ``pretrained_cfg`` are read
offline; both libraries are imported inside functions only.
"""

from __future__ import annotations

from typing import Any

from effnet.preprocessing import (
    DEFAULT_CROP_FRACTION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    Preprocessing,
)

__all__ = ["default_preprocessing", "imagenet_class_names"]


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in output order, from torchvision's weight metadata (offline)."""
    from torchvision.models import EfficientNet_B0_Weights

    return tuple(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


def _torchvision_sizes(name: str) -> tuple[int, int, str] | None:
    """(crop, resize, interpolation) of torchvision's first ImageNet weights for ``name``, if it has any."""
    from torchvision import models

    variant = name.removeprefix("efficientnet_").upper()  # efficientnet_b3 -> B3, efficientnet_v2_s -> V2_S
    enum = getattr(models, f"EfficientNet_{variant}_Weights", None)
    if enum is None or not name.startswith(("efficientnet_b", "efficientnet_v2_")):
        return None
    transforms = enum.IMAGENET1K_V1.transforms
    kwargs = transforms.keywords
    interpolation = kwargs.get("interpolation")
    return int(kwargs["crop_size"]), int(kwargs["resize_size"]), getattr(interpolation, "value", "bilinear")


def _timm_cfg(timm_name: str) -> dict[str, Any] | None:
    try:
        from timm.models import get_pretrained_cfg
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
    """The published eval preprocessing for weights of ``source`` for model ``name``.

    ``torchvision``: its weight enum's crop/resize/interpolation, ImageNet mean/std. ``timm``/``tf``:
    timm's ``pretrained_cfg`` for ``timm_name`` when timm is installed. Others: ``resolution`` at crop
    fraction 0.875, bicubic. ``inception_norm`` (Lite, AdvProp) sets mean = std = 0.5. ImageNet class
    names are attached when the model has 1000 outputs; mean/std follow ``in_chans``.
    """
    return _published_preprocessing(source, name, resolution, num_classes, inception_norm, timm_name).with_in_chans(
        in_chans
    )


def _published_preprocessing(
    source: str, name: str, resolution: int, num_classes: int, inception_norm: bool, timm_name: str | None
) -> Preprocessing:
    classes = imagenet_class_names() if num_classes == 1000 else ()
    mean, std = (INCEPTION_MEAN, INCEPTION_STD) if inception_norm else (IMAGENET_MEAN, IMAGENET_STD)
    if source == "torchvision":
        sizes = _torchvision_sizes(name)
        if sizes is not None:
            crop, resize, interp = sizes
            return Preprocessing(crop, crop / resize, interp, mean, std, classes)
    if source in ("timm", "tf") and timm_name:
        cfg = _timm_cfg(timm_name)
        if cfg is not None:
            return Preprocessing(
                int(cfg["input_size"][-1]),
                float(cfg["crop_pct"]),
                str(cfg.get("interpolation", "bicubic")),
                tuple(cfg["mean"]),
                tuple(cfg["std"]),
                classes,
            )
    return Preprocessing(resolution, DEFAULT_CROP_FRACTION, "bicubic", mean, std, classes)
