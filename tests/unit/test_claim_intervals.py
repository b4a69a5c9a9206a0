"""Intervals and nulls behind the organism findings 3, 5 and 10: fig4's peak structure (token
classes, peak rate by sentence type against the order-shuffled null), peaks_robustness' AUROC
intervals and table3's AOM interval and accuracy, each against a direct computation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from tl_thinktok.peaks import trace_stats
from tl_thinktok.reproduce.experiments import fig4, peaks_robustness, table3
from tl_thinktok.reproduce.stats import paired_difference

VOCAB = ["<s>", "</s>", ".", ",", "Wait", "So", "Then", "3", "4", "+", "\n", "is"]


class Tok:
    all_special_ids = [0, 1]

    def decode(self, ids):
        return " ".join(VOCAB[i] for i in ids)


@dataclass
class Tr:
    gen_ids: list[int]
    peaks: list[int]
    mi: list[float] = field(default_factory=list)
    correct: bool | None = None

    @property
    def n_steps(self) -> int:
        return len(self.gen_ids)

    def stats(self):
        return trace_stats(np.asarray(self.mi, np.float64), peaks=self.peaks)


def test_token_class_and_sentence_types():
    assert [fig4.token_class(t, False) for t in (" ,", " 3", " Wait", "\n", " +")] == [
        "comma", "digit", "alphabetic", "line break", "other"]  # fmt: skip
    assert fig4.token_class("</s>", True).startswith("special")
    texts = ["Wait", ",", "3", ".", "So", "4", "\n", "3", "</s>"]
    sp = [False] * 8 + [True]
    assert fig4.sentence_types(texts, sp) == ["Wait"] * 4 + ["So"] * 3 + ["3", "3"]


def test_peak_structure_rates_classes_and_null():
    # Wait , 3 . So 4 . Then 3 . </s>   (ids)
    ids = [4, 3, 7, 2, 5, 8, 2, 6, 7, 2, 1]
    traces = [Tr(ids, [1, 2, 10]), Tr(ids, [5]), Tr(ids[:7], [])]
    old = fig4.MIN_TYPE_STEPS
    fig4.MIN_TYPE_STEPS = 1
    try:
        st = fig4.peak_structure(traces, Tok(), seed=0, n_boot=200, n_shuffles=400)
    finally:
        fig4.MIN_TYPE_STEPS = old
    assert st["n_peaks"] == 4 and st["n_steps"] == 11 + 11 + 7
    assert st["peaks_by_token_class"] == {"digit": 2, "comma": 1, "special (EOS, end of turn)": 1}
    by = st["peak_rate_by_sentence_type"]
    # Wait sentences: 4 steps per trace, 3 traces; peaks 1 and 2 of trace 0
    assert (by["Wait"]["peaks"], by["Wait"]["steps"]) == (2, 12)
    assert by["Wait"]["rate"] == pytest.approx(2 / 12)
    assert (by["So"]["peaks"], by["So"]["steps"]) == (1, 9)
    lo, hi = by["Wait"]["ci"]
    assert lo <= 2 / 12 <= hi
    # the shuffled null spreads the 4 peaks uniformly: expected rate 1/11 + 1/11 (traces 0, 1)
    # over Wait's 4 steps each, i.e. (4*3/11 + 4*1/11) / 12
    assert by["Wait"]["null_mean"] == pytest.approx((12 / 11 + 4 / 11) / 12, abs=0.02)
    assert "step opening (First/Then/Now/Next)" in by  # 'Then' sentences pooled
    nums = fig4.structure_numbers("r", st)
    assert nums["r: share of peaks on non-alphabetic tokens"] == 1.0
    assert nums["r: share of peaks on commas, digits and special tokens"] == 1.0
    assert st["non_alphabetic_peak_tokens"] == {",": 1, "3": 1, "</s>": 1, "4": 1}


def test_auroc_intervals_cover_the_mean_and_skip_undefined():
    rows = [{f"auroc_{k}": v for k in peaks_robustness.PREDICTORS}
            for v in (0.6, 0.7, 0.8, 0.9, None)]  # fmt: skip
    ci = peaks_robustness.auroc_intervals(rows, seed=0, n_boot=500)
    for lo, hi in ci.values():
        assert 0.6 <= lo < 0.75 < hi <= 0.9
    none = peaks_robustness.auroc_intervals(
        [{f"auroc_{k}": None for k in peaks_robustness.PREDICTORS}], seed=0, n_boot=20
    )
    assert all(math.isnan(lo) and math.isnan(hi) for lo, hi in none.values())


def test_table3_row_has_aom_interval_and_wilson_accuracy():
    rng = np.random.default_rng(0)
    traces = []
    for i in range(12):
        mi = rng.random(40)
        mi[5] = 10.0 + i  # one clear peak
        traces.append(Tr(list(range(40)), [5], mi.tolist(), correct=i < 3))
    flat = Tr(list(range(40)), [], [1.0] * 40, correct=None)  # no peaks, ungraded
    row = table3.dataset_row("organism", traces + [flat], seed=0, n_boot=300)
    aoms = np.array([t.stats().aom for t in traces])
    assert row["aom"] == pytest.approx(aoms.mean()) and row["aom_n"] == 12
    assert row["aom_ci_low"] < row["aom"] < row["aom_ci_high"]
    assert aoms.min() <= row["aom_ci_low"] and row["aom_ci_high"] <= aoms.max()
    assert row["accuracy"] == 0.25 and row["accuracy_n"] == 12
    assert (row["accuracy_ci_low"], row["accuracy_ci_high"]) == pytest.approx(
        (0.0889, 0.5323), abs=1e-4
    )  # Wilson 3/12


def test_peak_structure_without_reported_types_or_traces():
    st = fig4.peak_structure([Tr([4, 3, 7, 2], [1])], Tok(), seed=0, n_boot=10, n_shuffles=10)
    assert st["peak_rate_by_sentence_type"] == {} and st["n_peaks"] == 1  # < MIN_TYPE_STEPS
    empty = fig4.peak_structure([], Tok(), seed=0, n_boot=10, n_shuffles=10)
    assert empty["n_peaks"] == 0 and math.isnan(empty["peak_rate"])
    assert fig4.structure_numbers("b", empty)["b: peaks by token class"] == "-"


def test_table3_compares_each_dataset_with_the_trace_dataset():
    """Peak-ratio and AOM differences against the trace dataset: the point is the difference of
    the two means; the two-sample bootstrap interval covers it, excludes 0 for well-separated
    sets and is NaN where one side has no traces with peaks."""
    rng = np.random.default_rng(1)

    def traces(n, n_peaks, height):
        out = []
        for i in range(n):
            mi = rng.random(50)
            k = n_peaks + i % 3  # peak counts vary across traces
            peaks = sorted(rng.choice(50, k, replace=False).tolist())
            mi[peaks] = height + rng.random(k)
            out.append(Tr(list(range(50)), peaks, mi.tolist()))
        return out

    ref, many = traces(20, 1, 5.0), traces(15, 4, 9.0)
    c = table3.compare("gsm8k", many, "organism", ref, seed=0, n_boot=400)
    ra = np.mean([t.stats().ratio for t in many]) - np.mean([t.stats().ratio for t in ref])
    aa = np.mean([t.stats().aom for t in many]) - np.mean([t.stats().aom for t in ref])
    assert c["ratio_diff"] == pytest.approx(ra) and c["aom_diff"] == pytest.approx(aa)
    assert 0 < c["ratio_diff_ci_low"] < ra < c["ratio_diff_ci_high"]
    assert 0 < c["aom_diff_ci_low"] < aa < c["aom_diff_ci_high"]
    assert (c["ratio_n"], c["ratio_ref_n"], c["aom_n"]) == (15, 20, 15)
    same = table3.compare("a", ref, "b", ref, seed=0, n_boot=400)
    assert same["ratio_diff"] == 0 and same["ratio_diff_ci_low"] < 0 < same["ratio_diff_ci_high"]
    flat = [Tr(list(range(10)), [], [1.0] * 10)]
    none = table3.compare("flat", flat, "organism", ref, seed=0, n_boot=50)
    assert math.isnan(none["aom_diff"]) and math.isnan(none["aom_diff_ci_low"])
    assert none["ratio_diff"] == pytest.approx(-np.mean([t.stats().ratio for t in ref]))
    from tl_thinktok.reproduce.stats import two_sample_bootstrap

    with pytest.raises(ValueError, match="both sides, got 0 and 3"):
        two_sample_bootstrap(np.mean, 0, np.mean, 3, rng)


def test_paired_difference_is_the_mean_difference_with_a_covering_interval():
    from tl_thinktok.reproduce.experiments import fig5

    rng = np.random.default_rng(2)
    a = (rng.random(60) < 0.2).astype(float).tolist()
    b = (rng.random(60) < 0.7).astype(float).tolist()
    d = paired_difference(a, b, seed=0, n_boot=500)
    assert d["diff"] == pytest.approx(np.mean(a) - np.mean(b)) and d["n"] == 60
    assert d["lo"] < d["diff"] < d["hi"] < 0  # a clear difference excludes the null
    same = paired_difference(a, a, seed=0, n_boot=100)
    assert (same["diff"], same["lo"], same["hi"]) == (0.0, 0.0, 0.0)  # paired: no spread
    assert math.isnan(paired_difference([], [])["diff"])
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([1.0], [1.0, 0.0])
    runs = [{"per_item": [{"correct": c, "n_new": n} for c, n in zip(cs, (10, 20), strict=True)]}
            for cs in ((True, False), (False, False), (True, True))]  # fmt: skip
    assert fig5._per_problem(runs) == pytest.approx([2 / 3, 1 / 3])
    assert fig5._per_problem(runs, "n_new") == [10.0, 20.0]
