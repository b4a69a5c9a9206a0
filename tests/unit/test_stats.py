"""Wilson intervals and McNemar's exact test of the accuracy experiments, against textbook values
and their laws; evaluation problems disjoint from the discovery problems."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tl_thinktok.reproduce.stats import accuracy_stats, mcnemar_exact, wilson


def test_wilson_textbook_values():
    # Newcombe (1998), Table I: 81/263 -> [0.2553, 0.3662]; 0/10 -> [0, 0.2775]
    lo, hi = wilson(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    assert wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert all(math.isnan(v) for v in wilson(0, 0))


@given(n=st.integers(1, 400), data=st.data())
def test_wilson_contains_the_estimate_and_is_symmetric(n, data):
    k = data.draw(st.integers(0, n))
    lo, hi = wilson(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    lo2, hi2 = wilson(n - k, n)  # swapping success and failure mirrors the interval
    assert lo2 == pytest.approx(1 - hi, abs=1e-12) and hi2 == pytest.approx(1 - lo, abs=1e-12)


def test_mcnemar_exact_textbook_values():
    # b = 7 discordant one way, c = 1 the other: 2 * (1 + 8) / 2^8
    x = [True] * 7 + [False] + [True] * 5
    y = [False] * 7 + [True] + [True] * 5
    r = mcnemar_exact(x, y)
    assert (r["only_original"], r["only_other"], r["n"]) == (7, 1, 13)
    assert r["p"] == pytest.approx(18 / 256)
    assert mcnemar_exact([True] * 10, [False] * 10)["p"] == pytest.approx(2 / 1024)
    assert mcnemar_exact([True, False], [True, False])["p"] == 1.0  # no discordant pair
    with pytest.raises(ValueError, match="differ in length"):
        mcnemar_exact([True], [True, False])


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60))
def test_mcnemar_is_symmetric_and_a_probability(pairs):
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    p_ab, p_ba = mcnemar_exact(a, b)["p"], mcnemar_exact(b, a)["p"]
    assert p_ab == p_ba and 0.0 < p_ab <= 1.0


def test_accuracy_stats_counts_and_interval():
    st_ = accuracy_stats([True, False, False, False])
    assert st_["n"] == 4 and st_["acc"] == 0.25 and st_["lo"] < 0.25 < st_["hi"]
    assert math.isnan(accuracy_stats([])["acc"])


@pytest.mark.parametrize("dataset", ["organism", "gsm8k"])
def test_evaluation_problems_are_disjoint_from_discovery(dataset):
    from tl_thinktok.reproduce.context import ExpContext

    ctx = ExpContext(model="organism", dataset=dataset, quick=True)
    disc = ctx.discovery_items(dataset)
    ev = ctx.eval_items(dataset, 12)
    assert len(disc) == ctx.size("n_traces") and len(ev) == 12
    assert not {i.id for i in disc} & {i.id for i in ev}
    assert not {i.question for i in disc} & {i.question for i in ev}
    assert ctx.eval_items(dataset, 12) == ev  # seeded: the same problems every run
    other = ExpContext(model="organism", dataset="math500", quick=True)
    assert other.discovery_items(dataset) == []  # traces on another dataset: nothing to avoid
