"""Published figures, typed in once with their source; every other number in effnet is computed.

Source: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019, Table 2 (ImageNet results; FLOPs there are multiply-adds) and Table 3 (scaling MobileNetV1,
MobileNetV2 and ResNet-50 in one or all dimensions);
Tan & Le, "EfficientNetV2: Smaller Models and Faster Training", ICML 2021, Table 7 (ImageNet-1k rows).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "PublishedResult",
    "PAPER_TABLE2",
    "PublishedScaling",
    "PAPER_TABLE3",
    "SOURCE",
    "PublishedV2Result",
    "V2_TABLE7",
    "V2_SOURCE",
]

SOURCE = "Tan & Le, EfficientNet, ICML 2019"
V2_SOURCE = "Tan & Le, EfficientNetV2, ICML 2021"


@dataclass(frozen=True)
class PublishedResult:
    """One row of the paper's Table 2: top-1/top-5 (%), parameters, FLOPs (multiply-adds).

    ``group`` is the EfficientNet the row is compared with; ``effnet_name`` is set when effnet can
    build the model and compute its exact cost.
    """

    model: str
    group: str
    top1: float
    top5: float
    params: float | None
    flops: float | None
    effnet_name: str | None = None


def _e(variant: str, top1: float, top5: float, params: float, flops: float) -> PublishedResult:
    name = f"EfficientNet-{variant.upper()}"
    return PublishedResult(name, name, top1, top5, params, flops, f"efficientnet_{variant}")


def _p(
    model: str,
    group: str,
    top1: float,
    top5: float,
    params: float | None,
    flops: float | None,
    effnet_name: str | None = None,
) -> PublishedResult:
    return PublishedResult(model, f"EfficientNet-{group}", top1, top5, params, flops, effnet_name)


M, B = 1e6, 1e9
PAPER_TABLE2: tuple[PublishedResult, ...] = (
    _e("b0", 77.1, 93.3, 5.3 * M, 0.39 * B),
    _p("ResNet-50", "B0", 76.0, 93.0, 26 * M, 4.1 * B, "resnet50"),
    _p("DenseNet-169", "B0", 76.2, 93.2, 14 * M, 3.5 * B),
    _e("b1", 79.1, 94.4, 7.8 * M, 0.70 * B),
    _p("ResNet-152", "B1", 77.8, 93.8, 60 * M, 11 * B),
    _p("DenseNet-264", "B1", 77.9, 93.9, 34 * M, 6.0 * B),
    _p("Inception-v3", "B1", 78.8, 94.4, 24 * M, 5.7 * B),
    _p("Xception", "B1", 79.0, 94.5, 23 * M, 8.4 * B),
    _e("b2", 80.1, 94.9, 9.2 * M, 1.0 * B),
    _p("Inception-v4", "B2", 80.0, 95.0, 48 * M, 13 * B),
    _p("Inception-resnet-v2", "B2", 80.1, 95.1, 56 * M, 13 * B),
    _e("b3", 81.6, 95.7, 12 * M, 1.8 * B),
    _p("ResNeXt-101", "B3", 80.9, 95.6, 84 * M, 32 * B),
    _p("PolyNet", "B3", 81.3, 95.8, 92 * M, 35 * B),
    _e("b4", 82.9, 96.4, 19 * M, 4.2 * B),
    _p("SENet", "B4", 82.7, 96.2, 146 * M, 42 * B),
    _p("NASNet-A", "B4", 82.7, 96.2, 89 * M, 24 * B),
    _p("AmoebaNet-A", "B4", 82.8, 96.1, 87 * M, 23 * B),
    _p("PNASNet", "B4", 82.9, 96.2, 86 * M, 23 * B),
    _e("b5", 83.6, 96.7, 30 * M, 9.9 * B),
    _p("AmoebaNet-C", "B5", 83.5, 96.5, 155 * M, 41 * B),
    _e("b6", 84.0, 96.8, 43 * M, 19 * B),
    _e("b7", 84.3, 97.0, 66 * M, 37 * B),
    _p("GPipe", "B7", 84.3, 97.0, 557 * M, None),
)
"""Table 2 of the paper, in its order (peers follow the EfficientNet they are compared with)."""


@dataclass(frozen=True)
class PublishedScaling:
    """One row of the paper's Table 3: a baseline scaled one way and the FLOPs (multiply-adds) printed for it.

    ``depth``, ``width`` and ``resolution`` are the multipliers the row's label prints (``resolution`` of the
    baseline's 224 px); all None for a compound row whose multipliers the paper does not give.
    """

    baseline: str
    label: str
    flops: float
    depth: float | None = 1.0
    width: float | None = 1.0
    resolution: float | None = 1.0


def _t3(baseline: str, rows: dict[str, float], compound: tuple[float, float, float] | None) -> list[PublishedScaling]:
    dims = {
        "baseline": (1.0, 1.0, 1.0),
        "depth": (4.0, 1.0, 1.0),
        "width": (1.0, 2.0, 1.0),
        "resolution": (1.0, 1.0, 2.0),
        "compound": compound or (None, None, None),
    }
    return [PublishedScaling(baseline, label, flops, *dims[label]) for label, flops in rows.items()]


PAPER_TABLE3: tuple[PublishedScaling, ...] = (
    *_t3(
        "mobilenetv1",
        {"baseline": 0.6 * B, "width": 2.2 * B, "resolution": 2.2 * B, "compound": 2.3 * B},
        (1.4, 1.2, 1.3),
    ),
    *_t3(
        "mobilenetv2",
        {"baseline": 0.3 * B, "depth": 1.2 * B, "width": 1.1 * B, "resolution": 1.2 * B, "compound": 1.3 * B},
        None,
    ),
    *_t3(
        "resnet50",
        {"baseline": 4.1 * B, "depth": 16.2 * B, "width": 14.7 * B, "resolution": 16.4 * B, "compound": 16.7 * B},
        None,
    ),
)
"""Table 3 of the paper, in its order: "Scaling Up MobileNets and ResNet" (d = 4, w = 2, r = 2 and compound;
MobileNetV1 has no depth row, and only its compound row prints its multipliers, d = 1.4, w = 1.2, r = 1.3)."""


@dataclass(frozen=True)
class PublishedV2Result:
    """One ImageNet-1k row of the V2 paper's Table 7: top-1 (%), parameters, FLOPs (multiply-adds)."""

    model: str
    top1: float
    params: float
    flops: float
    effnet_name: str


V2_TABLE7: tuple[PublishedV2Result, ...] = (
    PublishedV2Result("EfficientNetV2-S", 83.9, 22 * M, 8.8 * B, "efficientnet_v2_s"),
    PublishedV2Result("EfficientNetV2-M", 85.1, 54 * M, 24 * B, "efficientnet_v2_m"),
    PublishedV2Result("EfficientNetV2-L", 85.7, 120 * M, 53 * B, "efficientnet_v2_l"),
)
"""Table 7 of the V2 paper, models trained on ImageNet-1k only (figures as quoted in issue #13; the table's text
could not be retrieved here to re-check them. The paper's Figure 1, which was, gives V2-S 83.9 % with 24M
parameters: the arXiv versions differ on V2-S's parameter count, 22M vs 24M)."""
