"""Fig. 2: the MI trajectory of one trace per model, peaks marked.

Run alone: ``python experiments/fig2_mi_trajectories.py --model organism --quick``.
"""

from __future__ import annotations

import sys

import numpy as np

from tl_thinktok.reproduce.core import ExpContext, Summary, save_fig, save_json

NAME = "fig2"


def pick_trace(records: list[dict]) -> dict:
    """The trace of median length (a typical one, not the first by accident)."""
    order = sorted(range(len(records)), key=lambda i: (records[i]["n_steps"], i))
    return records[order[len(order) // 2]]


def run(ctx: ExpContext) -> Summary:
    import matplotlib.pyplot as plt

    sets = [("reasoning", ctx.traces("model"))]
    if ctx.base_model:
        sets.append(("base", ctx.traces("base")))
    fig, axes = plt.subplots(len(sets), 1, figsize=(9, 2.8 * len(sets)), squeeze=False)
    data, numbers = {}, {}
    for ax, (role, ts) in zip(axes[:, 0], sets, strict=True):
        rec = pick_trace(ts.records)
        m = np.asarray(rec["mi"])
        peaks = rec["peaks"]
        ax.plot(np.arange(len(m)), m, lw=1.0, color="tab:blue")
        ax.scatter(peaks, m[peaks], color="tab:red", zorder=3, s=18, label="peaks (Q3+1.5 IQR)")
        tok = ctx.load(ts.model).tokenizer
        words = [tok.decode([rec["gen_ids"][p]]).strip() for p in peaks]
        for p, w in zip(peaks, words, strict=True):
            ax.annotate(
                w,
                (p, m[p]),
                textcoords="offset points",
                xytext=(0, 4),
                ha="center",
                fontsize=7,
                color="tab:red",
            )
        ax.set_title(f"{role}: {ts.model} — trace {rec['id']}", fontsize=9)
        ax.set_xlabel("generation step t")
        ax.set_ylabel("MI(h_t, h_y)")
        ax.legend(fontsize=8, loc="upper right")
        data[role] = {
            "model": ts.model,
            "id": rec["id"],
            "mi": rec["mi"],
            "peaks": peaks,
            "peak_tokens": words,
            "text": rec["text"],
        }
        numbers[f"{role}: steps"] = len(m)
        numbers[f"{role}: peaks"] = len(peaks)
        numbers[f"{role}: tokens at peaks"] = " ".join(words)
        numbers[f"{role}: max MI"] = float(m.max())
        numbers[f"{role}: median MI"] = float(np.median(m))
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

