"""Answer control: is the "MI with the answer" about the trace's own answer at all?

Every trace's MI trajectory is computed against its own gold answer representation ``h_y`` and
against the representations of ``k`` other problems' gold answers (drawn at random among the
traces with a different answer; the same estimator, layer and steps). Reported:

* mean MI against the own answer vs against the others; the fraction of traces where own > others;
* per-step specificity ``own(t) − mean_j other_j(t)``;
* *answer-specific* steps: own MI above the 95th percentile of the ``k`` others at that step. If
  the own answer were exchangeable with the others, about 5% of the steps would be (fewer for
  small ``k``: the empirical rate over all steps is the baseline);
* the fraction of the paper's IQR peaks that are answer-specific, against a null: the same test
  with each other answer swapped in as "own" (peaks are extremes of their own trajectory, so they
  beat the others more often than 5% even when the answer does not matter);
* overlap of the peak sets (Jaccard) and correlation of the trajectories, own vs each other;
* a *counterfactual answer*: the trace's own gold solution with every number replaced
  (:func:`counterfactual_solution`: the same words and layout, other numbers and another final
  answer). Other problems' answers differ in their words too; this one differs only in what is
  "about the answer", so MI own > counterfactual separates the answer's content from the words a
  solution shares with its question. Reported: mean MI own vs counterfactual with a 95% CI of the
  per-trace difference, the share of steps where own > counterfactual, and at the own IQR peaks
  against its null — at the counterfactual trajectory's own peaks, the share where it beats the
  own answer (peaks are extremes of their trajectory either way) — with a trace-bootstrap 95% CI
  of the difference.

Run alone: ``python -m tl_thinktok reproduce --only answer_control --quick``.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from tl_thinktok.reproduce.context import ExpContext
from tl_thinktok.reproduce.outputs import (
    Summary,
    count_key,
    mean_ci,
    nanmean_n,
    save_csv,
    save_fig,
    save_json,
)
from tl_thinktok.reproduce.stats import trace_bootstrap
from tl_thinktok.reproduce.traces import compute_mi, peak_indices

NAME = "answer_control"
#: Other problems' answers per trace (full / quick).
K_OTHERS = {"full": 20, "quick": 5}
#: Own MI above this percentile of the others at a step = answer-specific step.
PERCENTILE = 95.0


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN if a side is constant or shorter than 2."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def specific_steps(own: np.ndarray, others: np.ndarray, q: float = PERCENTILE) -> np.ndarray:
    """Boolean per step: own MI above the ``q``-th percentile of the others' MI at that step.

    Args:
        own: ``[step]`` MI against the own answer.
        others: ``[k, step]`` MI against ``k`` other answers.
    """
    return np.asarray(own) > np.percentile(np.asarray(others), q, axis=0)


def trace_row(tid: str, own: np.ndarray, others: np.ndarray, peaks: list[int]) -> dict:
    """Per-trace answer-control statistics (undefined ones NaN)."""
    from tl_thinktok.reproduce.experiments.peaks_robustness import jaccard

    spec = own - others.mean(0)
    sp = specific_steps(own, others)
    other_peaks = [peak_indices(o) for o in others]
    null_hits, null_n = swapped_peak_counts(own, others, other_peaks)
    return {
        "id": tid,
        "n_steps": int(own.size),
        "k_others": int(others.shape[0]),
        "mean_mi_own": float(own.mean()),
        "mean_mi_others": float(others.mean()),
        "own_above_others": bool(own.mean() > others.mean()),
        "mean_specificity": float(spec.mean()),
        "specific_step_rate": float(sp.mean()),
        "n_peaks": len(peaks),
        "specific_peak_rate": float(sp[peaks].mean()) if peaks else float("nan"),
        "specificity_at_peaks": float(spec[peaks].mean()) if peaks else float("nan"),
        "n_specific_peaks": int(sp[peaks].sum()),
        "null_specific_peak_rate": null_hits / null_n if null_n else float("nan"),
        "null_n_specific_peaks": null_hits,
        "null_n_peaks": null_n,
        "peak_jaccard_own_vs_other": float(np.mean([jaccard(peaks, p) for p in other_peaks])),
        "trajectory_corr_own_vs_other": nanmean_n([pearson(own, o) for o in others])[0],
    }


def swapped_peak_counts(
    own: np.ndarray, others: np.ndarray, other_peaks: list[list[int]]
) -> tuple[int, int]:
    """The same peak test with each other answer swapped in for the own one (the null).

    A peak is an extreme of its own trajectory, so it tends to beat the others at its step even
    when the answer does not matter (selection). Here every other answer ``j`` plays "own": its
    IQR peaks are tested against the own answer and the remaining others. Returns (peaks found
    specific, peaks tested), summed over ``j``.
    """
    hits = total = 0
    for j, pk in enumerate(other_peaks):
        if not pk:
            continue
        rest = np.concatenate([own[None], np.delete(others, j, axis=0)])
        sp = specific_steps(others[j], rest)
        hits += int(sp[pk].sum())
        total += len(pk)
    return hits, total


_NUMBER = re.compile(r"\d+")


def counterfactual_solution(text: str, rng: np.random.Generator) -> str:
    """``text`` with every run of digits replaced by another of the same length (no leading zero
    unless one digit; the same run → the same replacement), so words and layout stay and every
    number — the final answer included — changes.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> t = counterfactual_solution("So 12 + 3 = 15. The answer is 15.", rng)
        >>> t.startswith("So ") and "12" not in t and t.count(t.split()[-1][:-1]) == 2
        True
    """
    mapping: dict[str, str] = {}

    def swap(m: re.Match) -> str:
        s = m.group(0)
        if s not in mapping:
            lo = 10 ** (len(s) - 1) if len(s) > 1 else 0
            while True:
                v = str(int(rng.integers(lo, 10 ** len(s))))
                if v != s:
                    break
            mapping[s] = v
        return mapping[s]

    return _NUMBER.sub(swap, text)


def counterfactual_rows(ctx: ExpContext, ts, tensors: list[dict]) -> list[dict]:
    """Per trace: MI against the own gold solution and against its counterfactual (numbers
    changed), both representations computed the same way (:func:`answer_representation`)."""
    from tl_thinktok.probe import answer_representation

    model = ctx.load(ts.model)
    items = {str(it.id): it for it in ctx.discovery_items(ts.dataset)}
    rng = np.random.default_rng(ctx.seed + 7)
    rows = []
    for tr, t in zip(ts.traces, tensors, strict=True):
        item = items.get(str(tr.id))
        if item is None or not item.solution:
            continue
        cf_text = counterfactual_solution(item.solution, rng)
        if cf_text == item.solution:  # no number to change
            continue
        x = t["resid"].to(torch.float64)
        with torch.no_grad():
            reps = [
                answer_representation(model, s, layer=tr.layer) for s in (item.solution, cf_text)
            ]
        own, cf = (compute_mi(x, r.detach().to("cpu", torch.float64)) for r in reps)
        above = own > cf
        pk, cf_pk = peak_indices(own), peak_indices(cf)
        rows.append({
            "id": str(tr.id),
            "mean_mi_own": float(own.mean()),
            "mean_mi_counterfactual": float(cf.mean()),
            "own_minus_counterfactual": float((own - cf).mean()),
            "steps": int(own.size),
            "steps_own_above": int(above.sum()),
            "peaks": len(pk),
            "peaks_own_above": int(above[pk].sum()) if pk else 0,
            # the null: the counterfactual's own peaks, where it beats the own answer
            "cf_peaks": len(cf_pk),
            "cf_peaks_cf_above": int((~above)[cf_pk].sum()) if cf_pk else 0,
        })  # fmt: skip
    return rows


def choose_others(answers: list[str], i: int, k: int, rng: np.random.Generator) -> list[int]:
    """``k`` random other traces whose gold answer differs from trace ``i``'s (fewer if short)."""
    pool = [j for j, a in enumerate(answers) if j != i and a != answers[i]]
    if not pool:
        return []
    return sorted(int(j) for j in rng.choice(pool, min(k, len(pool)), replace=False))


def rate_difference_ci(
    own_k: np.ndarray,
    own_n: np.ndarray,
    null_k: np.ndarray,
    null_n: np.ndarray,
    rng: np.random.Generator,
    n_boot: int = 1000,
) -> tuple[float, list[float]]:
    """Pooled rate ``Σ own_k / Σ own_n`` minus pooled null rate ``Σ null_k / Σ null_n``, with a
    trace-bootstrap 95% interval (traces resampled with replacement; NaN where a resample has no
    peak on a side, dropped)."""

    def diff(idx: np.ndarray) -> float:
        a, b = own_n[idx].sum(), null_n[idx].sum()
        return own_k[idx].sum() / a - null_k[idx].sum() / b if a and b else float("nan")

    point, lo, hi = trace_bootstrap(diff, own_k.size, rng, n_boot)
    return point, [lo, hi]


def counterfactual_numbers(cf: dict) -> dict:
    """The counterfactual-answer lines of the summary (none when no trace had a number)."""
    if not cf.get("n_traces"):
        return {}
    lo, hi = cf["peaks_minus_null_ci"]
    return {
        "counterfactual answer (numbers changed): mean MI own vs counterfactual": (
            f"{cf['mean_mi_own']:.4f} vs {cf['mean_mi_counterfactual']:.4f} (n={cf['n_traces']})"
        ),
        "own − counterfactual, mean over traces ± 95% CI": (
            f"{cf['own_minus_counterfactual']:+.4f} ± {cf['own_minus_counterfactual_ci95']:.4f}"
        ),
        "own > counterfactual at all steps": f"{cf['step_rate_own_above']:.3f}",
        "own > counterfactual at own IQR peaks vs null (counterfactual > own at its peaks)": (
            f"{cf['peak_rate_own_above']:.3f} ({cf['n_peaks']} peaks) vs "
            f"{cf['null_peak_rate_cf_above']:.3f} ({cf['n_cf_peaks']} peaks): "
            f"{cf['peaks_minus_null']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        ),
    }


def run(ctx: ExpContext) -> Summary:
    import matplotlib.pyplot as plt

    ts = ctx.traces("model")
    k = K_OTHERS[ctx.mode]
    rng = np.random.default_rng(ctx.seed)
    tensors = [ts.residuals(t) for t in ts.traces]
    answers = [str(t.answer) for t in ts.traces]
    rows, curves = [], {}
    for i, tr in enumerate(ts.traces):
        others_idx = choose_others(answers, i, k, rng)
        if not others_idx:
            continue
        x = tensors[i]["resid"].to(torch.float64)
        own = compute_mi(x, tensors[i]["answer"].to(torch.float64))
        others = np.stack([compute_mi(x, tensors[j]["answer"].to(torch.float64))
                           for j in others_idx])  # fmt: skip
        rows.append(trace_row(str(tr.id), own, others, tr.peaks))
        curves[str(tr.id)] = {"own": own, "others": others, "peaks": tr.peaks,
                              "other_ids": [ts.traces[j].id for j in others_idx]}  # fmt: skip
    if not rows:
        raise ValueError("answer_control needs at least two traces with different gold answers")
    agg: dict = {}
    for key in ("mean_mi_own", "mean_mi_others", "mean_specificity", "specific_step_rate",
                "specific_peak_rate", "specificity_at_peaks", "peak_jaccard_own_vs_other",
                "trajectory_corr_own_vs_other"):  # fmt: skip
        agg[key], agg[f"{key}_n"] = nanmean_n([r[key] for r in rows])
    agg["own_above_others_traces"] = sum(r["own_above_others"] for r in rows)
    agg["n_traces"] = len(rows)
    spec_ci = mean_ci([r["mean_specificity"] for r in rows])
    agg["mean_specificity_ci95"] = spec_ci[1]
    # pooled over all peaks / all steps (each peak counts once)
    all_sp, pk_sp = [], []
    for c in curves.values():
        sp = specific_steps(c["own"], c["others"])
        all_sp.append(sp)
        pk_sp.append(sp[c["peaks"]])
    pooled_steps = np.concatenate(all_sp)
    pooled_peaks = np.concatenate(pk_sp) if pk_sp else np.zeros(0, bool)
    agg["pooled_specific_step_rate"] = float(pooled_steps.mean())
    agg["pooled_specific_peak_rate"] = (
        float(pooled_peaks.mean()) if pooled_peaks.size else float("nan")
    )
    agg["pooled_n_peaks"] = int(pooled_peaks.size)
    null_n = sum(r["null_n_peaks"] for r in rows)
    agg["null_specific_peak_rate"] = (
        sum(r["null_n_specific_peaks"] for r in rows) / null_n if null_n else float("nan")
    )
    agg["null_n_peaks"] = null_n
    own_k = np.array([float(p.sum()) for p in pk_sp])
    own_n = np.array([float(p.size) for p in pk_sp])
    null_k = np.array([float(r["null_n_specific_peaks"]) for r in rows])
    null_nn = np.array([float(r["null_n_peaks"]) for r in rows])
    agg["specific_peak_rate_minus_null"], agg["specific_peak_rate_minus_null_ci"] = (
        rate_difference_ci(own_k, own_n, null_k, null_nn, rng)
    )

    cf_rows = counterfactual_rows(ctx, ts, tensors)
    cf: dict = {"n_traces": len(cf_rows)}
    if cf_rows:
        for key in ("mean_mi_own", "mean_mi_counterfactual"):
            cf[key] = float(np.mean([r[key] for r in cf_rows]))
        cf["own_minus_counterfactual"], cf["own_minus_counterfactual_ci95"] = mean_ci(
            [r["own_minus_counterfactual"] for r in cf_rows]
        )
        col = lambda k: np.array([float(r[k]) for r in cf_rows])  # noqa: E731
        cf["peak_rate_own_above"] = col("peaks_own_above").sum() / max(col("peaks").sum(), 1)
        cf["null_peak_rate_cf_above"] = col("cf_peaks_cf_above").sum() / max(
            col("cf_peaks").sum(), 1
        )
        cf["step_rate_own_above"] = col("steps_own_above").sum() / col("steps").sum()
        cf["n_peaks"], cf["n_cf_peaks"] = int(col("peaks").sum()), int(col("cf_peaks").sum())
        cf["peaks_minus_null"], cf["peaks_minus_null_ci"] = rate_difference_ci(
            col("peaks_own_above"), col("peaks"), col("cf_peaks_cf_above"), col("cf_peaks"), rng
        )
    agg["counterfactual"] = cf
    fig, (a1, a2, a3) = plt.subplots(
        1, 3, figsize=(16, 3.6), gridspec_kw={"width_ratios": [2, 1, 1]}
    )
    ex_id = max(curves, key=lambda t: len(curves[t]["own"]))
    ex = curves[ex_id]
    steps = np.arange(len(ex["own"]))
    lo, hi = np.percentile(ex["others"], [5, PERCENTILE], axis=0)
    a1.fill_between(steps, lo, hi, color="tab:gray", alpha=0.3, label=f"{k} other answers (5–95%)")
    a1.plot(steps, ex["others"].mean(0), color="tab:gray", lw=0.8, label="others' mean")
    a1.plot(steps, ex["own"], color="tab:blue", lw=1.0, label="own answer")
    sp = specific_steps(ex["own"], ex["others"])
    pk = np.asarray(ex["peaks"], int)
    if pk.size:
        a1.scatter(pk[sp[pk]], ex["own"][pk[sp[pk]]], color="tab:red", s=16, zorder=3,
                   label="IQR peak, answer-specific")  # fmt: skip
        a1.scatter(pk[~sp[pk]], ex["own"][pk[~sp[pk]]], facecolor="none", edgecolor="tab:red",
                   s=16, zorder=3, label="IQR peak, not specific")  # fmt: skip
    a1.set_title(f"trace {ex_id}: MI against its own vs other problems' answers", fontsize=9)
    a1.set_xlabel("step")
    a1.set_ylabel("MI(h_t, h_y)")
    a1.legend(fontsize=6)
    a2.hist([r["mean_specificity"] for r in rows], bins=min(20, max(3, len(rows) // 3)),
            color="tab:blue")  # fmt: skip
    a2.axvline(0, color="k", lw=0.8)
    a2.tick_params(axis="x", labelsize=7, rotation=30)
    a2.set_xlabel("mean specificity (own − others' mean MI)")
    a2.set_ylabel("traces")
    a2.set_title(f"own > others in {agg['own_above_others_traces']} / {len(rows)} traces",
                 fontsize=9)  # fmt: skip
    bars = [agg["pooled_specific_step_rate"], agg["pooled_specific_peak_rate"],
            agg["null_specific_peak_rate"]]  # fmt: skip
    a3.bar(["all steps", "IQR peaks\n(own answer)", "IQR peaks\n(other answer\nas own: null)"],
           [0 if np.isnan(b) else b for b in bars],
           color=["tab:gray", "tab:red", "tab:olive"])  # fmt: skip
    a3.tick_params(axis="x", labelsize=7)
    a3.axhline(1 - PERCENTILE / 100, color="k", ls=":", lw=0.8, label="5% (exchangeable)")
    a3.set_ylabel("answer-specific fraction")
    a3.set_title(f"{agg['pooled_n_peaks']} peaks, {pooled_steps.size} steps", fontsize=9)
    a3.legend(fontsize=6)
    fig.suptitle(f"Answer control: {ts.model} on {ts.dataset}", fontsize=10)
    fig.tight_layout()
    files = [
        save_fig(ctx.out, NAME, fig),
        save_json(
            ctx.out,
            NAME,
            {
                "k_others": k,
                "percentile": PERCENTILE,
                "summary": agg,
                "per_trace": rows,
                "counterfactual_per_trace": cf_rows,
                "example": {"id": ex_id, **ex},
            },
        ),  # fmt: skip
        save_csv(ctx.out, NAME, rows),
    ]
    numbers = {
        "mean MI own answer": agg["mean_mi_own"],
        "mean MI other answers": agg["mean_mi_others"],
        "traces with own > others": f"{agg['own_above_others_traces']} / {len(rows)}",
        "mean specificity (own − others)": agg["mean_specificity"],
        "mean specificity 95% CI half-width": spec_ci[1],
        "answer-specific fraction of all steps": agg["pooled_specific_step_rate"],
        "answer-specific fraction of IQR peaks": agg["pooled_specific_peak_rate"],
        count_key("answer-specific fraction of IQR peaks"): agg["pooled_n_peaks"],
        "same with another answer swapped in as own (null)": agg["null_specific_peak_rate"],
        count_key("same with another answer swapped in as own (null)"): agg["null_n_peaks"],
        "answer-specific peaks minus the null [95% trace-bootstrap CI]": (
            f"{agg['specific_peak_rate_minus_null']:+.3f} "
            f"[{agg['specific_peak_rate_minus_null_ci'][0]:+.3f}, "
            f"{agg['specific_peak_rate_minus_null_ci'][1]:+.3f}]"
        ),
        "peak-set Jaccard own vs other": agg["peak_jaccard_own_vs_other"],
        **counterfactual_numbers(cf),
        "trajectory correlation own vs other": agg["trajectory_corr_own_vs_other"],
        count_key("trajectory correlation own vs other"): agg["trajectory_corr_own_vs_other_n"],
    }
    return Summary(
        name=NAME,
        title="Answer control: MI against the own gold answer vs other problems' answers",
        model=ts.model,
        dataset=ts.dataset,
        numbers=numbers,
        paper="not in the paper (nor in its reference code): the paper reads MI peaks as moments "
        "of information about the answer, which needs MI with the own answer to exceed MI with "
        "unrelated answers.",
        notes=f"k = {k} other answers per trace (different gold answer). An answer-specific step "
        f"has own MI above the {PERCENTILE:g}th percentile of the others at that step; if own "
        "were exchangeable with the others the rate over all steps would be about 5%. Peaks "
        "are extremes of their own trajectory, so they beat the others more often even when the "
        "answer does not matter: the null is the same test with each other answer swapped in "
        "as 'own' (its own IQR peaks against the rest). Peaks are about the own answer only as "
        "far as the own rate exceeds that null. Counterfactual answer: the own gold solution "
        "with every number changed (same words): own > counterfactual means the MI tracks the "
        "answer's content, not the words a solution shares with its question.",
        files=files,
    )
