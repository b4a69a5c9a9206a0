"""The importance experiment's statistics against definitions written here, its plan lines, and a
quick run of ``reproduce --only importance`` on the organism (files, four measures, the table)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tl_thinktok.reproduce.context import ExpContext
from tl_thinktok.reproduce.distributed import make_plan
from tl_thinktok.reproduce.experiments import importance as imp


def _ranks(v):
    """Average ranks, by counting (ties share the mean of their positions)."""
    v = np.asarray(v, float)
    return np.array([(v < x).sum() + ((v == x).sum() + 1) / 2 for x in v])


def test_pair_spearman_is_pearson_of_average_ranks_on_defined_steps():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.integers(0, 4, size=30).astype(float)
    b[[3, 7]] = np.nan
    ok = ~np.isnan(b)
    ref = np.corrcoef(_ranks(a[ok]), _ranks(b[ok]))[0, 1]
    assert imp.pair_spearman(a, b) == pytest.approx(ref, abs=1e-12)
    assert math.isnan(imp.pair_spearman(a, np.ones(30)))  # constant side: undefined
    assert math.isnan(imp.pair_spearman(a[:2], b[:2]))


def test_top_overlap_counts_the_shared_top_tenth():
    a = np.arange(20.0)
    b = a.copy()
    b[[19, 18]] = -1.0  # b's top 2 are steps 17, 16; a's are 19, 18
    assert imp.top_overlap(a, a) == 1.0
    assert imp.top_overlap(a, b) == 0.0
    c = a.copy()
    c[18] = -1.0  # top 2 of c: 19, 17
    assert imp.top_overlap(a, c) == 0.5
    assert math.isnan(imp.top_overlap(a[:1], a[:1]))
    tied = np.r_[np.ones(10), np.zeros(10)]  # ten steps tie for the top 2
    assert imp.top_overlap(tied, tied) == 1.0
    picks = [imp.top_overlap(tied, a[::-1].copy(), seed=s) for s in range(40)]
    assert (
        0.0 < np.mean(picks) < 1.0
    )  # ties broken at random, not by position (steps 0, 1 top a[::-1])


def test_token_identity_is_cross_fitted():
    rows = [
        {"gen_ids": [1, 2], "counterfactual": np.array([1.0, 0.0])},
        {"gen_ids": [1, 3], "counterfactual": np.array([0.5, np.nan])},
        {"gen_ids": [4], "counterfactual": np.array([0.0])},
    ]
    ti = imp.token_identity(rows)
    # trace 0: token 1 seen in trace 1 (0.5); token 2 unseen elsewhere -> mean of others (0.25)
    np.testing.assert_allclose(ti[0], [0.5, 0.25])
    np.testing.assert_allclose(ti[1], [1.0, np.mean([1.0, 0.0, 0.0])])
    np.testing.assert_allclose(ti[2], [np.mean([1.0, 0.0, 0.5])])


def test_rank_auroc_equals_the_pairwise_definition():
    rng = np.random.default_rng(3)
    for _ in range(20):
        s = rng.integers(0, 5, size=40).astype(float)  # many ties
        y = rng.random(40) < 0.3
        if y.all() or not y.any():
            continue
        pairs = [(a > b) + 0.5 * (a == b) for a in s[y] for b in s[~y]]
        assert imp.auroc(s, y) == pytest.approx(np.mean(pairs), abs=1e-12)
    assert math.isnan(imp.auroc(np.ones(3), np.zeros(3, bool)))


def test_predict_top_auroc_and_undefined():
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(4):
        cf = rng.random(40)
        row = {"counterfactual": cf}
        for p in imp.PREDICTORS:
            row[p] = rng.random(40)
        row["mi"] = cf.copy()  # a perfect predictor
        row["entropy"] = -cf  # a perfectly reversed one
        rows.append(row)
    res = imp.predict_top(rows, "counterfactual", 20, np.random.default_rng(0))
    assert res["mi"]["auroc"] == 1.0 and res["entropy"]["auroc"] == 0.0
    assert res["mi"]["n_pos"] == 16 and res["mi"]["n"] == 160  # the top decile, pooled
    assert res["mi"]["lo"] <= 1.0 <= res["mi"]["hi"] + 1e-12
    flat = [{**r, "counterfactual": np.zeros(40)} for r in rows]  # nothing important
    out = imp.predict_top(flat, "counterfactual", 5, np.random.default_rng(0))
    assert all(math.isnan(v["auroc"]) and v["n_pos"] == 0 for v in out.values())


def test_ci_steps_and_final_answer():
    rng = np.random.default_rng(0)
    assert imp.ci_steps(10, None, rng) is None and imp.ci_steps(3, 5, rng) is None
    st = imp.ci_steps(50, 8, rng)
    assert len(st) == 8 == len(set(st)) and st == sorted(st)
    assert imp.final_answer("organism", "so \\boxed{ 4 2 }") == "42"
    assert imp.final_answer("gsm8k", "x = 3, so \\boxed{17}") == "17"
    assert imp.final_answer("gsm8k", "it is 1,200 apples") == "1200"
    assert imp.final_answer("gsm8k", "none") is None


def test_plan_lists_importance():
    ctx = ExpContext(model="organism", quick=True)
    plan = make_plan(ctx, ["importance"], probe=False)
    by = {w.experiment: w for w in plan.lines if w.experiment != "importance"}
    assert by["traces"].items == ctx.size("n_traces")
    cf, fw = [w for w in plan.lines if w.experiment == "importance"]
    n, k, s = (imp.size(ctx, key) for key in ("n_traces", "ci_steps", "n_samples"))
    assert (cf.items, cf.tokens_per_item) == (n * k * s, ctx.budget("traces"))
    assert (fw.items, fw.tokens_per_item) == (n, 1)
    full = make_plan(ExpContext(model="organism"), ["importance"], probe=False)
    cf = [w for w in full.lines if w.experiment == "importance"][0]
    b = ExpContext(model="organism").budget("traces")  # every step: mean continuation
    assert cf.tokens_per_item == (b + 1) // 2
    over = ExpContext(model="organism", quick=True, overrides={"importance_n_samples": 5})
    assert imp.size(over, "n_samples") == 5


def test_quick_run_writes_the_four_measures_and_the_table(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from tl_thinktok.reproduce.cli import reproduce_main

    out = tmp_path / "out"
    args = ["--quick", "--only", "importance", "--out", str(out), "--run-dir",
            str(tmp_path / "runs"), "--no-progress"]  # fmt: skip
    assert reproduce_main(args) == 0
    assert (out / "importance.png").stat().st_size > 0
    data = json.loads((out / "importance.json").read_text())
    assert data["measures"] == ["mi", "entropy", "lens_depth", "counterfactual"]
    pairs = {(r["a"], r["b"]) for r in data["agreement"]}
    assert {("mi", "counterfactual"), ("entropy", "lens_depth")} <= pairs
    for r in data["per_trace"]:
        for m in imp.MEASURES:
            assert len(r[m]) == r["n_steps"]
        assert sum(v is not None for v in r["counterfactual"]) == imp.size(
            ExpContext(model="organism", quick=True), "ci_steps"
        )
    assert set(data["auroc_counterfactual_top"]) == set(imp.PREDICTORS)
    # resumable: a second run computes no continuation
    runs = list((tmp_path / "runs").rglob("importance-*/results.jsonl"))
    assert len(runs) == 1
    before = runs[0].read_text()
    assert reproduce_main(args) == 0
    assert runs[0].read_text() == before


def test_set_accepts_importance_keys():
    from tl_thinktok.reproduce.cli import UsageError, _overrides

    assert _overrides(["importance_n_samples=3", "n_traces=2"]) == {
        "importance_n_samples": 3,
        "n_traces": 2,
    }
    with pytest.raises(UsageError, match="importance_bogus"):
        _overrides(["importance_bogus=1"])
