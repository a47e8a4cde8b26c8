"""Statistics of a scaling search: per-point intervals and the verdict "does compound beat single-dimension?".

Per point (one (α, β, γ) over its seeds): mean, sample standard deviation and the 95 % Student-t interval of the
mean (``mean ± t(0.975, n−1) · std / √n``). The verdict compares the best fully trained compound point with the
best fully trained single-dimension point by a two-sided Welch t-test at the 5 % level, and says "yes" only
when the compound point is significantly better *and* its whole 95 % interval lies above the accuracy of the
trivial classifier (always the validation set's majority class); significantly worse is "no"; anything else is
"not distinguishable at this budget". With one seed per point there is no noise estimate, so it cannot tell.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["TEST", "ALPHA", "interval95", "welch_p", "verdict"]

ALPHA = 0.05
"""Significance level of the verdict's test."""
TEST = (
    "two-sided Welch t-test at the 5 % level between the best compound and the best single-dimension point "
    "(seeds as samples); 'yes' also needs the compound point's 95 % interval above the majority-class "
    "accuracy"
)
"""The stated test behind the verdict (printed with it and stored in the summary JSON)."""

YES, NO, SAME, CANNOT = "yes", "no", "not distinguishable at this budget", "cannot tell"


def interval95(values: Sequence[float]) -> tuple[float, float] | None:
    """The 95 % Student-t interval of the mean of ``values``; None with fewer than two values."""
    from scipy import stats  # lazy: effnet scale --study loads scipy only for rows with several seeds

    n = len(values)
    if n < 2:
        return None
    mean, std = statistics.fmean(values), statistics.stdev(values)
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return (mean - half, mean + half)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided Welch t-test p-value of equal means; None when undefined (fewer than 2 values, no variance)."""
    from scipy import stats  # lazy: effnet scale --study loads scipy only for rows with several seeds

    if len(a) < 2 or len(b) < 2:
        return None
    if statistics.stdev(a) == 0 and statistics.stdev(b) == 0:
        return 1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return p if math.isfinite(p) else None


def verdict(
    compound: Mapping[str, Any] | None, single: Mapping[str, Any] | None, chance_top1: float | None
) -> dict[str, Any]:
    """The answer for the best compound row and best single-dimension row (each with a ``samples`` list of top-1).

    Returns ``answer`` (yes / no / not distinguishable at this budget / cannot tell), ``reason``, ``p_value``,
    ``test`` and ``chance_top1``.
    """
    out: dict[str, Any] = {"test": TEST, "chance_top1": chance_top1, "p_value": None}
    if compound is None or single is None:
        return {**out, "answer": CANNOT, "reason": "the study has no fully trained compound or single-dimension point"}
    a, b = list(compound["samples"]), list(single["samples"])
    if len(a) < 2 or len(b) < 2:
        return {
            **out,
            "answer": CANNOT,
            "reason": "one seed per point measures no noise; rerun with --seeds 2 "
            "or more (a rerun with another seed moved top-1 by about a point in the issue's example)",
        }
    p = welch_p(a, b)
    out["p_value"] = p
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    low = interval95(a)
    near_chance = chance_top1 is not None and low is not None and low[0] <= chance_top1
    if p is None or p >= ALPHA:
        return {
            **out,
            "answer": SAME,
            "reason": f"difference {ma - mb:+.2f} points is within the noise (p = {p if p is None else round(p, 3)})",
        }
    if ma < mb:
        return {
            **out,
            "answer": NO,
            "reason": f"the best single-dimension point is better by {mb - ma:.2f} points (p = {p:.3g})",
        }
    if near_chance:
        return {
            **out,
            "answer": SAME,
            "reason": f"the compound point's 95 % interval reaches the majority-class "
            f"accuracy {chance_top1:.2f} % (near chance)",
        }
    return {**out, "answer": YES, "reason": f"better by {ma - mb:.2f} points (p = {p:.3g})"}
