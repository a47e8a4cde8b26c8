"""Baselines for compound scaling: named specs, user networks as spec JSON, and the paper's Table 3 check.

**User network protocol.** Any network that can be written as a :class:`~effnet.specs.NetworkSpec` can be
searched (``effnet search --baseline FILE``) and scaled (``effnet scale --baseline FILE``): a JSON object with
``name`` and ``stages`` (each stage: ``block`` ``"mbconv"``, ``"fused_mbconv"``, ``"bottleneck"`` or ``"dwsep"``,
``expand_ratio``, ``kernel``,
``stride``, ``out_channels``, ``repeats``, optional ``se_ratio`` and ``scale_repeats``) plus optional network
fields (``stem_channels``, ``head_channels``, ``resolution``, ``activation``, ...). Depth scaling multiplies each
stage's ``repeats`` (``ceil``), width scaling multiplies every channel count (rounded to ``divisor``), resolution
scaling multiplies ``resolution``. ``NetworkSpec.to_json`` writes such files.

**Table 3 (Tan & Le 2019) variant.** Scaling follows the one rule above for every baseline, with no per-network
exceptions: depth ``d`` gives ``ceil(d·repeats)`` blocks per stage (new blocks are stride-1 copies of the stage's
last block), width ``w`` multiplies *all* channels including the stem (multiples of 8), resolution ``r`` gives
``round(224·r)`` pixels, and "compound" is the paper's α = 1.2, β = 1.1, γ = 1.15 at φ = 2 (d = 1.44, w = 1.21,
296 px, predicted FLOPs ×3.7). ResNet-50 is torchvision's (stride in the 3×3 conv, "v1.5"), 4.09 GMACs.

With this rule the ResNet-50 baseline, r = 2 and compound rows agree with the paper within 5 %, but the
depth and width rows come out **transposed**: d = 4 costs 14.57 GMACs (the paper prints 14.7B for w = 2) and
w = 2 costs 16.12 GMACs (the paper prints 16.2B for d = 4). No consistent depth rule reaches 16.2B at d = 4: every
added ResNet-50 block costs 0.218 GMACs, so ``ceil(4·[3, 4, 6, 3])`` = 64 blocks give 14.57 and 16.2 would need
about 72; and no width rule that keeps the baseline at 4.1B gives 14.7B at w = 2 (not scaling the stem gives
15.87, scaling only the bottleneck's inner channels gives 11.40). :func:`paper_table3` reports both comparisons.
The MobileNetV2 rows d = 4, w = 2 and r = 2 match the paper as labelled (within 3.4 %); its compound row does not
(1.49 GMACs at φ = 2 vs 1.3B printed; the paper does not give the coefficients it used there). MobileNetV1's w = 2
and r = 2 rows agree within 3.3 %, its baseline (0.569 GMACs) prints as 0.6B, and its compound row (the printed
d = 1.4, w = 1.2, r = 1.3: the first block stays with the stem, ``ceil(1.4·[2, 2, 6, 2])`` = 18 more blocks, 291 px)
costs 2.32 GMACs, 0.8 % above the printed 2.3B (2.47 GMACs, +7.4 %, if the first block were repeated too).
Nothing here imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from effnet.architectures import BASELINES, compound_spec, get_spec, list_models, scale
from effnet.cost import cost
from effnet.errors import BadFile, InvalidValue, MissingFile, check_type
from effnet.references import PAPER_TABLE3, PublishedScaling
from effnet.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA
from effnet.specs import NetworkSpec

__all__ = ["load_baseline", "Table3Row", "TABLE3_BASELINES", "paper_table3"]


def load_baseline(name_or_path: str | os.PathLike[str] | NetworkSpec) -> NetworkSpec:
    """A baseline spec from a registered model name or a ``NetworkSpec`` JSON file (the user network protocol).

    Raises :class:`~effnet.errors.InvalidValue` naming the accepted values for an unknown name,
    :class:`~effnet.errors.MissingFile` for a missing file and :class:`~effnet.errors.BadFile` for a file that is
    not a valid spec.
    """
    if isinstance(name_or_path, NetworkSpec):
        return name_or_path
    check_type("baseline", name_or_path, (str, os.PathLike), "a model name, a NetworkSpec JSON file or a NetworkSpec")
    text = os.fspath(name_or_path)
    path = Path(text)
    if text.endswith(".json") or os.sep in text or path.is_file():
        if not path.is_file():
            raise MissingFile(f"--baseline {text}: no such spec file (expected a NetworkSpec JSON file)")
        try:
            return NetworkSpec.from_json(path.read_text(encoding="utf-8"))
        except (ValueError, TypeError) as exc:
            raise BadFile(f"--baseline {text}: not a valid NetworkSpec JSON file: {exc}") from None
    if text in list_models():
        return get_spec(text)
    raise InvalidValue(
        f"--baseline must be one of {', '.join(BASELINES)} (or any name from `effnet table`/list_models()), "
        f"or a NetworkSpec JSON file; got {text!r}"
    )


@dataclass(frozen=True)
class Table3Row:
    """One row of the paper's Table 3: a baseline scaled one way, the paper's FLOPs and effnet's exact MACs."""

    baseline: str
    label: str
    depth: float
    width: float
    resolution: int
    paper_macs: float
    macs: int

    @property
    def deviation(self) -> float:
        """Relative difference ``macs / paper_macs − 1``."""
        return self.macs / self.paper_macs - 1.0

    @property
    def agrees(self) -> bool:
        """Within 5 % of the paper, or equal at the paper's printed precision (0.1B: 0.569B prints as 0.6B)."""
        return abs(self.deviation) <= 0.05 or round(self.macs / 1e8) == round(self.paper_macs / 1e8)


TABLE3_BASELINES = tuple(dict.fromkeys(r.baseline for r in PAPER_TABLE3))
"""Baselines of the paper's Table 3 (``mobilenetv1``, ``mobilenetv2``, ``resnet50``)."""


def _table3_spec(base: NetworkSpec, row: PublishedScaling) -> NetworkSpec:
    if row.depth is None or row.width is None or row.resolution is None:  # compound row without printed multipliers
        return compound_spec(2, PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, base)
    resolution = int(round(base.resolution * row.resolution))
    return scale(base, depth=row.depth, width=row.width, resolution=resolution)


def paper_table3(baseline: str = "resnet50") -> list[Table3Row]:
    """The Table 3 rows for ``baseline`` (one of :data:`TABLE3_BASELINES`) with effnet's exact MACs.

    Rows (:data:`effnet.references.PAPER_TABLE3`): baseline, depth (d = 4), width (w = 2), resolution (r = 2),
    compound (the printed multipliers, or the paper's α, β, γ at φ = 2 where none are printed).
    """
    if baseline not in TABLE3_BASELINES:
        raise InvalidValue(f"baseline must be one of {', '.join(TABLE3_BASELINES)}; got {baseline!r}")
    base = get_spec(baseline)
    out = []
    for row in (r for r in PAPER_TABLE3 if r.baseline == baseline):
        spec = _table3_spec(base, row)
        out.append(Table3Row(baseline, row.label, spec.depth, spec.width, spec.resolution, row.flops, cost(spec).macs))
    return out
