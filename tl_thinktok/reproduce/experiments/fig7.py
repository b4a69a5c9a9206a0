"""Fig. 7: accuracy vs thinking-token budget, original vs thinking-token test-time scaling.

For each budget ``B`` (:func:`tl_thinktok.interventions.ttts.budget_forcing`, greedy):

* original: think at most ``B`` tokens (an early end is kept), then the answer is forced;
* TTTS: the same, but an early end of thinking is replaced by a thinking word (" Wait", …)
  until ``B`` tokens are used (minimum = maximum = ``B``), then the answer is forced.

Answer forcing: ``</think>`` + ``\\boxed{`` for the organism, ``</think>`` + the reference's
``Final Answer within \\boxed{}:`` otherwise. Paper budgets (reference code): GSM8K 256…2560,
MATH-500 512…5120, AIME24 1024…12288; the organism uses budgets that fit its short traces.

Words: the hand list (``ttts_words``, "Wait") and the top word found at this run's MI peaks
(fig4's jsonl), when fig4 ran first. The forced answer gets ``ctx.budget("ttts_answer")`` tokens.

Run alone: ``python experiments/fig7_ttts.py --model organism --quick``.
"""

from __future__ import annotations

import numpy as np

from tl_thinktok.reproduce.accuracy import accuracy_run
from tl_thinktok.reproduce.context import PAPER_BUDGETS, ExpContext
from tl_thinktok.reproduce.curves import AccuracyCurve, Series, plot_curves
from tl_thinktok.reproduce.experiments.wordlists import found_list
from tl_thinktok.reproduce.outputs import Summary, save_csv, save_fig, save_json
from tl_thinktok.reproduce.stats import accuracy_stats, mcnemar_exact

NAME = "fig7"


def answer_prefix(family: str) -> str:
    return " \\boxed{" if family == "organism" else " Final Answer within \\boxed{}:"


def curve_of(ds: str, rows: list[dict], words: list[str]) -> AccuracyCurve:
    """The plotted curve of one dataset: accuracy by budget, original vs TTTS per word."""
    series = []
    for cond in ["original"] + words:
        c = [x for x in rows if x["condition"] == cond]
        orig = cond == "original"
        series.append(
            Series("original" if orig else f"TTTS ({cond})", [x["budget"] for x in c],
                   [x["accuracy"] for x in c], style="o-" if orig else "s--",
                   color="tab:gray" if orig else None)
        )  # fmt: skip
    return AccuracyCurve(
        dataset=ds,
        n_items=rows[0]["n_items"],
        x_label="thinking-token budget",
        series=series,
        x_ticks=sorted({x["budget"] for x in rows}),
    )


def run(ctx: ExpContext) -> Summary:
    from tl_thinktok.datasets import grade, prompt_for
    from tl_thinktok.interventions.ttts import budget_forcing

    model = ctx.load(ctx.model)
    fam = ctx.family(ctx.model)
    prefix = answer_prefix(fam)
    words = list(ctx.size("ttts_words"))
    found = found_list(ctx.out, model.tokenizer, n_words=None)
    found_word = next((w for w in (found.words if found else []) if w not in words), None)
    if found_word is not None:  # the end-to-end chain: the top word found at MI peaks (fig4)
        words.append(found_word)
    answer_budget = ctx.budget("ttts_answer")
    results, rows = {}, []
    for ds in ctx.eval_datasets:
        items = ctx.eval_items(ds, ctx.size("n_ttts"))
        discovery = [i.id for i in ctx.discovery_items(ds)]
        budgets = list(ctx.size("budgets") or PAPER_BUDGETS[ds])
        run_ = accuracy_run(
            ctx,
            "ttts",
            {
                "dataset": ds,
                "ids": [i.id for i in items],
                "budgets": budgets,
                "words": words,
                "prefix": prefix,
                "answer_budget": answer_budget,
                "discovery_ids": discovery,
            },
        )
        units = [("original", b, it) for b in budgets for it in items]
        units += [(w, b, it) for w in words for b in budgets for it in items]

        def do(unit, ds=ds):
            cond, b, it = unit
            r = budget_forcing(
                model,
                prompt_for(fam, it.question),
                thinking_word=cond if cond != "original" else "Wait",
                end_marker="</think>",
                min_thinking_tokens=0 if cond == "original" else b,
                max_thinking_tokens=b,
                answer_prefix=prefix,
                max_answer_tokens=answer_budget,
                # built where the unit runs (cached per model): a Ray worker gets its own
                # engine, a vLLM engine cannot travel in the pickled work function
                engine=ctx.engine_of(model),
            )
            text = prefix + r.answer_text
            return {
                "correct": bool(grade(ds, text, it.answer)),
                "thinking_tokens": r.thinking_tokens_used,
                "words_appended": r.words_appended,
                "forced_end": r.forced_end,
            }

        out = run_.map(
            units,
            key=lambda u: f"{u[0]}|{u[1]}|{u[2].id}",
            fn=do,
            desc=f"fig7 {ds}",
            progress=ctx.progress,
        )
        agg: dict[tuple[str, int], list] = {}
        for (cond, b, _), o in zip(units, out, strict=True):
            agg.setdefault((cond, b), []).append(o)
        curve = []
        for (cond, b), lst in agg.items():
            correct = [x["correct"] for x in lst]
            orig = [x["correct"] for x in agg[("original", b)]]
            curve.append(
                {
                    "dataset": ds,
                    "condition": cond,
                    "budget": b,
                    "accuracy": float(np.mean([x["correct"] for x in lst])),
                    "mean_thinking_tokens": float(np.mean([x["thinking_tokens"] for x in lst])),
                    "mean_words_appended": float(np.mean([x["words_appended"] for x in lst])),
                    "forced_end_rate": float(np.mean([x["forced_end"] for x in lst])),
                    "n_items": len(lst),
                    "accuracy_ci": accuracy_stats(correct),
                    "mcnemar_vs_original": None
                    if cond == "original"
                    else mcnemar_exact(orig, correct),
                    "item_ids": [i.id for i in items],
                    "discovery_ids": discovery,
                }
            )
        rows += curve
        results[ds] = curve
    curves = [curve_of(ds, curve, words) for ds, curve in results.items()]
    fig = plot_curves(curves, f"Thinking-token test-time scaling: {ctx.model}", panel_width=4.8)
    files = [
        save_fig(ctx.out, NAME, fig),
        save_json(ctx.out, NAME, results),
        save_csv(ctx.out, NAME, rows),
    ]
    numbers: dict = {
        "answer budget (tokens)": answer_budget,
        "TTTS words (hand)": ", ".join(w for w in words if w != found_word),
        "TTTS word found at MI peaks (fig4)": found_word or "-",
    }
    for ds, curve in results.items():
        for cond in ["original"] + words:
            c = [x for x in curve if x["condition"] == cond]
            numbers[f"{ds}: {cond} acc by budget"] = ", ".join(
                f"{x['budget']}:{x['accuracy']:.2f}" for x in c
            )
            numbers[f"{ds}: {cond} acc by budget [95% CI]" + (
                "" if cond == "original" else ", McNemar vs original"
            )] = "; ".join(
                f"{x['budget']}: [{x['accuracy_ci']['lo']:.2f}, {x['accuracy_ci']['hi']:.2f}]"
                + ("" if x["mcnemar_vs_original"] is None
                   else f" p={x['mcnemar_vs_original']['p']:.2g}")
                for x in c
            )  # fmt: skip
        numbers[f"{ds}: problems (evaluation, disjoint from the discovery problems)"] = (
            curve[0]["n_items"] if curve else 0
        )
    return Summary(
        name=NAME,
        title="Accuracy vs token budget, original vs TTTS (paper Fig. 7)",
        model=ctx.model,
        dataset=", ".join(results),
        numbers=numbers,
        paper="TTTS keeps improving with the budget where the original model plateaus "
        "(reference-code TTTS, budgets GSM8K 256–2560, MATH-500 512–5120, AIME24 1024–12288).",
        notes="thinking budgets swept as listed per dataset; forced answer "
        f"{answer_budget} tokens. Words: the hand list (ttts_words) and, when fig4 ran first, the "
        "most frequent word it found at MI peaks (the end-to-end chain). "
        "TTTS here = s1-style budget forcing with minimum = maximum budget and the "
        "thinking word replacing an early end (tl_thinktok.interventions.ttts.budget_forcing); "
        "the reference's two-stage variant is tl_thinktok.interventions.ttts.reference_ttts. "
        "Evaluation problems are disjoint from the trace (discovery) problems; Wilson 95% "
        "intervals; each word against the original at the same budget by McNemar's exact test.",
        files=files,
    )
