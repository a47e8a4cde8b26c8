import math

import pytest

from effnet.scaling import (
    OFFICIAL_EFFICIENTNET,
    OFFICIAL_LITE,
    compound,
    fast_scaling,
    flops_factor,
    grid,
    round_channels,
    round_repeats,
    single_dimension_points,
)


def test_paper_coefficients_and_flops_factor():
    c = compound(1.0)
    assert (c.depth, c.width, c.resolution_scale) == pytest.approx((1.2, 1.1, 1.15))
    assert flops_factor(1.2, 1.1, 1.15) == pytest.approx(1.2 * 1.1**2 * 1.15**2)
    assert c.flops_factor == pytest.approx(1.92027, rel=1e-5)
    # phi = 1 predicts (1.2, 1.1, 258): close to B2 (1.2, 1.1, 260), not B1 (1.1, 1.0, 240)
    assert c.resolution() == 258
    c3 = compound(3, 1.2, 1.1, 1.15)
    assert c3.depth == pytest.approx(1.2**3) and c3.width == pytest.approx(1.1**3)
    assert compound(0).depth == 1.0


def test_official_tables():
    expected = {
        "b0": (1.0, 1.0, 224, 0.2),
        "b1": (1.0, 1.1, 240, 0.2),
        "b2": (1.1, 1.2, 260, 0.3),
        "b3": (1.2, 1.4, 300, 0.3),
        "b4": (1.4, 1.8, 380, 0.4),
        "b5": (1.6, 2.2, 456, 0.4),
        "b6": (1.8, 2.6, 528, 0.5),
        "b7": (2.0, 3.1, 600, 0.5),
        "b8": (2.2, 3.6, 672, 0.5),
        "l2": (4.3, 5.3, 800, 0.5),
    }
    assert {k: (r.width, r.depth, r.resolution, r.dropout) for k, r in OFFICIAL_EFFICIENTNET.items()} == expected
    lite = {k: (r.width, r.depth, r.resolution, r.dropout) for k, r in OFFICIAL_LITE.items()}
    assert lite == {
        "lite0": (1.0, 1.0, 224, 0.2),
        "lite1": (1.0, 1.1, 240, 0.2),
        "lite2": (1.1, 1.2, 260, 0.3),
        "lite3": (1.2, 1.4, 280, 0.3),
        "lite4": (1.4, 1.8, 300, 0.3),
    }


@pytest.mark.parametrize(
    "channels,width,expected",
    [
        (32, 1.0, 32),
        (32, 1.1, 32),
        (40, 1.1, 48),
        (1280, 1.1, 1408),
        (16, 1.2, 24),
        (24, 1.4, 32),
        (112, 1.8, 200),
        (10, 1.0, 16),
        (4, 1.0, 8),
        (36, 1.0, 40),
        (52, 1.0, 56),
    ],
)
def test_round_channels(channels, width, expected):
    value = round_channels(channels, width)
    assert value == expected
    assert value % 8 == 0 and value >= 0.9 * channels * width


def test_round_channels_never_below_ninety_percent():
    for c in range(1, 2000):
        v = round_channels(c, 1.0)
        assert v % 8 == 0 and v >= 0.9 * c and v >= 8


def test_round_repeats_is_ceil():
    assert [round_repeats(n, 1.1) for n in (1, 2, 3, 4)] == [2, 3, 4, 5]
    assert round_repeats(3, 1.0) == 3 and round_repeats(4, 3.1) == 13


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"phi": -1}, "phi"),
        ({"phi": 1, "alpha": 0.9}, "alpha"),
        ({"phi": 1, "beta": 0.5}, "beta"),
        ({"phi": 1, "gamma": float("nan")}, "gamma"),
        ({"phi": 1, "alpha": 1.5, "target": 2.0, "tol": 0.1}, "target"),
    ],
)
def test_compound_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compound(**kwargs)


def test_compound_target_tolerance_accepts_paper():
    assert compound(1, target=2.0, tol=0.1).phi == 1.0


def test_grid_exact():
    points = grid(target=2.0, tol=0.1, step=0.05)
    values = [round(1 + 0.05 * i, 10) for i in range(21)]
    expected = [(a, b, g) for a in values for b in values for g in values if abs(a * b * b * g * g - 2) <= 0.1 + 1e-12]
    assert points == expected
    assert (1.2, 1.1, 1.15) in points
    assert all(abs(flops_factor(*p) - 2) <= 0.1 + 1e-12 for p in points)
    assert len(points) == len(set(points)) > 50


def test_grid_errors():
    with pytest.raises(ValueError, match="no \\(alpha, beta, gamma\\)"):
        grid(target=2.3, tol=0.01, step=0.5)
    with pytest.raises(ValueError, match="step"):
        grid(step=0)


def test_single_dimension_points_hit_target():
    for p in single_dimension_points(2.0):
        assert flops_factor(*p) == pytest.approx(2.0)


def test_fast_scaling_shares():
    d, w, r = fast_scaling(4.0, 0.8)
    assert d * w**2 * r**2 == pytest.approx(4.0)
    assert math.log(w**2) / math.log(4.0) == pytest.approx(0.8)
    assert math.log(d) / math.log(4.0) == pytest.approx(0.1)
    assert math.log(r**2) / math.log(4.0) == pytest.approx(0.1)
