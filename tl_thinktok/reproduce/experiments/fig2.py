"""Fig. 2: the MI trajectory of one trace per model, peaks marked and labelled.

Run alone: ``python experiments/fig2_mi_trajectories.py --model organism --quick``.
"""

from __future__ import annotations

import numpy as np

from tl_thinktok.reproduce.context import ExpContext
from tl_thinktok.reproduce.outputs import Summary, save_fig, save_json
from tl_thinktok.trace import MITrace

NAME = "fig2"


def pick_trace(traces: list[MITrace]) -> MITrace:
    """The trace of median length (a typical one, not the first by accident)."""
    order = sorted(range(len(traces)), key=lambda i: (traces[i].n_steps, i))
    return traces[order[len(order) // 2]]


def run(ctx: ExpContext) -> Summary:
    import matplotlib.pyplot as plt

    sets = [("reasoning", ctx.traces("model"))]
    if ctx.base_model:
        sets.append(("base", ctx.traces("base")))
    fig, axes = plt.subplots(len(sets), 1, figsize=(9, 2.8 * len(sets)), squeeze=False)
    data, numbers = {}, {}
    for ax, (role, ts) in zip(axes[:, 0], sets, strict=True):
        tr = pick_trace(ts.traces)
        tok = ctx.load(ts.model).tokenizer
        tr.plot(ax, tokenizer=tok, title=f"{role}: {ts.model} — trace {tr.id}")
        words = tr.peak_tokens(tok)
        data[role] = {
            "model": ts.model,
            "id": tr.id,
            "mi": tr.mi.tolist(),
            "peaks": tr.peaks,
            "peak_tokens": words,
            "text": tr.text,
        }
        numbers[f"{role}: steps"] = tr.n_steps
        numbers[f"{role}: peaks"] = len(tr.peaks)
        numbers[f"{role}: tokens at peaks"] = " ".join(words)
        numbers[f"{role}: max MI"] = float(tr.mi.max())
        numbers[f"{role}: median MI"] = float(np.median(tr.mi))
    fig.tight_layout()
    files = [save_fig(ctx.out, NAME, fig), save_json(ctx.out, NAME, data)]
    return Summary(
        name=NAME,
        title="MI trajectory of one trace per model, peaks marked (paper Fig. 2)",
        model=", ".join(ts.model for _, ts in sets),
        dataset=ctx.dataset,
        numbers=numbers,
        paper="MI is low most of the time with a few sharp peaks; R1-Llama-8B shows many "
        "peaks, base models fewer/lower (paper Fig. 2/3).",
        files=files,
    )
