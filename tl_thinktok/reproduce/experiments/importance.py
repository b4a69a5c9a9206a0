"""Which steps matter? MI beside entropy, lens depth and counterfactual importance, same traces.

The paper ranks reasoning steps by one measure, MI with the answer. Its neighbours rank them by
others; here all of them are computed per step on the same traces (the trace pass):

* ``mi`` — the paper's ``MI(h_t, h_y)`` (the trace's NOCCO trajectory);
* ``entropy`` — next-token entropy ("forking tokens", arXiv 2506.01939):
  :func:`tl_thinktok.importance.step_measures`;
* ``lens_depth`` — the block after which the logit lens's top-1 stops changing ("Think Deep, Not
  Just Long", arXiv 2602.13517);
* ``counterfactual`` — Thought Anchors (arXiv 2506.19143): replace the step's token by a draw from
  the model's distribution without it, continue greedily, grade; ``|acc(orig) − acc(resampled)|``
  (:class:`~tl_thinktok.counterfactual.CounterfactualImportance`, resumable in the run dir);
* controls: ``resid_norm`` ``‖h_t‖``, ``position`` ``t``, and ``token_identity`` (the mean
  counterfactual importance of the same token in the other traces; cross-fitted).

Reported: agreement between every pair of measures — per-trace Spearman and top-10% overlap,
means over traces with trace-bootstrap 95% intervals — and which measure best predicts the
counterfactual importance: AUROC (pooled steps) against its top decile (steps with importance
≥ its 90th percentile and > 0), trace-bootstrap intervals. AUROC < 0.5: the measure ranks the
important steps *low*. Undefined statistics are NaN with a count of 0 beside them.

Counterfactual importance costs ``n_samples`` continuations per step: on the real-model sizes it is
evaluated at ``ci_steps`` seeded random steps per trace; the other measures at every step.

Run alone: ``python experiments/importance.py --model organism --quick``.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import numpy as np

from tl_thinktok import organism
from tl_thinktok.counterfactual import CounterfactualImportance, CounterfactualResult
from tl_thinktok.datasets import grade, last_boxed
from tl_thinktok.generation import decode
from tl_thinktok.importance import step_measures
from tl_thinktok.loading import model_fingerprint
from tl_thinktok.reproduce.context import ExpContext
from tl_thinktok.reproduce.experiments.peaks_robustness import spearman
from tl_thinktok.reproduce.outputs import Summary, count_key, save_csv, save_fig, save_json
from tl_thinktok.reproduce.rundirs import open_run, slug
from tl_thinktok.reproduce.stats import percentile_interval

NAME = "importance"
#: The four measures compared (the agreement table's rows and columns).
MEASURES = ("mi", "entropy", "lens_depth", "counterfactual")
#: Cheap controls, scored as predictors of counterfactual importance beside the measures.
CONTROLS = ("resid_norm", "position", "token_identity")
#: Predictors of the counterfactual importance's top decile.
PREDICTORS = ("mi", "entropy", "lens_depth", "resid_norm", "position", "token_identity")
TOP_FRACTION = 0.1
#: Sizes per (model kind, mode): traces with every measure, counterfactual steps per trace
#: (``None`` = all), draws per step, continuations per batch, bootstrap resamples. ``--set
#: importance_<key>=…`` overrides one.
SIZES: dict[tuple[str, str], dict[str, Any]] = {
    ("organism", "full"): dict(n_traces=30, ci_steps=None, n_samples=4, batch_size=64,
                               n_boot=1000),
    ("organism", "quick"): dict(n_traces=3, ci_steps=16, n_samples=2, batch_size=32, n_boot=200),
    ("smollm2", "full"): dict(n_traces=10, ci_steps=12, n_samples=2, batch_size=32, n_boot=1000),
    ("smollm2", "quick"): dict(n_traces=2, ci_steps=3, n_samples=2, batch_size=8, n_boot=100),
    ("hf", "full"): dict(n_traces=20, ci_steps=32, n_samples=2, batch_size=16, n_boot=1000),
    ("hf", "quick"): dict(n_traces=2, ci_steps=3, n_samples=2, batch_size=8, n_boot=100),
}  # fmt: skip


def size(ctx: ExpContext, key: str) -> Any:
    """One of this experiment's sizes (``--set importance_<key>=…`` wins; ``n_traces`` is capped
    by the trace pass's)."""
    over = ctx.overrides.get(f"importance_{key}")
    value = over if over is not None else SIZES[(ctx.kind, ctx.mode)][key]
    if key == "n_traces":
        value = min(int(value), int(ctx.size("n_traces")))
    return value


def final_answer(dataset: str, text: str) -> str | None:
    """The answer a generated text ends on (for answer change): the organism's boxed integer, a
    real dataset's last ``\\boxed{}``, else its last number; ``None`` if there is none."""
    import re

    if dataset == "organism":
        a = organism.extract_answer(text)
        return None if a is None else str(a)
    box = last_boxed(text)
    if box is not None:
        return box.strip()
    nums = re.findall(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
    return nums[-1] if nums else None


def ci_steps(n_steps: int, k: int | None, rng: np.random.Generator) -> list[int] | None:
    """Steps of one trace that get counterfactual importance (``None`` = all)."""
    if k is None or k >= n_steps:
        return None
    return sorted(int(s) for s in rng.choice(n_steps, int(k), replace=False))


def top_overlap(a: np.ndarray, b: np.ndarray, frac: float = TOP_FRACTION, seed: int = 0) -> float:
    """|top-k(a) ∩ top-k(b)| / k over the steps where both are defined, k = ⌈frac·n⌉; NaN with
    fewer than 2 such steps.

    Ties (counterfactual importance takes few values) are broken by one seeded random order of the
    steps shared by both sides, never by position, so ``top_overlap(a, a) == 1``.
    """
    ok = ~(np.isnan(a) | np.isnan(b))
    n = int(ok.sum())
    if n < 2:
        return float("nan")
    k = max(1, math.ceil(frac * n))
    tie = np.random.default_rng(seed).random(n)
    ta = set(np.lexsort((tie, -a[ok]))[:k].tolist())
    tb = set(np.lexsort((tie, -b[ok]))[:k].tolist())
    return len(ta & tb) / k


def pair_spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman over the steps where both are defined (NaN under 3 steps or a constant side)."""
    ok = ~(np.isnan(a) | np.isnan(b))
    return spearman(a[ok], b[ok]) if ok.sum() >= 3 else float("nan")


def token_identity(traces: list[dict]) -> list[np.ndarray]:
    """Per trace and step: the mean counterfactual importance of the step's token in the OTHER
    traces (where it was evaluated); a token not evaluated there gets their overall mean."""
    out = []
    for i, tr in enumerate(traces):
        sums: dict[int, list[float]] = {}
        pool = []
        for j, other in enumerate(traces):
            if j == i:
                continue
            for tok, v in zip(other["gen_ids"], other["counterfactual"], strict=True):
                if not np.isnan(v):
                    sums.setdefault(int(tok), []).append(float(v))
                    pool.append(float(v))
        prior = float(np.mean(pool)) if pool else float("nan")
        out.append(np.array([np.mean(sums[t]) if t in sums else prior for t in tr["gen_ids"]]))
    return out


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """AUROC of ``score`` for boolean labels (ties count 1/2) by the Mann–Whitney rank sum:
    O(n log n), so bootstrapping thousands of pooled steps stays cheap; NaN without both a
    positive and a negative."""
    score = np.asarray(score, np.float64)
    pos = np.asarray(positive, bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inv, counts = np.unique(score, return_inverse=True, return_counts=True)
    avg = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based average rank of each distinct value
    ranks = avg[inv]
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def agreement(traces: list[dict], names: tuple[str, ...], n_boot: int, rng) -> list[dict]:
    """Per pair: mean per-trace Spearman and top-10% overlap with trace-bootstrap 95% intervals."""
    rows = []
    for a, b in combinations(names, 2):
        rho = np.array([pair_spearman(t[a], t[b]) for t in traces])
        ov = np.array([top_overlap(t[a], t[b]) for t in traces])
        row: dict[str, Any] = {"a": a, "b": b}
        for label, v in (("spearman", rho), ("top_overlap", ov)):
            ok = ~np.isnan(v)
            row[label] = float(v[ok].mean()) if ok.any() else float("nan")
            row[f"{label}_n"] = int(ok.sum())
            draws = (rng.integers(0, len(v), len(v)) for _ in range(n_boot))
            boots = [np.nanmean(v[i]) if (~np.isnan(v[i])).any() else np.nan for i in draws]
            ci = percentile_interval(boots, min_n=2) if ok.sum() >= 2 else (np.nan, np.nan)
            row[f"{label}_lo"], row[f"{label}_hi"] = ci
        rows.append(row)
    return rows


def predict_top(traces: list[dict], target: str, n_boot: int, rng) -> dict[str, dict]:
    """AUROC of each predictor for ``target``'s top decile (pooled steps, trace bootstrap)."""
    vals = np.concatenate([t[target] for t in traces])
    ok_all = ~np.isnan(vals)
    thr = float(np.percentile(vals[ok_all], 100 * (1 - TOP_FRACTION))) if ok_all.any() else np.nan
    labels = [(t[target] >= thr) & (t[target] > 0) for t in traces]
    out: dict[str, dict] = {}
    for p in PREDICTORS:

        def score(idx, p=p):
            s, y = [], []
            for i in idx:
                ok = ~(np.isnan(traces[i][target]) | np.isnan(traces[i][p]))
                s.append(traces[i][p][ok])
                y.append(labels[i][ok])
            return auroc(np.concatenate(s), np.concatenate(y)) if s else float("nan")

        full = score(range(len(traces)))
        boots = [score(rng.integers(0, len(traces), len(traces))) for _ in range(n_boot)]
        lo, hi = percentile_interval(boots, min_n=2) if not np.isnan(full) else (np.nan, np.nan)
        pairs = zip(labels, traces, strict=True)
        n_pos = int(sum(int((lab & ~np.isnan(t[p])).sum()) for lab, t in pairs))
        out[p] = {"auroc": full, "lo": lo, "hi": hi, "n_pos": n_pos,
                  "n": int(sum((~np.isnan(t[target])).sum() for t in traces)),
                  "threshold": thr}  # fmt: skip
    return out


def _best(pred: dict[str, dict]) -> str | None:
    """The predictor with the highest defined AUROC (``None`` if none is defined)."""
    defined = {p: v["auroc"] for p, v in pred.items() if not np.isnan(v["auroc"])}
    return max(defined, key=defined.__getitem__) if defined else None


def counterfactual_pass(ctx: ExpContext, ts: Any, traces: list, steps: list) -> list:
    """Counterfactual importance of the chosen steps of ``traces``, resumable in the run dir."""
    from tl_thinktok._progress import progress_bar

    model = ctx.load(ts.model)
    ci = CounterfactualImportance(size(ctx, "n_samples"), seed=ctx.seed,
                                  batch_size=size(ctx, "batch_size"))  # fmt: skip
    max_new = ctx.budget("traces")
    config = {**ci.config(), "model": ts.model, "model_fingerprint": model_fingerprint(ts.model),
              "dataset": ts.dataset, "traces_run": ts.run.path.name, "max_new_tokens": max_new,
              "host": ctx.host, "grading": "datasets.grade on the decoded generation"}  # fmt: skip
    run = open_run(ctx.run_dir, ts.model, f"importance-{slug(ts.dataset)}", config)
    run.executor = None  # per-step work items of one trace: evaluated here
    out = []
    bar = progress_bar(total=len(traces), desc="counterfactual", disable=not ctx.progress,
                       leave=False)  # fmt: skip
    for tr, st in zip(traces, steps, strict=True):
        gold = str(tr.answer)
        res = ci.estimate(
            model, tr.tokens, tr.prompt_len,
            lambda g, gold=gold: grade(ts.dataset, decode(model, g), gold),
            answer=lambda g: final_answer(ts.dataset, decode(model, g)),
            steps=st, max_new_tokens=max(max_new, tr.n_steps), run=run, key=str(tr.id),
        )  # fmt: skip
        out.append(res)
        bar.update(1)
    bar.close()
    return out


def per_trace_measures(ctx: ExpContext, ts: Any, traces: list, cf: list) -> list[dict]:
    """Every measure per step of every trace (NaN where the counterfactual was not evaluated)."""
    model = ctx.load(ts.model)
    bs = int(ctx.size("batch_size"))
    sm = [m for i in range(0, len(traces), bs) for m in step_measures(model, traces[i : i + bs])]
    rows = []
    for tr, m, res in zip(traces, sm, cf, strict=True):
        res: CounterfactualResult
        rows.append({
            "id": str(tr.id), "correct": tr.correct, "n_steps": tr.n_steps,
            "gen_ids": list(tr.gen_ids), "mi": np.asarray(tr.mi, np.float64),
            "entropy": m.entropy, "lens_depth": m.lens_depth,
            "counterfactual": res.dense(tr.n_steps),
            "answer_change": res.dense(tr.n_steps, "answer_change"),
            "resid_norm": np.asarray(tr.resid_norm, np.float64),
            "position": np.arange(tr.n_steps, dtype=np.float64),
            "n_layers": m.n_layers,
        })  # fmt: skip
    for row, ti in zip(rows, token_identity(rows), strict=True):
        row["token_identity"] = ti
    return rows


def _plot(ctx: ExpContext, ts: Any, rows: list[dict], agree: list[dict], pred: dict) -> Any:
    import matplotlib.pyplot as plt

    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(17, 3.8),
                                     gridspec_kw={"width_ratios": [2.2, 1, 1.2]})  # fmt: skip
    ex = max(rows, key=lambda r: int((~np.isnan(r["counterfactual"])).sum()) * 1000 + r["n_steps"])
    colours = {"mi": "tab:blue", "entropy": "tab:orange", "lens_depth": "tab:green",
               "counterfactual": "tab:red"}  # fmt: skip
    steps = np.arange(ex["n_steps"])
    for k in MEASURES:
        v = ex[k]
        ok = ~np.isnan(v)
        if not ok.any():
            continue
        lo, hi = np.nanmin(v), np.nanmax(v)
        z = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
        if k == "counterfactual":
            a1.scatter(steps[ok], z[ok], s=12, color=colours[k], zorder=3, label=k)
        else:
            a1.plot(steps, z, lw=0.9, color=colours[k], label=k)
    a1.set_xlabel("generation step t")
    a1.set_ylabel("measure (min-max scaled)")
    a1.set_title(f"trace {ex['id']}: the four measures per step", fontsize=9)
    a1.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    names = MEASURES + CONTROLS[:2]
    mat = np.full((len(names), len(names)), np.nan)
    for r in agree:  # rows come as (a, b) with a before b: Spearman above, overlap below
        i, j = sorted((names.index(r["a"]), names.index(r["b"])))
        mat[i, j], mat[j, i] = r["spearman"], r["top_overlap"]
    np.fill_diagonal(mat, 1.0)
    im = a2.imshow(np.nan_to_num(mat), vmin=-1, vmax=1, cmap="RdBu_r")
    a2.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    a2.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(len(names)):
        for j in range(len(names)):
            a2.text(j, i, "–" if np.isnan(mat[i, j]) else f"{mat[i, j]:.2f}", ha="center",
                    va="center", fontsize=6)  # fmt: skip
    a2.set_title("per-trace means: Spearman (upper), top-10% overlap (lower)", fontsize=9)
    fig.colorbar(im, ax=a2, fraction=0.046)
    ys = [pred[p]["auroc"] for p in PREDICTORS]
    err = [[max(0.0, y - pred[p]["lo"]) if not np.isnan(pred[p]["lo"]) else 0 for y, p in
            zip(ys, PREDICTORS, strict=True)],
           [max(0.0, pred[p]["hi"] - y) if not np.isnan(pred[p]["hi"]) else 0 for y, p in
            zip(ys, PREDICTORS, strict=True)]]  # fmt: skip
    a3.bar(
        PREDICTORS,
        [0.0 if np.isnan(y) else y for y in ys],
        yerr=err,
        capsize=3,
        color=["tab:blue", "tab:orange", "tab:green", "tab:gray", "tab:gray", "tab:gray"],
    )
    a3.axhline(0.5, color="k", ls=":", lw=0.8, label="chance")
    a3.set_ylim(0, 1)
    a3.tick_params(axis="x", rotation=45, labelsize=7)
    a3.set_ylabel("AUROC")
    a3.set_title("predicting the top decile of counterfactual importance", fontsize=9)
    a3.legend(fontsize=7)
    fig.suptitle(f"Which steps matter? {ts.model} on {ts.dataset} ({len(rows)} traces)",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    return fig


def run(ctx: ExpContext) -> Summary:
    ts = ctx.traces("model")
    n = size(ctx, "n_traces")
    traces = ts.traces[:n]
    if not traces:
        raise ValueError("importance needs at least one trace")
    rng = np.random.default_rng(ctx.seed)
    steps = [ci_steps(tr.n_steps, size(ctx, "ci_steps"), rng) for tr in traces]
    cf = counterfactual_pass(ctx, ts, traces, steps)
    rows = per_trace_measures(ctx, ts, traces, cf)
    n_boot = int(size(ctx, "n_boot"))
    brng = np.random.default_rng(ctx.seed + 1)
    agree = agreement(rows, MEASURES + CONTROLS[:2], n_boot, brng)
    pred = predict_top(rows, "counterfactual", n_boot, brng)
    pred_change = predict_top(rows, "answer_change", n_boot, brng)
    best, best_change = _best(pred), _best(pred_change)

    def pair(a: str, b: str) -> dict:
        return next(r for r in agree if {r["a"], r["b"]} == {a, b})

    per_step = []
    for r in rows:
        for t in range(r["n_steps"]):
            per_step.append({"id": r["id"], "step": t, "token_id": r["gen_ids"][t],
                             **{k: float(r[k][t]) for k in MEASURES + CONTROLS},
                             "answer_change": float(r["answer_change"][t])})  # fmt: skip
    sizes = {k: size(ctx, k) for k in SIZES[(ctx.kind, ctx.mode)]}
    fig = _plot(ctx, ts, rows, agree, pred)
    n_cf = int(sum((~np.isnan(r["counterfactual"])).sum() for r in rows))
    files = [
        save_fig(ctx.out, NAME, fig),
        save_json(
            ctx.out,
            NAME,
            {
                "measures": list(MEASURES),
                "controls": list(CONTROLS),
                "sizes": sizes,
                "budget": ctx.budget("traces"),
                "top_fraction": TOP_FRACTION,
                "agreement": agree,
                "auroc_counterfactual_top": pred,
                "auroc_answer_change_top": pred_change,
                "best_predictor": best,
                "per_trace": rows,
            },
        ),  # fmt: skip
        save_csv(ctx.out, NAME, per_step),
    ]
    numbers: dict[str, Any] = {"traces": len(rows), "steps with counterfactual importance": n_cf,
                               "acc(original)": float(np.mean([bool(r["correct"]) for r in rows])),
                               "mean counterfactual importance": float(np.nanmean(
                                   np.concatenate([r["counterfactual"] for r in rows])))
                               if n_cf else float("nan"),
                               count_key("mean counterfactual importance"): n_cf}  # fmt: skip
    for m in ("mi", "entropy", "lens_depth"):
        key = f"Spearman {m} vs counterfactual"
        numbers[key] = pair(m, "counterfactual")["spearman"]
        numbers[count_key(key)] = pair(m, "counterfactual")["spearman_n"]
    for a, b in (("mi", "entropy"), ("mi", "lens_depth"), ("entropy", "lens_depth")):
        key = f"Spearman {a} vs {b}"
        numbers[key] = pair(a, b)["spearman"]
        numbers[count_key(key)] = pair(a, b)["spearman_n"]
    for p in PREDICTORS:
        key = f"AUROC {p} (counterfactual top decile)"
        numbers[key] = pred[p]["auroc"]
        numbers[count_key(key)] = pred[p]["n_pos"] if not np.isnan(pred[p]["auroc"]) else 0
    key = "share of steps labelled (counterfactual top decile, ties included)"
    lab = pred["mi"]
    defined_label = bool(lab["n"]) and not np.isnan(lab["auroc"])
    numbers[key] = lab["n_pos"] / lab["n"] if defined_label else float("nan")
    numbers[count_key(key)] = lab["n"] if defined_label else 0
    numbers["best predictor of counterfactual importance"] = best or "undefined"
    for p in PREDICTORS:  # defined even where the model is wrong whatever happens
        key = f"AUROC {p} (answer-change top decile)"
        numbers[key] = pred_change[p]["auroc"]
        numbers[count_key(key)] = pred_change[p]["n_pos"] if not np.isnan(numbers[key]) else 0
    numbers["best predictor of answer change"] = best_change or "undefined"
    return Summary(
        name=NAME,
        title="Which steps matter? MI, entropy, lens depth and counterfactual importance",
        model=ts.model,
        dataset=ts.dataset,
        numbers=numbers,
        paper="not in the paper: it ranks steps by MI alone. Neighbours: forking tokens "
        "(entropy, arXiv 2506.01939), deep-thinking ratio (lens depth, arXiv 2602.13517, r = 0.68 "
        "with accuracy), Thought Anchors (counterfactual importance, arXiv 2506.19143).",
        notes=f"{len(rows)} traces; counterfactual importance at {n_cf} steps "
        f"({sizes['n_samples']} draws per step from the model's distribution without the "
        "original token, greedy continuation within the trace budget, datasets.grade). "
        "Agreement: per-trace Spearman and top-10% overlap, means over traces, trace-bootstrap "
        "95% intervals in importance.json. AUROC: pooled steps, label = importance in its top "
        "decile and > 0; undefined (NaN, count 0) when no step or every step is labelled. "
        "AUROC < 0.5 means the measure ranks important steps low. Answer change (the share of "
        "resamples ending on another answer) needs no gold answer: it separates steps even when "
        "the model is wrong whatever happens (a small model on GSM8K).",
        files=files,
    )
