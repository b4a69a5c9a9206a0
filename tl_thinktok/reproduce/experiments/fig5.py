"""Fig. 5: accuracy vs number of suppressed thinking words, against a random-token control.

For ``k`` = 0, 1, 2, …: the token ids of the first ``k`` words of the ranked thinking-word list
are banned (logit −inf at every step,
:class:`~tl_thinktok.interventions.suppress.SuppressTokens`); the control bans the same number of
random non-thinking ids (:func:`~tl_thinktok.interventions.suppress.random_control`), averaged
over ``n_random`` (≥ 3) draws. Greedy decoding, graded answers.

Two more lines (issue 14): a *frequency-matched* random control — ids drawn to match, one by one,
how often the banned thinking ids are generated in the unconstrained traces of the trace pass
(:func:`~tl_thinktok.reproduce.experiments.wordlists.frequency_matched`; the uniform control
mostly bans ids the model never generates, so its flat curve says little) — and the same sweep
with the words found at this run's MI peaks (fig4's jsonl, the whole list) instead of the hand
list, when fig4 ran first. ``banned_mass`` = the fraction of unconstrained generated tokens that a
banned set covers.

Run alone: ``python experiments/fig5_suppression.py --model organism --quick``.
"""

from __future__ import annotations

import numpy as np

from tl_thinktok.reproduce.accuracy import accuracy_run, generate_and_grade, special_ids
from tl_thinktok.reproduce.context import ExpContext
from tl_thinktok.reproduce.curves import AccuracyCurve, Series, plot_curves
from tl_thinktok.reproduce.experiments.wordlists import (
    SHARE_TOL,
    banned_mass,
    generation_counts,
    share_matched,
    word_lists,
)
from tl_thinktok.reproduce.outputs import Summary, save_csv, save_fig, save_json
from tl_thinktok.reproduce.stats import accuracy_stats, mcnemar_exact, paired_difference

NAME = "fig5"


def protected_ids(ctx: ExpContext, model) -> set[int]:
    """Ids a random control never bans: special tokens, and for the organism every token that is
    not an alphabetic word (digits, punctuation, operators, ``<think>``, ``\\boxed{`` …): in its
    718-token vocabulary a random draw otherwise often bans "." or "," and breaks every answer,
    which a random draw from a 150k-token LLM vocabulary practically never does."""
    ids = special_ids(model)
    if ctx.is_organism:
        from tl_thinktok.lens import WORD_RE

        tok = model.tokenizer
        for i in range(len(tok)):
            if not WORD_RE.fullmatch(tok.decode([i]).strip()):
                ids.add(i)
    return ids


def curve_of(ds: str, rows: list[dict], n_random: int) -> AccuracyCurve:
    """The plotted curve of one dataset: hand-list and found-list bans vs the uniform and the
    frequency-matched random controls (mean ± std)."""
    rnd = [x for x in rows if x["random_acc_mean"] is not None]
    mat = [x for x in rows if x["matched_acc_mean"] is not None]
    fnd = [x for x in rows if x["found_acc"] is not None]
    series = [
        Series("suppress first k hand-list words", [x["k"] for x in rows],
               [x["thinking_acc"] for x in rows], style="o-", color="tab:red"),
        Series(f"uniform random ids (mean of {n_random})", [x["k"] for x in rnd],
               [x["random_acc_mean"] for x in rnd], std=[x["random_acc_std"] for x in rnd],
               style="s--", color="tab:gray"),
        Series(f"frequency-matched random ids (mean of {n_random})", [x["k"] for x in mat],
               [x["matched_acc_mean"] for x in mat], std=[x["matched_acc_std"] for x in mat],
               style="^--", color="tab:olive"),
    ]  # fmt: skip
    if fnd:
        series.append(Series("suppress first k words found at MI peaks (fig4)",
                             [x["k"] for x in fnd], [x["found_acc"] for x in fnd], style="d-",
                             color="tab:blue"))  # fmt: skip
    return AccuracyCurve(
        dataset=ds, n_items=rows[0]["n_items"], x_label="k (words suppressed)", series=series
    )


def _mean_std(vals: list[float] | None) -> tuple[float | None, float | None]:
    if not vals:
        return None, None
    return float(np.mean(vals)), float(np.std(vals))


def paired_stats(per_item: list[dict], base: list[bool] | None) -> dict:
    """One condition's accuracy with its Wilson interval and n, its mean generation length, and
    McNemar's exact test against the unconstrained run (``base``, same problems in order)."""
    correct = [r["correct"] for r in per_item]
    st = accuracy_stats(correct)
    st["mean_new_tokens"] = float(np.mean([r["n_new"] for r in per_item]))
    st["mcnemar_vs_k0"] = mcnemar_exact(base, correct) if base is not None else None
    return st


def _per_problem(runs: list[dict], field: str = "correct") -> list[float]:
    """Per problem, the mean of ``field`` over several runs on the same problems (draws)."""
    return [float(np.mean([r["per_item"][i][field] for r in runs]))
            for i in range(len(runs[0]["per_item"]))]  # fmt: skip


def run(ctx: ExpContext) -> Summary:
    from tl_thinktok.interventions.suppress import SuppressTokens, random_control

    model = ctx.load(ctx.model)
    lists = word_lists(ctx, model, n_words=None)
    tt, found = lists["hand"], lists.get("found")
    k_max = min(ctx.size("k_max"), len(tt))
    ks = ctx.size("k_values") or list(range(0, k_max + 1))
    ks = sorted({min(int(k), k_max) for k in ks})
    n_random = max(3, int(ctx.size("n_random")))
    kr_size = ctx.size("k_random")
    k_random = set(ks) if kr_size is None else {min(int(k), k_max) for k in kr_size}
    exclude = set(tt.token_ids()) | protected_ids(ctx, model)
    vocab = len(model.tokenizer)
    counts = generation_counts(t.gen_ids for t in ctx.traces("model").traces)
    ks_found = [k for k in ks if found is not None and 0 < k <= len(found)]
    results: dict[str, dict] = {}
    rows = []
    mass: dict[str, dict[int, float]] = {"hand": {}, "uniform": {}, "matched": {}, "found": {}}
    for ds in ctx.eval_datasets:
        items = ctx.eval_items(ds, ctx.size("n_eval"))
        discovery = [i.id for i in ctx.discovery_items(ds)]
        units = []
        matched_shares: dict[int, list[float]] = {}
        for k in ks:
            ids_k = tt.token_ids(k) if k > 0 else []
            units.append((f"thinking|{k}", k, ids_k))
            mass["hand"][k] = banned_mass(ids_k, counts)
            if k > 0 and k in k_random:
                um, mm = [], []
                for r in range(n_random):
                    seed = ctx.seed * 100003 + r * 1009 + k
                    rid = random_control(vocab, len(ids_k), exclude=exclude, seed=seed)
                    mid = share_matched(mass["hand"][k], len(ids_k), counts, exclude, vocab, seed)
                    units.append((f"random{r}|{k}", k, rid))
                    units.append((f"matched{r}|{k}", k, mid))
                    um.append(banned_mass(rid, counts))
                    mm.append(banned_mass(mid, counts))
                mass["uniform"][k], mass["matched"][k] = float(np.mean(um)), float(np.mean(mm))
                matched_shares[k] = mm
            if k in ks_found:
                fid = found.token_ids(k)
                units.append((f"found|{k}", k, fid))
                mass["found"][k] = banned_mass(fid, counts)
        run_ = accuracy_run(
            ctx,
            "suppression",
            {
                "dataset": ds,
                "ids": [i.id for i in items],
                "words": tt.words,
                "found_words": found.words if found is not None else None,
                "ks": ks,
                "n_random": n_random,
                "k_random": sorted(k_random),
                "exclude": sorted(exclude),
                "controls": f"uniform + banned-share-matched (±{SHARE_TOL:.0%})",
                "discovery_ids": discovery,
                "budget": ctx.budget("suppression"),
            },
        )

        def do(unit, items=items, ds=ds):
            _, k, ids = unit
            if ids and ctx.engine == "tl":
                ban = SuppressTokens(ids)
                res = generate_and_grade(ctx, model, ds, items, ban.fwd_hooks(model))
                hits = ban.hits
            elif ids:  # another engine bans the ids itself (it cannot count the hits)
                res, hits = generate_and_grade(ctx, model, ds, items, banned_ids=ids), None
            else:
                res, hits = generate_and_grade(ctx, model, ds, items), 0
            return {
                "k": k,
                "n_ids": len(ids),
                "ids": ids,
                "hits": hits,
                "accuracy": float(np.mean([r["correct"] for r in res])),
                "per_item": res,
            }

        out = run_.map(units, key=lambda u: u[0], fn=do, desc=f"fig5 {ds}", progress=ctx.progress)
        by = {u[0]: o for u, o in zip(units, out, strict=True)}
        base = [r["correct"] for r in by["thinking|0"]["per_item"]] if 0 in ks else None

        def paired(key: str, by=by, base=base) -> dict:
            return paired_stats(by[key]["per_item"], base)

        curve = []
        for k in ks:
            th = by[f"thinking|{k}"]["accuracy"]
            rnd = mat = None
            if k == 0:
                rnd = mat = [th]
            elif k in k_random:
                rnd = [by[f"random{r}|{k}"]["accuracy"] for r in range(n_random)]
                mat = [by[f"matched{r}|{k}"]["accuracy"] for r in range(n_random)]
            if k == 0:
                fnd = th if found is not None else None
            else:
                fnd = by[f"found|{k}"]["accuracy"] if k in ks_found else None
            (rm, rs), (mm_, ms) = _mean_std(rnd), _mean_std(mat)
            hand_run = by[f"thinking|{k}"]
            # paired over the problems: the hand list / the found words against the mean of the
            # matched draws (accuracy), and the hand list's generation length against k = 0
            vs_matched = {}
            if k in k_random and k > 0:
                matched = _per_problem([by[f"matched{r}|{k}"] for r in range(n_random)])
                vs_matched["hand"] = paired_difference(_per_problem([hand_run]), matched)
                if k in ks_found:
                    vs_matched["found"] = paired_difference(
                        _per_problem([by[f"found|{k}"]]), matched
                    )
            length_vs_k0 = (
                paired_difference(_per_problem([hand_run], "n_new"),
                                  _per_problem([by["thinking|0"]], "n_new"))
                if k > 0 and 0 in ks
                else None
            )  # fmt: skip
            curve.append(
                {
                    "dataset": ds,
                    "k": k,
                    "thinking_acc": th,
                    "random_acc_mean": rm,
                    "random_acc_std": rs,
                    "matched_acc_mean": mm_,
                    "matched_acc_std": ms,
                    "found_acc": fnd,
                    "n_ids": by[f"thinking|{k}"]["n_ids"],
                    "thinking_hits": by[f"thinking|{k}"]["hits"],
                    "banned_mass_hand": mass["hand"].get(k),
                    "banned_mass_uniform": mass["uniform"].get(k),
                    "banned_mass_matched": mass["matched"].get(k),
                    "banned_mass_found": mass["found"].get(k),
                    "banned_mass_matched_draws": matched_shares.get(k),
                    "n_items": len(items),
                    "hand": paired(f"thinking|{k}"),
                    "found": paired(f"found|{k}") if k in ks_found else None,
                    "matched_draws": [paired(f"matched{r}|{k}") for r in range(n_random)]
                    if k in k_random and k > 0
                    else None,
                    "uniform_draws": [paired(f"random{r}|{k}") for r in range(n_random)]
                    if k in k_random and k > 0
                    else None,
                    "minus_matched": vs_matched or None,
                    "new_tokens_minus_k0": length_vs_k0,
                }
            )
        rows += curve
        results[ds] = {
            "curve": curve,
            "words": tt.words[:k_max],
            "found_words": found.words if found is not None else None,
            "item_ids": [i.id for i in items],
            "discovery_ids": discovery,
        }
    curves = [curve_of(ds, r["curve"], n_random) for ds, r in results.items()]
    fig = plot_curves(curves, f"Suppressing thinking tokens: {ctx.model}", panel_width=5.0)
    files = [
        save_fig(ctx.out, NAME, fig),
        save_json(ctx.out, NAME, results),
        save_csv(ctx.out, NAME, rows),
    ]
    numbers: dict = {"generation budget (tokens)": ctx.budget("suppression")}
    for ds, r in results.items():
        c = r["curve"]
        numbers[f"{ds}: problems (evaluation, disjoint from the {len(r['discovery_ids'])} "
                "discovery problems)"] = c[0]["n_items"]  # fmt: skip
        h0 = c[0]["hand"]
        numbers[f"{ds}: acc k=0"] = f"{h0['acc']:.3f} [{h0['lo']:.2f}, {h0['hi']:.2f}]"
        numbers[f"{ds}: mean new tokens k=0"] = round(h0["mean_new_tokens"], 1)
        for x in c[1:]:
            h = x["hand"]
            parts = [f"hand {h['acc']:.3f} [{h['lo']:.2f}, {h['hi']:.2f}] "
                     f"(McNemar vs k=0 p={h['mcnemar_vs_k0']['p']:.2g})"]  # fmt: skip
            for key, lab in (("random_acc_mean", "uniform"), ("matched_acc_mean", "matched")):
                if x[key] is not None:
                    parts.append(f"{lab} {x[key]:.3f}")
            if x["found"] is not None:
                f = x["found"]
                parts.append(f"found {f['acc']:.3f} [{f['lo']:.2f}, {f['hi']:.2f}] "
                             f"(p={f['mcnemar_vs_k0']['p']:.2g})")  # fmt: skip
            numbers[f"{ds}: acc k={x['k']}"] = " / ".join(parts)
            numbers[f"{ds}: mean new tokens k={x['k']} (hand)"] = round(h["mean_new_tokens"], 1)
            if x["new_tokens_minus_k0"] is not None:
                d = x["new_tokens_minus_k0"]
                numbers[f"{ds}: new tokens k={x['k']} (hand) - k=0 (paired, 95% CI)"] = (
                    f"{d['diff']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}] (n={d['n']})"
                )
            for who, d in (x["minus_matched"] or {}).items():
                numbers[f"{ds}: acc k={x['k']} {who} - matched draws (paired, 95% CI)"] = (
                    f"{d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] (n={d['n']})"
                )
            if x["banned_mass_matched_draws"] is not None:
                numbers[f"{ds}: banned share k={x['k']} (hand / matched draws / uniform)"] = (
                    f"{x['banned_mass_hand']:.4f} / "
                    + ", ".join(f"{v:.4f}" for v in x["banned_mass_matched_draws"])
                    + f" / {x['banned_mass_uniform']:.4f}"
                )
    numbers["hand word order"] = ", ".join(tt.words[:k_max])
    numbers["found word order (fig4)"] = ", ".join(found.words) if found is not None else "-"
    return Summary(
        name=NAME,
        title="Accuracy vs number of suppressed thinking words vs random controls (paper Fig. 5)",
        model=ctx.model,
        dataset=", ".join(results),
        numbers=numbers,
        paper="small effect for the first 2–3 words, then a large drop (20–30% on hard sets); "
        "random control about flat (uniform draw only; no frequency-matched control).",
        notes="the random controls ban as many ids as the hand list at each k (never a "
        "thinking id or a special token"
        + (
            "; for the organism only alphabetic word tokens: no digits, punctuation or "
            "answer markers, which every answer needs"
            if ctx.is_organism
            else ""
        )
        + "); 'matched' draws random generated ids (as many as needed) until their share of "
        f"the trace pass's generated tokens is within ±{SHARE_TOL:.0%} of the hand list's at "
        "that k; 'found' bans the first k words fig4 found at MI peaks (absent when fig4 did not "
        "run first). Evaluation problems are disjoint from the trace (discovery) problems; "
        "accuracies with Wilson 95% intervals, each ban against k = 0 on the same problems by "
        "McNemar's exact test; mean new tokens = generation length (NoWait, arXiv 2506.08343), "
        "against k = 0 paired over the problems; hand / found minus matched: per problem the "
        "ban's grade minus the mean grade of the matched draws, problem-bootstrap 95% CI.",
        files=files,
    )
