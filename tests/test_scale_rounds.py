"""Robust selection of `effnet scale` (#14 item 5): interleaved rounds, spread, anomalies, prefix selection.

No real timing: measurements come from a scripted fake timer.
"""

from __future__ import annotations

import dataclasses
import json
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from effnet.architectures import get_spec, scale
from effnet.cli import main
from effnet.config.scale import Budget, ScaleConfig
from effnet.search.family import family, select
from effnet.search.measure import Measurement
from effnet.search.rounds import fitting_prefix, measure_in_rounds, spread, undercut
from effnet.search.scaleup import scale_family

TINY = scale(get_spec("efficientnet_b0"), width=0.25, resolution=32)


class FakeTimer:
    """Member i's k-th measurement is ``script[i][k]`` ms (the last value repeats); records the call order."""

    def __init__(self, script: list[list[float]]) -> None:
        self.script, self.calls = script, []

    def __call__(self, i: int) -> float:
        k = sum(1 for c in self.calls if c == i)
        self.calls.append(i)
        return self.script[i][min(k, len(self.script[i]) - 1)]


def _rounds(script, **kw):
    timer = FakeTimer(script)
    opts = {"min_rounds": 2, "max_rounds": 5, "max_spread": 0.1, **kw}
    return timer, measure_in_rounds(len(script), timer, float, **opts)


# ------------------------------------------------------------------------------------------- selection


@given(st.lists(st.booleans(), max_size=12))
def test_fitting_prefix_never_above_a_failing_member(fits):
    k = fitting_prefix(fits)
    if not fits or not fits[0]:
        assert k is None
        return
    assert all(fits[: k + 1])  # it and every smaller member fit
    assert k == len(fits) - 1 or not fits[k + 1]  # and it is the largest such


_BASE_MEMBERS = family(baseline=TINY, phi_max=7)


@given(st.lists(st.floats(1.0, 100.0, allow_nan=False), min_size=8, max_size=8), st.floats(1.0, 100.0))
def test_select_with_a_non_monotone_member_never_picks_above_a_failing_phi(latencies, limit):
    """Injected latencies (any order, e.g. phi=2 at 84.9 ms and phi=3/4 at 10 ms) against a latency budget."""
    budget = Budget(max_latency_ms=limit)
    members = []
    for m, lat in zip(_BASE_MEMBERS, latencies, strict=True):
        measured = Measurement("cpu", 1, lat, 1e3 / lat, 1.0, "fake")
        m = dataclasses.replace(m, measurement=measured)
        members.append(dataclasses.replace(m, violations=("slow",) if lat > limit else ()))
    if latencies[0] > limit:
        with pytest.raises(ValueError, match="even phi=0"):
            select(members, budget)
        return
    chosen = select(members, budget)
    assert all(lat <= limit for lat in latencies[: chosen.phi + 1])
    assert chosen.phi == 7 or latencies[chosen.phi + 1] > limit


def test_the_reported_case_picks_below_the_failing_phi():
    """Issue #14: phi=2 measured 84.9 ms, phi=3/4 10-11 ms; with a 50 ms budget the answer is phi=1, not 4 or 7."""
    lat = {0: 8.0, 1: 9.0, 2: 84.9, 3: 10.0, 4: 11.0, 5: 60.0, 6: 70.0, 7: 80.0}
    script = [[lat[m.phi]] for m in _BASE_MEMBERS]
    result = scale_family(_config(Budget(max_latency_ms=50), measure_all=True), measure_one=_fake_measure(script))
    assert result.chosen.phi == 1
    assert "phi=3, 4 fit(s) but phi=2 below does not" in result.note
    flagged = {m.phi: m.anomaly for m in result.members if m.anomaly}
    assert set(flagged) == {3, 4, 5, 6} and "phi=2" in flagged[3]  # 80 ms is within 10 % of 84.9
    # measured where it matters: up to the first miss (phi=2) and one above it, which is caught as an anomaly
    fake = _fake_measure(script)
    planned = scale_family(_config(Budget(max_latency_ms=50)), measure_one=fake)
    assert planned.chosen.phi == 1 and "phi=3 fit(s) but phi=2 below does not" in planned.note
    assert {m.phi for m in planned.members if m.anomaly} == {3}
    assert sorted(set(fake.timer.calls)) == [0, 1, 2, 3]
    rest = [m.to_dict() for m in planned.members[4:]]
    assert all(not r["measured"] and r["latency_ms"] is None and r["predicted_latency_ms"] > 0 for r in rest)
    assert all(r["violations"] == ["not measured: above phi=2, the first to miss the budget"] for r in rest)


# ------------------------------------------------------------------------------------------- rounds


def test_spread_and_undercut():
    assert spread([10.0]) == 0.0 and spread([9.0, 10.0, 11.0]) == pytest.approx(0.2)
    assert undercut([1.0, 2.0, 3.0], 0.1) == {}
    assert undercut([1.0, 10.0, 2.0, 9.5], 0.1) == {2: (1,)}  # 9.5 is within 10 % of 10
    assert undercut([1.0, 10.0, 2.0, 8.0], 0.1) == {2: (1,), 3: (1,)}


def test_stable_members_stop_at_min_rounds_interleaved():
    timer, r = _rounds([[1.0], [2.0], [3.0]])
    assert timer.calls == [0, 1, 2, 0, 1, 2]  # interleaved: one round = every member once, in phi order
    assert r.latencies == ((1.0, 1.0), (2.0, 2.0), (3.0, 3.0)) and r.anomalies == {}


def test_rounds_added_until_spread_is_small():
    # member 1 keeps one outlier round: its spread stays 0.4-0.5, so rounds go on up to max_rounds
    timer, r = _rounds([[1.0], [2.0, 3.0, 2.0, 2.0, 2.0], [4.0]])
    assert [len(x) for x in r.latencies] == [5, 5, 5]  # 2,3 -> spread 0.4; 2,3,2 -> 0.5; 2,3,2,2 -> 0.5; capped
    timer, r = _rounds([[1.0], [2.0, 2.1, 2.0], [4.0]])
    assert [len(x) for x in r.latencies] == [2, 2, 2] and r.spread(1) == pytest.approx(0.1 / 2.05)
    timer, r = _rounds([[1.0], [2.0, 2.5, 2.05, 2.0], [4.0]], max_spread=0.3)
    assert [len(x) for x in r.latencies] == [2, 2, 2]
    timer, r = _rounds([[1.0], [2.0, 3.0, 2.0], [4.0]], min_rounds=1, max_rounds=1)
    assert [len(x) for x in r.latencies] == [1, 1, 1]  # max_rounds bounds the spread loop


def test_a_larger_member_faster_gets_one_more_round_then_is_flagged_or_cleared():
    # member 2 measures faster than member 1 in two stable rounds; its extra round confirms it: flagged
    timer, r = _rounds([[1.0], [5.0], [2.0]])
    assert timer.calls == [0, 1, 2, 0, 1, 2, 1, 2]  # the extra round: member 2 and the member it undercut
    assert r.anomalies == {2: (1,)} and len(r.latencies[0]) == 2
    # ... a transient (one round each, above max_rounds' bound): the extra round brings member 2 back above 1
    timer, r = _rounds([[1.0], [5.0], [2.0, 9.0]], min_rounds=1, max_rounds=1)
    assert timer.calls == [0, 1, 2, 1, 2] and r.anomalies == {} and r.latency(2) == 5.5


@given(
    st.lists(st.lists(st.floats(1.0, 50.0), min_size=1, max_size=8), min_size=1, max_size=6),
    st.integers(1, 3),
    st.integers(0, 3),
    st.sampled_from([0.05, 0.1, 0.3]),
)
def test_round_invariants(script, min_rounds, more, max_spread):
    max_rounds = min_rounds + more
    timer, r = _rounds(script, min_rounds=min_rounds, max_rounds=max_rounds, max_spread=max_spread)
    counts, n, rounds = [len(x) for x in r.latencies], len(script), r.rounds
    assert min_rounds <= rounds <= max_rounds and all(c - rounds in (0, 1) for c in counts)  # at most one extra
    assert timer.calls[: rounds * n] == list(range(n)) * rounds  # interleaved rounds, in phi order
    if rounds < max_rounds:  # stopped early: every member was stable over its interleaved rounds
        assert all(spread(x[:rounds]) <= max_spread for x in r.latencies)
    before = undercut([statistics.median(x[:rounds]) for x in r.latencies], max_spread)
    extra = sorted({k for j, smaller in before.items() for k in (j, *smaller)})
    assert [i for i in range(n) if counts[i] > rounds] == extra  # the extra round: suspects and what they undercut
    final = undercut([r.latency(i) for i in range(n)], max_spread)
    assert r.anomalies == {j: v for j, v in final.items() if j in before}  # flagged: still faster after it


def test_measure_in_rounds_rejects_bad_bounds():
    with pytest.raises(ValueError, match="min-rounds"):
        measure_in_rounds(2, float, float, min_rounds=3, max_rounds=2, max_spread=0.1)


# ------------------------------------------------------------------------------------------- scale_family


def _fake_measure(script: list[list[float]]):
    """A ``measure_one(spec)`` for :func:`scale_family`: member by resolution + width order of the family."""
    order = {m.spec.name: i for i, m in enumerate(_BASE_MEMBERS)}
    timer = FakeTimer(script)

    def measure_one(spec):
        lat = timer(order[spec.name])
        return Measurement("cpu", 1, lat, 1e3 / lat, 10.0 + order[spec.name], "fake", (lat, lat))

    measure_one.timer = timer
    return measure_one


def _config(budget: Budget, **kw) -> ScaleConfig:
    return ScaleConfig(baseline=TINY, phi_max=7, device="cpu", budget=budget, **kw)


def test_scale_family_reports_rounds_spread_and_median_over_rounds():
    script = [[float(2 + i), float(2 + i) * 1.05, float(2 + i) * 0.97] for i in range(8)]
    fake = _fake_measure(script)
    config = _config(Budget(max_latency_ms=5.5), min_rounds=3, max_rounds=3, measure_all=True)
    result = scale_family(config, measure_one=fake)
    assert len(fake.timer.calls) == 24 and result.chosen.phi == 3 and result.note is None
    data = result.to_dict()
    row = data["family"][1]
    assert row["rounds"] == 3 and row["round_latencies_ms"] == [3.0, 3.15, 2.91]
    assert row["latency_ms"] == 3.0 and row["spread"] == pytest.approx(0.08) and row["anomaly"] is None
    assert row["peak_memory_mb"] == 11.0 and len(row["latencies_ms"]) == 6
    assert (data["min_rounds"], data["max_rounds"], data["max_spread"]) == (3, 3, 0.1)
    # the default plan: phi = 0..4 (4 misses at 6 ms) and phi = 5, in 3 rounds; the same choice
    fake = _fake_measure(script)
    planned = scale_family(dataclasses.replace(config, measure_all=False), measure_one=fake)
    assert len(fake.timer.calls) == 18 and planned.chosen.phi == 3 and planned.to_dict()["measured_members"] == 6
    assert fake.timer.calls[:6] == [0, 1, 2, 3, 4, 5]  # upwards from phi = 0, then interleaved rounds


def test_cli_flags_come_from_scale_config(capsys):
    from effnet.cli import build_parser

    args = build_parser().parse_args(["scale"])
    d = ScaleConfig()
    assert (args.min_rounds, args.max_rounds, args.max_spread) == (d.min_rounds, d.max_rounds, d.max_spread)
    assert (args.phi_max, args.repeats, args.warmup, args.batch) == (d.phi_max, d.repeats, d.warmup, d.batch)
    assert main(["scale", "--device", "cpu", "--min-rounds", "3", "--max-rounds", "2"]) == 2
    assert "--max-rounds must be an integer in [--min-rounds, 20]" in capsys.readouterr().err
    assert main(["scale", "--device", "cpu", "--max-spread", "0"]) == 2
    assert "--max-spread must be a fraction in (0, 1]" in capsys.readouterr().err


def test_json_without_device_has_no_rounds(capsys):
    assert main(["scale", "--json", "--phi-max", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["family"][0]["rounds"] is None and data["min_rounds"] is None and data["note"] is None
