"""Undefined statistics are NaN with counts (issue 14, B5), and the control experiments' pieces
(peak baselines, answer control, frequency-matched random ids) against closed forms."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tl_thinktok.reproduce.outputs import (
    Summary,
    check_outputs,
    count_key,
    nanmean_n,
    save_csv,
    save_json,
)
from tl_thinktok.trace import MITrace


def _trace(mi, peaks, tokens=None, tid="t"):
    n = len(mi)
    gen = list(tokens) if tokens is not None else [5] * n
    return MITrace(tokens=[1] + gen, prompt_len=1, layer=-1, mi=np.asarray(mi, float),
                   peaks=peaks, resid_norm=np.ones(n), id=tid, correct=True)  # fmt: skip


FLAT = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # IQR 0, no peak: AOM and intervals undefined
ONE_PEAK = [0.0, 1.0, 0.0, 1.0, 0.0, 10.0]  # IQR 1: one peak (step 5), AOM defined


def test_table1_intervals_without_two_peaks_are_nan_with_count():
    from tl_thinktok.reproduce.experiments import table1

    r = table1.stats_row("reasoning", "m", [_trace(FLAT, []), _trace(ONE_PEAK, [5])])
    assert math.isnan(r["avg_interval"]) and r["avg_interval_n"] == 0  # was 0.0
    assert math.isnan(r["max_interval"]) and r["max_interval_n"] == 0
    assert r["n_peaks"] == 0.5 and r["n_peaks_n"] == 2


def test_table2_aom_of_traces_without_peaks_is_nan_not_zero():
    from tl_thinktok.reproduce.experiments import fig3_table2

    row = fig3_table2.table2_row("base", "b", [_trace(FLAT, []), _trace(FLAT, [])])
    assert math.isnan(row["aom"]) and row["aom_n"] == 0
    assert row["mean"] == 1.0 and row["mean_n"] == 2
    mixed = fig3_table2.table2_row("r", "m", [_trace(FLAT, []), _trace(ONE_PEAK, [5])])
    assert mixed["aom_n"] == 1 and math.isfinite(mixed["aom"])  # one trace defines it


def test_peaks_robustness_means_skip_undefined_and_count():
    from tl_thinktok.reproduce.experiments import peaks_robustness as pr

    rows = [{"id": "a", "n_steps": 3, "spearman_x": None, "auroc_y": 0.75},
            {"id": "b", "n_steps": 3, "spearman_x": float("nan"), "auroc_y": 0.25}]  # fmt: skip
    m = pr.aggregate_rows(rows)
    assert math.isnan(m["spearman_x"]) and m["spearman_x_n"] == 0  # was 0.0
    assert m["auroc_y"] == 0.5 and m["auroc_y_n"] == 2


def test_nan_is_null_in_json_empty_in_csv_and_allowed_only_with_zero_count(tmp_path):
    assert save_json(tmp_path, "d", {"aom": float("nan"), "x": [1.0, float("nan")]}) == "d.json"
    assert json.loads((tmp_path / "d.json").read_text()) == {"aom": None, "x": [1.0, None]}
    with pytest.raises(ValueError):
        save_json(tmp_path, "inf", {"x": float("inf")})
    save_csv(tmp_path, "d", [{"a": float("nan"), "b": 2.0}])
    assert (tmp_path / "d.csv").read_text().splitlines()[1] == ",2.0"
    assert nanmean_n([None, float("nan")])[1] == 0 and math.isnan(nanmean_n([])[0])
    ok = {"base: AOM": float("nan"), count_key("base: AOM"): 0, "x": 1.0}
    Summary("ok", "t", "m", "d", ok, files=["d.json"]).save(tmp_path)
    assert check_outputs(tmp_path, ["ok"]) == []
    for numbers in ({"base: AOM": float("nan")}, {"a": float("nan"), count_key("a"): 3}):
        Summary("bad", "t", "m", "d", numbers, files=["d.json"]).save(tmp_path)
        (problem,) = check_outputs(tmp_path, ["bad"])
        assert "NaN without a zero count" in problem


def test_auroc_against_pairwise_definition():
    from tl_thinktok.reproduce.experiments.peaks_robustness import auroc

    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.integers(0, 4, 15).astype(float)  # ties
        y = rng.random(15) < 0.3
        if y.all() or not y.any():
            continue
        pairs = [(1.0 if a > b else 0.5 if a == b else 0.0) for a in s[y] for b in s[~y]]
        assert auroc(s, y) == pytest.approx(np.mean(pairs), abs=1e-12)
    assert math.isnan(auroc(np.arange(3.0), np.zeros(3, bool)))


def test_token_baseline_is_leave_one_trace_out():
    """A token that is always a peak in the OTHER traces scores 1; its own trace does not count."""
    from tl_thinktok.reproduce.experiments.peaks_robustness import baseline_scores

    a = _trace([0, 0, 5, 0, 0, 0], [2], tokens=[7, 7, 9, 7, 7, 7], tid="a")
    b = _trace([0, 5, 0, 0, 0, 0], [1], tokens=[7, 9, 7, 7, 7, 7], tid="b")
    c = _trace([0, 0, 0, 0, 0, 0], [], tokens=[7, 7, 7, 7, 8, 7], tid="c")
    sc = baseline_scores([a, b, c])["token_identity"]
    assert sc[0][2] == 1.0 and sc[0][0] == 0.0  # token 9: peak in b
    assert sc[2][4] == pytest.approx(2 / 12)  # token 8 unseen elsewhere: the others' peak rate
    pos = baseline_scores([a, b, c])["position"]
    assert all(len(p) == 6 for p in pos)


def test_answer_specific_steps_and_swapped_null():
    from tl_thinktok.reproduce.experiments import answer_control as ac

    rng = np.random.default_rng(1)
    others = rng.random((19, 30))
    own = rng.random(30)
    own[[3, 17]] = 5.0
    sp = ac.specific_steps(own, others)
    assert sp[3] and sp[17]
    ref = np.array([own[t] > np.percentile(others[:, t], 95) for t in range(30)])
    assert (sp == ref).all()
    # swapped null: other j plays "own" against own + the rest
    pk = [[0, 5]] + [[] for _ in range(18)]
    others[0, [0, 5]] = 9.0
    hits, total = ac.swapped_peak_counts(own, others, pk)
    assert (hits, total) == (2, 2)
    row = ac.trace_row("x", own, others, [3, 17])
    assert row["specific_peak_rate"] == 1.0 and row["n_peaks"] == 2
    assert math.isnan(ac.trace_row("y", own, others, [])["specific_peak_rate"])  # no peaks: NaN


def test_other_answers_are_other_problems():
    from tl_thinktok.reproduce.experiments.answer_control import choose_others

    rng = np.random.default_rng(0)
    answers = ["1", "2", "1", "3", "4"]
    for _ in range(10):
        picked = choose_others(answers, 0, 3, rng)
        assert len(picked) == 3 and 0 not in picked and 2 not in picked  # same answer excluded
    assert choose_others(["1", "1"], 0, 3, rng) == []


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_user_jsonl_fields_and_errors_name_file_and_line(tmp_path):
    from tl_thinktok.datasets import grade, load_dataset, user_dataset

    recs = [{"problem": "Q: 2 + 3 = ?", "final": 5}, {"problem": "Q: 1 + 1 = ?", "final": "2"}]
    good = _write(tmp_path / "qa.jsonl", [json.dumps(recs[0]), "", json.dumps(recs[1])])
    spec = user_dataset(good, "problem", "final")
    items = load_dataset(spec)
    assert [(i.question, i.answer, i.solution) for i in items] == [
        ("Q: 2 + 3 = ?", "5", "5"), ("Q: 1 + 1 = ?", "2", "2")]  # fmt: skip
    assert [i.id for i in items] == ["qa-1", "qa-3"]
    assert grade(spec, "so \\boxed{5}", "5") and not grade(spec, "\\boxed{6}", "5")
    assert user_dataset(good) == str(good.resolve())  # default fields: the path itself
    bad = _write(tmp_path / "bad.jsonl", [json.dumps({"problem": "a", "final": 1}), "{oops"])
    with pytest.raises(ValueError, match=r"bad\.jsonl line 2: not valid JSON"):
        load_dataset(user_dataset(bad, "problem", "final"))
    missing = _write(tmp_path / "m.jsonl", [json.dumps({"problem": "a", "final": 1}),
                                            json.dumps({"problem": "b"})])  # fmt: skip
    with pytest.raises(ValueError, match=r"m\.jsonl line 2: field 'final'"):
        load_dataset(user_dataset(missing, "problem", "final"))
    with pytest.raises(ValueError, match="field 'question'"):
        load_dataset(str(good))  # default field names are not in this file


def test_reproduce_refuses_a_malformed_user_file_before_writing(tmp_path, capsys):
    from tl_thinktok.reproduce.cli import reproduce_main

    bad = _write(tmp_path / "bad.jsonl", [json.dumps({"q": "a", "a": 1}), "[1, 2]"])
    out = tmp_path / "out"
    rc = reproduce_main(["--quick", "--only", "table3", "--dataset", str(bad), "--question-field",
                         "q", "--answer-field", "a", "--out", str(out), "--run-dir",
                         str(tmp_path / "runs"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "bad.jsonl line 2" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())  # nothing written
    rc = reproduce_main(["--only", "table3", "--question-field", "q", "--out", str(out)])
    assert rc == 2 and "need --dataset" in capsys.readouterr().err


@given(
    counts=st.lists(st.integers(0, 500), min_size=20, max_size=80),
    frac=st.floats(0.01, 0.3),
    seed=st.integers(0, 10_000),
)
def test_share_matched_bans_the_target_share_within_the_band(counts, frac, seed):
    """Law: whenever share_matched returns, its banned share is within ±10% of the target, it
    never bans an excluded id and never repeats one; when it raises, no random order reached the
    band from the ids it drew (the message says so)."""
    from collections import Counter

    from tl_thinktok.reproduce.experiments.wordlists import SHARE_TOL, banned_mass, share_matched

    c = Counter({i: n for i, n in enumerate(counts) if n})
    exclude = {0, 1}
    try:
        ids = share_matched(frac, 2, c, exclude, vocab=len(counts), seed=seed)
    except ValueError as err:
        assert "banned share" in str(err) or "never-generated" in str(err)
        return
    if sum(c.values()):
        got = banned_mass(ids, c)
        assert abs(got - frac) <= SHARE_TOL * frac + 1e-12, (got, frac)
    assert not set(ids) & exclude and len(set(ids)) == len(ids)


def test_share_matched_zero_target_and_unreachable_band():
    from collections import Counter

    from tl_thinktok.reproduce.experiments.wordlists import banned_mass, share_matched

    c = Counter({2: 50, 3: 50})  # ids 4..9 never generated
    ids = share_matched(0.0, 3, c, exclude={0}, vocab=10, seed=1)
    assert len(ids) == 3 and banned_mass(ids, c) == 0.0 and not {0, 2, 3} & set(ids)
    with pytest.raises(ValueError, match=r"banned share 0\.2500"):  # only 50% steps exist
        share_matched(0.25, 1, c, exclude=set(), vocab=10, seed=0)


def test_found_list_keeps_the_files_words_or_the_references_first_10(tmp_path):
    from tl_thinktok import organism
    from tl_thinktok.reproduce.experiments.wordlists import FOUND_FILE, found_list
    from tl_thinktok.vocab import ThinkingTokens

    tok = organism.tokenizer()
    assert found_list(tmp_path, tok, None) is None
    words = ["is", "Therefore", "than", "So", "Wait", "Since", "Now", "Then", "Next", "Yes",
             "Okay", "First"]  # fmt: skip
    ThinkingTokens.from_words(tok, words).save_jsonl(tmp_path / FOUND_FILE)
    assert found_list(tmp_path, tok, None).words == words
    assert found_list(tmp_path, tok, 10).words == words[:10]


def test_float32_error_measures_relative_error_and_peak_agreement():
    """float32_error recomputes the float32 MI from the residuals and compares it with the trace's
    stored MI: stored = float32 → no error, equal peaks; stored = 1.1 × float32 → relative error
    |f − 1.1 f| / (1.1 f) = 1/11 at every step (peaks unchanged by scale); one stored step raised
    to a clear peak → the peak sets differ."""
    import torch

    from tl_thinktok.peaks import find_peaks
    from tl_thinktok.reproduce.experiments import peaks_robustness as pr
    from tl_thinktok.testing.reference import reference_nocco_float32

    rng = np.random.default_rng(3)
    resid = torch.tensor(rng.normal(size=(12, 16)) * 5, dtype=torch.float32)
    answer = torch.tensor(rng.normal(size=16) * 5, dtype=torch.float32)
    f32 = np.array([reference_nocco_float32(resid[s], answer) for s in range(12)])
    ts = SimpleNamespace(residuals=lambda tr: {"resid": resid, "answer": answer})

    def trace(mi):
        pk = find_peaks(torch.as_tensor(mi, dtype=torch.float64))
        return SimpleNamespace(id="t", n_steps=12, mi=mi, peaks=pk)

    exact = pr.float32_error(ts, [trace(f32)])
    assert exact["summary"]["float32 rel. error per step: max"] == 0.0
    assert exact["per_trace"][0]["same_peaks"] and exact["per_trace"][0]["rel_rms"] == 0.0
    scaled = pr.float32_error(ts, [trace(f32 * 1.1)])["summary"]
    assert scaled["float32 rel. error per step: median"] == pytest.approx(1 / 11, rel=1e-9)
    assert scaled["float32 rel. error per step [n]"] == 12
    assert scaled["traces whose float32 peaks equal float64's"] == "1 / 1"
    spiked = f32.copy()
    spiked[4] = f32.max() + 50 * (f32.max() - f32.min() + 1.0)
    assert 4 not in find_peaks(torch.as_tensor(f32, dtype=torch.float64))
    out = pr.float32_error(ts, [trace(spiked)])["summary"]
    assert out["traces whose float32 peaks equal float64's"] == "0 / 1"


def test_table1_nulls_other_answer_and_shuffle_laws():
    """null_row on traces built from residuals: with every answer the same vector the 'other
    answer' null equals the own peaks exactly (difference 0, interval [0, 0]); the order-shuffled
    peak position is uniform (mean ≈ 0.5); Gaussian noise gives far fewer peaks than exponential
    noise (0.35% vs 4.8% in the limit)."""
    import torch

    from tl_thinktok.peaks import find_peaks
    from tl_thinktok.reproduce.experiments.table1 import null_row
    from tl_thinktok.reproduce.traces import compute_mi

    rng = np.random.default_rng(0)
    y = torch.tensor(rng.normal(size=24) * 10)
    store, traces = {}, []
    for i in range(6):
        x = torch.tensor(rng.normal(size=(80, 24)) * 10)
        mi = compute_mi(x, y)
        tr = SimpleNamespace(id=f"t{i}", n_steps=80, mi=mi,
                             peaks=find_peaks(torch.as_tensor(mi)))  # fmt: skip
        store[tr.id] = {"resid": x.float(), "answer": y.float()}
        traces.append(tr)
    ts = SimpleNamespace(traces=traces, residuals=lambda tr: store[tr.id])
    nl = null_row(ts, seed=0)
    assert nl["peaks_own_minus_other"] == 0.0 and nl["peaks_own_minus_other_ci"] == [0.0, 0.0]
    assert abs(nl["peak_position_shuffled"] - 0.5) < 0.05
    assert nl["ratio_gaussian_iid"] < 0.02 < 0.03 < nl["ratio_exponential_iid"] < 0.08
    lo, hi = nl["avg_interval_shuffled_range"]
    assert lo <= nl["avg_interval_shuffled"] <= hi


def test_rate_difference_ci_laws():
    """Same own and null counts → difference 0 with interval [0, 0]; a known pooled difference;
    the point estimate lies inside its interval."""
    from tl_thinktok.reproduce.experiments.answer_control import rate_difference_ci

    k, n = np.array([1.0, 2, 3, 0]), np.array([4.0, 4, 4, 4])
    d, ci = rate_difference_ci(k, n, k, n, np.random.default_rng(0))
    assert d == 0.0 and ci == [0.0, 0.0]
    d, ci = rate_difference_ci(np.array([3.0, 3]), np.array([4.0, 4]), np.array([1.0, 1]),
                               np.array([4.0, 4]), np.random.default_rng(0))  # fmt: skip
    assert d == pytest.approx(0.5) and ci[0] <= d <= ci[1]


@given(
    st.lists(st.one_of(st.integers(0, 99999).map(str), st.sampled_from(
        [" ", "So ", " + ", " = ", ". The answer is \\boxed{", "}", "\n", "apples "])),
        min_size=1, max_size=30),
    st.integers(0, 1000),
)  # fmt: skip
def test_counterfactual_solution_changes_every_number_and_nothing_else(parts, seed):
    """Law: the words and layout are kept character for character; every run of digits becomes a
    different run of the same length; equal runs get equal replacements."""
    import re

    from tl_thinktok.reproduce.experiments.answer_control import counterfactual_solution

    text = "".join(parts)
    out = counterfactual_solution(text, np.random.default_rng(seed))
    assert re.sub(r"\d", "#", out) == re.sub(r"\d", "#", text)  # same shape, same words
    old, new = re.findall(r"\d+", text), re.findall(r"\d+", out)
    assert len(old) == len(new)
    mapping: dict = {}
    for a, b in zip(old, new, strict=True):
        assert a != b and len(a) == len(b) and (len(b) == 1 or b[0] != "0")
        assert mapping.setdefault(a, b) == b
