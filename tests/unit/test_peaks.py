"""tl_thinktok.peaks against independent computations (hand-written linear-interpolation
quartiles, hand-made traces) and the laws of the two peak rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tl_thinktok.peaks import TraceStats, aggregate, find_peaks, iqr_threshold, trace_stats


def quantile_linear(values, q: float) -> float:
    """Linear-interpolation quantile written out (numpy's default 'linear' method)."""
    s = sorted(float(v) for v in values)
    h = (len(s) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (h - lo) * (s[hi] - s[lo])


def test_quantile_helper_agrees_with_numpy():
    rng = np.random.default_rng(0)
    v = rng.normal(size=37)
    assert math.isclose(quantile_linear(v, 0.75), float(np.percentile(v, 75)), rel_tol=1e-12)


traces = st.lists(
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False), min_size=1, max_size=80
)


@settings(max_examples=60, deadline=None)
@given(traces, st.floats(0, 3))
def test_iqr_rule_laws(mi, tau):
    q1, q3 = quantile_linear(mi, 0.25), quantile_linear(mi, 0.75)
    thr = q3 + tau * (q3 - q1)
    # numpy interpolates as b - (b - a)(1 - t) for t >= 0.5, the helper as a + (b - a) t: each
    # quartile is within 2 ulps of max|mi| of the other, the threshold within (1 + 2 tau) of that
    # (budget 8 u max|mi| (1 + 2 tau)). A value inside that band may fall either side of the rule,
    # so the exact laws use the package's threshold and the independent one is compared to it.
    tol = 8 * np.finfo(np.float64).eps * max(abs(v) for v in mi) * (1 + 2 * tau)
    got = iqr_threshold(mi, tau)
    assert abs(got - thr) <= tol
    peaks = find_peaks(mi, tau=tau)
    assert peaks == sorted(set(peaks))
    assert all(0 <= p < len(mi) for p in peaks)
    assert all(mi[p] > got for p in peaks)
    assert all(mi[i] <= got for i in range(len(mi)) if i not in set(peaks))


def test_iqr_rule_matches_independent_computation():
    rng = np.random.default_rng(1)
    mi = rng.gamma(2.0, size=512)
    mi[[10, 100, 300]] += 40.0
    q1, q3 = np.percentile(mi, [25, 75])
    expected = [i for i, v in enumerate(mi) if v > q3 + 1.5 * (q3 - q1)]
    assert find_peaks(mi) == expected
    assert {10, 100, 300} <= set(expected)
    assert math.isclose(iqr_threshold(mi), q3 + 1.5 * (q3 - q1))
    assert find_peaks(torch.tensor(mi, dtype=torch.float32)) == find_peaks(mi.astype(np.float32))


def test_constant_trace_has_no_iqr_peaks():
    assert find_peaks([2.0] * 10) == []


@settings(max_examples=60, deadline=None)
@given(traces, st.integers(1, 100))
def test_topk_laws(mi, k):
    peaks = find_peaks(mi, method="topk", k=k)
    assert len(peaks) == min(k, len(mi))
    assert peaks == sorted(set(peaks))
    chosen = set(peaks)
    rest = [mi[i] for i in range(len(mi)) if i not in chosen]
    if rest:
        assert min(mi[p] for p in peaks) >= max(rest)


def test_topk_ties_prefer_earlier_and_k_above_length():
    assert find_peaks([1.0, 5.0, 5.0, 5.0, 0.0], method="topk", k=2) == [1, 2]
    assert find_peaks([3.0, 1.0, 2.0], method="topk", k=10) == [0, 1, 2]


HAND = [float(1 + i % 2) for i in range(20)]
HAND[4], HAND[9], HAND[11] = 9.0, 8.0, 7.5


def test_trace_stats_hand_made():
    # 1, 2 alternating (9 ones, 8 twos) + 9, 8, 7.5 at steps 4, 9, 11: Q1 = 1, median = Q3 = 2
    mi = HAND
    q1, q3 = quantile_linear(mi, 0.25), quantile_linear(mi, 0.75)
    med = quantile_linear(mi, 0.5)
    s = trace_stats(mi)
    assert s.peaks == [4, 9, 11]
    assert (s.n_peaks, s.n_steps) == (3, 20)
    assert math.isclose(s.ratio, 3 / 20)
    assert (q1, med, q3) == (1.0, 2.0, 2.0)
    assert (s.max_interval, s.min_interval, s.avg_interval) == (5.0, 2.0, 3.5)
    assert math.isclose(s.mean, sum(mi) / 20)
    mean = sum(mi) / 20
    assert math.isclose(s.std, math.sqrt(sum((v - mean) ** 2 for v in mi) / 20))
    aom = (abs(9 - med) + abs(8 - med) + abs(7.5 - med)) / 3 / (q3 - q1)
    assert math.isclose(s.aom, aom) and math.isclose(aom, (7 + 6 + 5.5) / 3)


def test_trace_stats_undefined_cases_are_nan():
    one = trace_stats([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    assert one.n_peaks == 1
    assert math.isnan(one.max_interval) and math.isnan(one.avg_interval)
    assert math.isnan(one.aom)  # IQR = 0
    none = trace_stats([1.0, 2.0, 3.0])
    assert none.peaks == [] and math.isnan(none.aom) and math.isnan(none.min_interval)


def test_trace_stats_with_given_peaks_and_topk():
    mi = [5.0, 1.0, 2.0, 4.0, 3.0]
    s = trace_stats(mi, peaks=[3, 0])
    assert s.peaks == [0, 3] and s.method == "given" and s.max_interval == 3.0
    t = trace_stats(mi, method="topk", k=2)
    assert t.peaks == [0, 3] and t.method == "topk"
    with pytest.raises(ValueError, match="out of range"):
        trace_stats(mi, peaks=[5])
    with pytest.raises(ValueError, match="duplicates"):
        trace_stats(mi, peaks=[1, 1])
    with pytest.raises(TypeError, match="peak index must be an int"):
        trace_stats(mi, peaks=[1.5])
    assert trace_stats(mi, peaks=np.array([3, 0])).peaks == [0, 3]  # numpy ints accepted


def test_save_load_roundtrip(tmp_path):
    s = trace_stats([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])  # NaN fields included
    path = s.save(tmp_path / "sub" / "stats.json")
    back = TraceStats.load(path)
    assert back.peaks == s.peaks and back.n_steps == s.n_steps
    assert math.isnan(back.aom) and math.isnan(back.avg_interval)
    assert back.to_dict() == s.to_dict()
    assert '"aom": null' in path.read_text()
    assert not list(path.parent.glob(".*tmp*"))  # written atomically, no temp file left


# a file written by the previous TraceStats.save (json.dumps(indent=2), NaN as null)
OLD_FORMAT = """{
  "peaks": [3],
  "n_peaks": 1,
  "n_steps": 8,
  "ratio": 0.125,
  "max_interval": null,
  "min_interval": null,
  "avg_interval": null,
  "mean": 0.125,
  "std": 0.33071891388307384,
  "aom": null,
  "method": "iqr",
  "tau": 1.5,
  "k": 20,
  "extra": {}
}"""


def test_files_of_the_previous_format_load(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(OLD_FORMAT)
    back = TraceStats.load(path)
    s = trace_stats([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    assert back.to_dict() == s.to_dict()
    assert math.isnan(back.max_interval) and back.peaks == [3]
    with pytest.raises(ValueError, match=r"unknown TraceStats fields: \['bogus'\]"):
        TraceStats.from_dict({**s.to_dict(), "bogus": 1})


def test_aggregate_means_skip_undefined():
    a = trace_stats(HAND)
    b = trace_stats([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    agg = aggregate([a, b])
    assert agg["n_traces"] == 2.0
    assert agg["n_peaks"] == (3 + 1) / 2 and agg["n_steps"] == (20 + 8) / 2
    assert math.isclose(agg["ratio"], (3 / 20 + 1 / 8) / 2)
    assert agg["avg_interval"] == 3.5 and agg["avg_interval_n"] == 1.0  # b has < 2 peaks
    assert math.isclose(agg["aom"], a.aom) and agg["aom_n"] == 1.0
    assert math.isclose(agg["std"], (a.std + b.std) / 2)
    assert math.isclose(agg["ratio_of_means"], 2.0 / 14.0)
    with pytest.raises(ValueError, match="at least one"):
        aggregate([])


@pytest.mark.parametrize(
    ("mi", "kwargs", "exc", "match"),
    [
        ([], {}, ValueError, "empty"),
        ([[1.0, 2.0]], {}, ValueError, "1-D"),
        ([1.0, float("nan")], {}, ValueError, "non-finite"),
        ([1.0, float("inf")], {}, ValueError, "non-finite"),
        ([1.0, 2.0], {"method": "zscore"}, ValueError, "unknown peak method"),
        ([1.0, 2.0], {"method": "topk", "k": 0}, ValueError, "k must"),
        ([1.0, 2.0], {"tau": -1.0}, ValueError, "tau"),
        (["a", "b"], {}, TypeError, "sequence of numbers"),
    ],
)
def test_errors(mi, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        find_peaks(mi, **kwargs)
    with pytest.raises(exc, match=match):
        trace_stats(mi, **kwargs)
