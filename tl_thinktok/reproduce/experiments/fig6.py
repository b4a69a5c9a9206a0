"""Fig. 6: accuracy of the original model vs Representation Recycling (RR).

RR (:class:`~tl_thinktok.interventions.recycle.RepresentationRecycling`, the reference's
"candidate" algorithm): when the greedy candidate is a trigger thinking token and a coin flip
(p = 0.5, as the reference) succeeds, block ``L``'s output is fed through block ``L`` again and
the step is re-decoded. Reports how often RR fired and at which layer.

Two trigger lists (issue 14, the end-to-end chain): the hand list (the organism's thinking words,
or the reference's 10 trigger words for a real model) and the first 10 alphabetic words found at
this run's MI peaks (fig4's jsonl, read with the reference loader's rule), when fig4 ran first.
The generation budget is the RR budget of the run (``ctx.budget("rr")``: the paper's 16,000
tokens on real models), stated in the summary.

Run alone: ``python experiments/fig6_recycling.py --model organism --quick``.
"""

from __future__ import annotations

import numpy as np

from tl_thinktok.generation import decode, greedy
from tl_thinktok.reproduce.accuracy import (
    RR_TRIGGER_WORDS,
    accuracy_run,
    eval_prompt_ids,
    generate_and_grade,
    thinking_list,
)
from tl_thinktok.reproduce.context import ExpContext
from tl_thinktok.reproduce.experiments.wordlists import found_list
from tl_thinktok.reproduce.outputs import Summary, save_csv, save_fig, save_json
from tl_thinktok.reproduce.stats import accuracy_stats, mcnemar_exact

NAME = "fig6"
P_TRIGGER = 0.5
#: Trigger words taken from a word list (the reference's loader keeps the first 10).
N_TRIGGERS = 10


def rr_layer(ctx: ExpContext, model) -> int:
    """RR layer: ``--rr-layer`` or ``int(0.72 * n_layers)`` (paper: 23 of 32 for Llama-8B)."""
    from tl_thinktok import hosts

    if ctx.rr_layer is not None:
        return hosts.check_layer(model, ctx.rr_layer)
    return min(hosts.n_layers(model) - 1, int(0.72 * hosts.n_layers(model)))


def trigger_lists(ctx: ExpContext, model) -> dict[str, tuple[list[str], list[int]]]:
    """``{"hand": (words, ids), "found": (words, ids)}`` (``"found"`` when fig4 ran first)."""
    if ctx.is_organism:
        tt = thinking_list(ctx, model)
        words = tt.words[:10]
    else:
        tt = thinking_list(ctx, model, RR_TRIGGER_WORDS)
        words = tt.words
    out = {"hand": (words, tt.token_ids(len(words)))}
    found = found_list(ctx.out, model.tokenizer, n_words=N_TRIGGERS)
    if found is not None:
        out["found"] = (found.words, found.token_ids())
    return out


def run(ctx: ExpContext) -> Summary:
    import matplotlib.pyplot as plt

    from tl_thinktok.datasets import grade
    from tl_thinktok.interventions.recycle import RepresentationRecycling

    model = ctx.load(ctx.model)
    layer = rr_layer(ctx, model)
    lists = trigger_lists(ctx, model)
    ds = ctx.rr_dataset
    items = ctx.eval_items(ds, ctx.size("n_rr"))
    discovery = [i.id for i in ctx.discovery_items(ds)]
    budget = ctx.budget("rr")
    # the original and RR from one engine: RR needs TL hooks while generating
    engine = ctx.engine_for(
        "fig6 (Representation Recycling)", "RR re-runs a block through TransformerLens hooks"
    )
    run_ = accuracy_run(
        ctx,
        "recycling",
        {
            "dataset": ds,
            "ids": [i.id for i in items],
            "layer": layer,
            "triggers": {name: ids for name, (_, ids) in lists.items()},
            "p": P_TRIGGER,
            "budget": budget,
            "discovery_ids": discovery,
        },
        engine=engine,
    )
    base = run_.map(
        ["original"],
        key=str,
        fn=lambda _: generate_and_grade(ctx, model, ds, items, engine=engine),
        progress=False,
    )[0]

    def do(unit):
        name, item = unit
        trig = lists[name][1]
        rr = RepresentationRecycling(layer, trig, trigger="candidate", p=P_TRIGGER, seed=ctx.seed)
        ids = eval_prompt_ids(ctx, model, ctx.model, item.question)
        with rr.attach(model):
            gen = greedy(model, ids, budget)
        text = decode(model, gen)
        return {
            "id": item.id,
            "correct": bool(grade(ds, text, item.answer)),
            "fired": rr.fired,
            "n_new": len(gen),
        }

    units = [(name, it) for name in lists for it in items]
    res = run_.map(units, key=lambda u: f"{u[0]}|{u[1].id}", fn=do, desc="fig6 RR",
                   progress=ctx.progress)  # fmt: skip
    by = {name: [r for (n, _), r in zip(units, res, strict=True) if n == name] for name in lists}
    acc0 = float(np.mean([r["correct"] for r in base]))
    stats = {}
    for name, rr_res in by.items():
        fired = [r["fired"] for r in rr_res]
        n_tok = sum(r["n_new"] for r in rr_res)
        stats[name] = {
            "trigger_words": lists[name][0],
            "trigger_ids": lists[name][1],
            "accuracy_rr": float(np.mean([r["correct"] for r in rr_res])),
            "fired_total": sum(fired),
            "fired_per_problem_mean": float(np.mean(fired)),
            "problems_with_recycling": sum(1 for f in fired if f > 0),
            "fired_per_generated_token": sum(fired) / max(1, n_tok),
            "answers_changed": sum(
                a["correct"] != b["correct"] for a, b in zip(base, rr_res, strict=True)
            ),
            "accuracy_rr_ci": accuracy_stats([r["correct"] for r in rr_res]),
            "mcnemar_vs_original": mcnemar_exact(
                [r["correct"] for r in base], [r["correct"] for r in rr_res]
            ),
            "fired": fired,
            "n_tokens": n_tok,
        }
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2))
    labels = ["original"] + [f"RR {name} (L={layer})" for name in stats]
    accs = [acc0] + [st["accuracy_rr"] for st in stats.values()]
    a1.bar(labels, accs, color=["tab:gray", "tab:red", "tab:blue"][: len(accs)])
    for x, v in enumerate(accs):
        a1.text(x, v + 0.01, f"{v:.3f}", ha="center", fontsize=8)
    a1.set_ylim(0, 1.05)
    a1.set_ylabel("accuracy")
    a1.tick_params(axis="x", labelsize=7)
    a1.set_title(f"{ds}, n={len(items)}, budget {budget} tokens", fontsize=9)
    for (name, st), color in zip(stats.items(), ["tab:red", "tab:blue"], strict=False):
        f = st["fired"]
        a2.hist(f, bins=min(20, max(f) + 1) if f else 1, color=color, alpha=0.6,
                label=f"{name}: {sum(f)} in {st['n_tokens']} tokens")  # fmt: skip
    a2.set_xlabel("recycles per problem")
    a2.set_ylabel("problems")
    a2.legend(fontsize=7)
    a2.set_title("how often RR fired", fontsize=9)
    fig.suptitle(f"Representation Recycling: {ctx.model}", fontsize=10)
    fig.tight_layout()
    rows = []
    for i, a in enumerate(base):
        row = {"id": a["id"], "original_correct": a["correct"],
               "original_new_tokens": a["n_new"]}  # fmt: skip
        for name in stats:
            b = by[name][i]
            row.update({f"rr_{name}_correct": b["correct"], f"rr_{name}_fired": b["fired"],
                        f"rr_{name}_new_tokens": b["n_new"]})  # fmt: skip
        rows.append(row)
    hand = stats["hand"]
    data = {
        "layer": layer,
        "p": P_TRIGGER,
        "dataset": ds,
        "budget": budget,
        "accuracy_original": acc0,
        "accuracy_original_ci": accuracy_stats([r["correct"] for r in base]),
        "item_ids": [i.id for i in items],
        "discovery_ids": discovery,
        # the hand list's numbers at the top level, as before
        "trigger_words": hand["trigger_words"],
        "trigger_ids": hand["trigger_ids"],
        "accuracy_rr": hand["accuracy_rr"],
        "fired_total": hand["fired_total"],
        "fired_per_problem_mean": hand["fired_per_problem_mean"],
        "problems_with_recycling": hand["problems_with_recycling"],
        "fired_per_generated_token": hand["fired_per_generated_token"],
        "answers_changed": hand["answers_changed"],
        "trigger_lists": {
            n: {k: v for k, v in st.items() if k != "fired"} for n, st in stats.items()
        },  # fmt: skip
        "per_item": rows,
    }
    files = [
        save_fig(ctx.out, NAME, fig),
        save_json(ctx.out, NAME, data),
        save_csv(ctx.out, NAME, rows),
    ]
    numbers = {"layer": layer, "generation budget (tokens)": budget, "accuracy original": acc0}
    c0 = data["accuracy_original_ci"]
    numbers["problems (evaluation, disjoint from the discovery problems)"] = len(items)
    numbers["accuracy original [95% CI]"] = f"{acc0:.3f} [{c0['lo']:.2f}, {c0['hi']:.2f}]"
    for name, st in stats.items():
        numbers[f"accuracy RR ({name} triggers)"] = st["accuracy_rr"]
        ci, mc = st["accuracy_rr_ci"], st["mcnemar_vs_original"]
        numbers[f"accuracy RR ({name} triggers) [95% CI], McNemar vs original"] = (
            f"{ci['acc']:.3f} [{ci['lo']:.2f}, {ci['hi']:.2f}], p={mc['p']:.2g} "
            f"({mc['only_original']} right only originally, {mc['only_other']} only with RR)"
        )
        numbers[f"RR fired ({name}, total)"] = st["fired_total"]
        numbers[f"problems where RR fired ({name})"] = (
            f"{st['problems_with_recycling']} / {len(items)}"
        )
        numbers[f"recycles per generated token ({name})"] = st["fired_per_generated_token"]
        numbers[f"problems whose grade changed ({name})"] = st["answers_changed"]
        numbers[f"{name} triggers"] = ", ".join(st["trigger_words"])
    paper_budget = "" if budget >= 16000 else f" (this run: {budget} tokens)"
    return Summary(
        name=NAME,
        title="Original vs Representation Recycling (paper Fig. 6)",
        model=ctx.model,
        dataset=ds,
        numbers=numbers,
        paper="consistent gains; R1-Llama-8B on AIME24 33.3 → 40.0 (+20% relative), L = 23 of "
        f"32, greedy, 16k tokens{paper_budget}.",
        notes=f"generation budget {budget} tokens; trigger = candidate token in the list and "
        f"coin p={P_TRIGGER} (reference). 'hand' = "
        + ("the organism's thinking words" if ctx.is_organism else "the reference's triggers")
        + "; 'found' = the first 10 alphabetic words at MI peaks (fig4), when fig4 ran first. "
        "Evaluation problems are disjoint from the trace (discovery) problems; Wilson 95% "
        "intervals; RR against the original on the same problems by McNemar's exact test.",
        files=files,
    )
