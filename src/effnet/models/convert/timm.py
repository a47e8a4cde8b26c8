"""timm's layout, and its TensorFlow ports (``tf_*``), which share its keys.

Keys ``conv_stem``/``bn1``, ``blocks.S.J...``, ``conv_head``/``bn2``, ``classifier``. An MBConv is ``conv_pw``,
``conv_dw``, ``se.conv_reduce``/``se.conv_expand``, ``conv_pwl`` (unexpanded: timm's DepthwiseSeparableConv,
``conv_dw`` then ``conv_pw``); a Fused-MBConv is ``conv_exp`` then ``conv_pwl`` (unexpanded: ``conv``).

- ``timm``: timm's ``efficientnet_b*``, ``efficientnet_lite*``, ``efficientnetv2_*``: symmetric padding, BN eps
  1e-5, momentum 0.1.
- ``tf``: ``tf_efficientnet_*`` / ``tf_efficientnetv2_*``, ported from TensorFlow: ``padding="tf_same"``, BN eps
  1e-3, momentum 0.01. Same keys, so it is chosen by name: a model name starting with ``tf_``, or a file name
  starting with ``tf_efficientnet`` / ``tf-efficientnet``.

Both take timm's ``pretrained_cfg`` as their preprocessing.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from effnet.models.convert.layout import BlockSite, Layout, Pair, conv_bn, squeeze_excite, unsupported_block
from effnet.specs import NetworkSpec

__all__ = ["TIMM", "TF"]


def _mbconv(site: BlockSite) -> list[Pair]:
    src, dst = f"blocks.{site.stage}.{site.index}", site.dst
    if site.expands:
        pairs = conv_bn(f"{src}.conv_pw", f"{src}.bn1", f"{dst}.expand")
        pairs += conv_bn(f"{src}.conv_dw", f"{src}.bn2", f"{dst}.dw")
        project = (f"{src}.conv_pwl", f"{src}.bn3")
    else:  # timm's DepthwiseSeparableConv
        pairs = conv_bn(f"{src}.conv_dw", f"{src}.bn1", f"{dst}.dw")
        project = (f"{src}.conv_pw", f"{src}.bn2")
    if site.config.se_channels:
        pairs += squeeze_excite(f"{src}.se.conv_reduce", f"{src}.se.conv_expand", dst)
    return pairs + conv_bn(*project, f"{dst}.project")


def _fused_mbconv(layout: str, site: BlockSite) -> list[Pair]:
    src, dst = f"blocks.{site.stage}.{site.index}", site.dst
    if site.config.se_channels and not site.expands:
        raise unsupported_block(layout, site)
    if not site.expands:  # timm's ConvBnAct
        return conv_bn(f"{src}.conv", f"{src}.bn1", f"{dst}.expand")
    pairs = conv_bn(f"{src}.conv_exp", f"{src}.bn1", f"{dst}.expand")  # timm's EdgeResidual
    if site.config.se_channels:
        pairs += squeeze_excite(f"{src}.se.conv_reduce", f"{src}.se.conv_expand", dst)
    return pairs + conv_bn(f"{src}.conv_pwl", f"{src}.bn2", f"{dst}.project")


def _timm_conventions(spec: NetworkSpec) -> NetworkSpec:
    return spec.replace(bn_eps=1e-5, bn_momentum=0.1, padding="symmetric")


def _tf_conventions(spec: NetworkSpec) -> NetworkSpec:
    return spec.replace(bn_eps=1e-3, bn_momentum=0.01, padding="tf_same")


def _timm_name(name: str) -> str:
    return name.replace("efficientnet_v2_", "efficientnetv2_")


def _tf_name(name: str) -> str:
    return "tf_" + _timm_name(name)


def _timm_reference(name: str, resolution: int) -> Any:
    import timm  # lazy: an optional package, needed only to build its own module

    return timm.create_model(_timm_name(name))


def _tf_reference(name: str, resolution: int) -> Any:
    import timm  # lazy: an optional package, needed only to build its own module

    return timm.create_model(_tf_name(name))


_V1 = (*(f"efficientnet_b{i}" for i in range(9)), "efficientnet_l2", *(f"efficientnet_lite{i}" for i in range(5)))
_V2 = tuple(f"efficientnet_v2_{s}" for s in ("s", "m", "l", "xl"))

TIMM = Layout(
    name="timm",
    summary="timm efficientnet_b*, efficientnet_lite*, efficientnetv2_*",
    marker="conv_stem.weight",
    conventions=_timm_conventions,
    library_name=_timm_name,
    models=(*_V1, *_V2),
    reference=_timm_reference,
    stem=("conv_stem", "bn1"),
    blocks={"mbconv": _mbconv, "fused_mbconv": partial(_fused_mbconv, "timm")},
    head=("conv_head", "bn2"),
    classifier="classifier",
    preprocessing="timm",
)
TF = Layout(
    name="tf",
    summary="timm tf_efficientnet_*, tf_efficientnetv2_* (TensorFlow ports)",
    variant_of="timm",
    name_prefix="tf_",
    file_pattern=r"tf[_-]efficientnet",
    conventions=_tf_conventions,
    library_name=_tf_name,
    models=(*_V1, *_V2, *(f"efficientnet_v2_b{i}" for i in range(4))),
    reference=_tf_reference,
    stem=("conv_stem", "bn1"),
    blocks={"mbconv": _mbconv, "fused_mbconv": partial(_fused_mbconv, "tf")},
    head=("conv_head", "bn2"),
    classifier="classifier",
    preprocessing="timm",
)
