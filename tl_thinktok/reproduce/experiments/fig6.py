"""Fig. 6: accuracy of the original model vs Representation Recycling (RR).

RR (:class:`~tl_thinktok.interventions.recycle.RepresentationRecycling`, the reference's
"candidate" algorithm): when the greedy candidate is a trigger thinking token and a coin flip
(p = 0.5, as the reference) succeeds, block ``L``'s output is fed through block ``L`` again and
the step is re-decoded. Reports how often RR fired and at which layer.

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
from tl_thinktok.reproduce.outputs import Summary, save_csv, save_fig, save_json

NAME = "fig6"
P_TRIGGER = 0.5


def rr_layer(ctx: ExpContext, model) -> int:
    """RR layer: ``--rr-layer`` or ``int(0.72 * n_layers)`` (paper: 23 of 32 for Llama-8B)."""
    from tl_thinktok import hosts

    if ctx.rr_layer is not None:
        return hosts.check_layer(model, ctx.rr_layer)
    return min(hosts.n_layers(model) - 1, int(0.72 * hosts.n_layers(model)))


def run(ctx: ExpContext) -> Summary:
    import matplotlib.pyplot as plt

    from tl_thinktok.datasets import grade, load_dataset
    from tl_thinktok.interventions.recycle import RepresentationRecycling

    model = ctx.load(ctx.model)
    layer = rr_layer(ctx, model)
    if ctx.is_organism:
        tt = thinking_list(ctx, model)
        words = tt.words[:10]
    else:
        tt = thinking_list(ctx, model, RR_TRIGGER_WORDS)
        words = tt.words
    trig = tt.token_ids(len(words))
    ds = ctx.rr_dataset
    items = load_dataset(ds, n=ctx.size("n_rr"), seed=ctx.seed)
    max_new = ctx.size("max_new_tokens")
    run_ = accuracy_run(
        ctx,
        "recycling",
        {
            "dataset": ds,
            "ids": [i.id for i in items],
            "layer": layer,
            "trigger_ids": trig,
            "p": P_TRIGGER,
        },
    )
    base = run_.map(
        ["original"],
        key=str,
        fn=lambda _: generate_and_grade(ctx, model, ds, items),
        progress=False,
    )[0]

    def do(item):
        rr = RepresentationRecycling(layer, trig, trigger="candidate", p=P_TRIGGER, seed=ctx.seed)
        ids = eval_prompt_ids(ctx, model, ctx.model, item.question)
        with rr.attach(model):
            gen = greedy(model, ids, max_new)
        text = decode(model, gen)
        return {
            "id": item.id,
            "correct": bool(grade(ds, text, item.answer)),
            "fired": rr.fired,
            "n_new": len(gen),
        }

    rr_res = run_.map(items, key=lambda it: it.id, fn=do, desc="fig6 RR", progress=ctx.progress)
    acc0 = float(np.mean([r["correct"] for r in base]))
    acc1 = float(np.mean([r["correct"] for r in rr_res]))
    fired = [r["fired"] for r in rr_res]
    n_tok = sum(r["n_new"] for r in rr_res)
    changed = sum(a["correct"] != b["correct"] for a, b in zip(base, rr_res, strict=True))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    a1.bar(["original", f"RR (L={layer})"], [acc0, acc1], color=["tab:gray", "tab:red"])
    for x, v in enumerate([acc0, acc1]):
        a1.text(x, v + 0.01, f"{v:.3f}", ha="center", fontsize=8)
    a1.set_ylim(0, 1.05)
    a1.set_ylabel("accuracy")
    a1.set_title(f"{ds}, n={len(items)}", fontsize=9)
    a2.hist(fired, bins=min(20, max(fired) + 1) if fired else 1, color="tab:red")
    a2.set_xlabel("recycles per problem")
    a2.set_ylabel("problems")
    a2.set_title(f"RR fired {sum(fired)} times in {n_tok} tokens", fontsize=9)
    fig.suptitle(f"Representation Recycling: {ctx.model}", fontsize=10)
    fig.tight_layout()
    rows = [
        {
            "id": a["id"],
            "original_correct": a["correct"],
            "rr_correct": b["correct"],
            "rr_fired": b["fired"],
            "original_new_tokens": a["n_new"],
            "rr_new_tokens": b["n_new"],
        }
        for a, b in zip(base, rr_res, strict=True)
    ]
    data = {
        "layer": layer,
        "trigger_words": words,
        "trigger_ids": trig,
        "p": P_TRIGGER,
        "dataset": ds,
        "accuracy_original": acc0,
        "accuracy_rr": acc1,
        "fired_total": sum(fired),
        "fired_per_problem_mean": float(np.mean(fired)),
        "problems_with_recycling": sum(1 for f in fired if f > 0),
        "fired_per_generated_token": sum(fired) / max(1, n_tok),
        "answers_changed": changed,
        "per_item": rows,
    }
    files = [
        save_fig(ctx.out, NAME, fig),
        save_json(ctx.out, NAME, data),
        save_csv(ctx.out, NAME, rows),
    ]
    return Summary(
        name=NAME,
        title="Original vs Representation Recycling (paper Fig. 6)",
        model=ctx.model,
        dataset=ds,
        numbers={
            "layer": layer,
            "accuracy original": acc0,
            "accuracy RR": acc1,
            "RR fired (total)": sum(fired),
            "problems where RR fired": f"{data['problems_with_recycling']} / {len(items)}",
            "recycles per generated token": data["fired_per_generated_token"],
            "problems whose grade changed": changed,
        },
        paper="consistent gains; R1-Llama-8B on AIME24 33.3 → 40.0 (+20% relative), L = 23 of "
        "32, greedy, 16k tokens.",
        notes=f"trigger = candidate token in {words} and coin p={P_TRIGGER} (reference).",
        files=files,
    )
