"""Baselines for compound scaling: named specs, user networks as spec JSON, and the paper's Table 3 check.

**User network protocol.** Any network that can be written as a :class:`~effnet.specs.NetworkSpec` can be
searched (``effnet search --baseline FILE``) and scaled (``effnet scale --baseline FILE``): a JSON object with
``name`` and ``stages`` (each stage: ``block`` ``"mbconv"`` or ``"bottleneck"``, ``expand_ratio``, ``kernel``,
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
(1.49 GMACs at φ = 2 vs 1.3B printed; the paper does not give the coefficients it used there). Nothing here
imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from effnet.cost import cost
from effnet.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA
from effnet.specs import BASELINES, NetworkSpec, compound_spec, get_spec, list_models, scale

__all__ = ["BASELINES", "load_baseline", "Table3Row", "PAPER_TABLE3", "paper_table3"]


def load_baseline(name_or_path: str | os.PathLike[str] | NetworkSpec) -> NetworkSpec:
    """A baseline spec from a registered model name or a ``NetworkSpec`` JSON file (the user network protocol).

    Raises ``ValueError`` naming the accepted values for an unknown name, ``FileNotFoundError`` for a missing
    file and ``ValueError`` for a file that is not a valid spec.
    """
    if isinstance(name_or_path, NetworkSpec):
        return name_or_path
    text = os.fspath(name_or_path)
    path = Path(text)
    if text.endswith(".json") or os.sep in text or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"--baseline {text}: no such spec file (expected a NetworkSpec JSON file)")
        try:
            return NetworkSpec.from_json(path.read_text(encoding="utf-8"))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"--baseline {text}: not a valid NetworkSpec JSON file: {exc}") from None
    if text in list_models():
        return get_spec(text)
    raise ValueError(
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


PAPER_TABLE3: dict[str, dict[str, float]] = {
    "resnet50": {"baseline": 4.1e9, "depth": 16.2e9, "width": 14.7e9, "resolution": 16.4e9, "compound": 16.7e9},
    "mobilenetv2": {"baseline": 0.3e9, "depth": 1.2e9, "width": 1.1e9, "resolution": 1.2e9, "compound": 1.3e9},
}
"""FLOPs (multiply-adds) printed in Table 3 of Tan & Le (2019) for ResNet-50 and MobileNetV2."""


def paper_table3(baseline: str = "resnet50") -> list[Table3Row]:
    """The Table 3 rows for ``baseline`` (``resnet50`` or ``mobilenetv2``) with effnet's exact MACs.

    Rows: baseline, depth (d = 4), width (w = 2), resolution (r = 2), compound (paper α, β, γ at φ = 2).
    """
    if baseline not in PAPER_TABLE3:
        raise ValueError(f"baseline must be one of {', '.join(PAPER_TABLE3)}; got {baseline!r}")
    base = get_spec(baseline)
    paper = PAPER_TABLE3[baseline]
    comp = compound_spec(2, PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, baseline)
    variants = {
        "baseline": base,
        "depth": scale(base, depth=4.0),
        "width": scale(base, width=2.0),
        "resolution": scale(base, resolution=2 * base.resolution),
        "compound": comp,
    }
    return [
        Table3Row(baseline, label, spec.depth, spec.width, spec.resolution, paper[label], cost(spec).macs)
        for label, spec in variants.items()
    ]
