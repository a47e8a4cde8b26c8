"""torchvision's layout: ``torchvision.models.efficientnet_b0`` ... ``b7`` and ``efficientnet_v2_s|m|l``.

Keys ``features.N.M.block.I...``: the stem is ``features.0``, stage ``s`` is ``features.{s+1}``, the 1x1 head the
last ``features`` entry, the classifier ``classifier.1``. Inside a block the sub-modules are numbered in order
(expansion conv, depthwise conv, squeeze-excite, projection conv); absent ones take no number. Symmetric padding,
BN eps 1e-5 (V2: 1e-3), momentum 0.1; the preprocessing is the weight enum's.
"""

from __future__ import annotations

from typing import Any

from effnet.models.convert.layout import BlockSite, Layout, Pair, conv_bn, squeeze_excite, unsupported_block
from effnet.specs import NetworkSpec

__all__ = ["LAYOUT"]


def _source(site: BlockSite) -> str:
    return f"features.{site.stage + 1}.{site.index}.block"


def _mbconv(site: BlockSite) -> list[Pair]:
    src, dst = _source(site), site.dst
    pairs: list[Pair] = []
    i = 0
    if site.expands:
        pairs += conv_bn(f"{src}.0.0", f"{src}.0.1", f"{dst}.expand")
        i = 1
    pairs += conv_bn(f"{src}.{i}.0", f"{src}.{i}.1", f"{dst}.dw")
    if site.config.se_channels:
        i += 1
        pairs += squeeze_excite(f"{src}.{i}.fc1", f"{src}.{i}.fc2", dst)
    return pairs + conv_bn(f"{src}.{i + 1}.0", f"{src}.{i + 1}.1", f"{dst}.project")


def _fused_mbconv(site: BlockSite) -> list[Pair]:
    if site.config.se_channels:
        raise unsupported_block("torchvision", site)
    src, dst = _source(site), site.dst
    pairs = conv_bn(f"{src}.0.0", f"{src}.0.1", f"{dst}.expand")
    return pairs + (conv_bn(f"{src}.1.0", f"{src}.1.1", f"{dst}.project") if site.expands else [])


def _conventions(spec: NetworkSpec) -> NetworkSpec:
    bn_eps = 1e-3 if spec.family == "efficientnet_v2" else 1e-5
    return spec.replace(bn_eps=bn_eps, bn_momentum=0.1, padding="symmetric")


def _reference(name: str, resolution: int) -> Any:
    """torchvision's module (its padding does not depend on the input size)."""
    import torchvision  # lazy: an optional package, needed only to build its own module

    return getattr(torchvision.models, name)()


LAYOUT = Layout(
    name="torchvision",
    summary="torchvision.models.efficientnet_b0 ... b7 and efficientnet_v2_s|m|l state dicts",
    marker="features.0.0.weight",
    stem=("features.0.0", "features.0.1"),
    blocks={"mbconv": _mbconv, "fused_mbconv": _fused_mbconv},
    head=("features.{end}.0", "features.{end}.1"),
    classifier="classifier.1",
    conventions=_conventions,
    preprocessing="torchvision",
    models=(*(f"efficientnet_b{i}" for i in range(8)), *(f"efficientnet_v2_{s}" for s in "sml")),
    reference=_reference,
)
