"""Figs. 9–20: every MI trajectory of every model, 4-column grids.

Run alone: ``python experiments/figs9_20_trajectory_grids.py --model organism --quick``.
"""

from __future__ import annotations

import math

from tl_thinktok.reproduce.context import ExpContext
from tl_thinktok.reproduce.outputs import Summary, save_fig, save_json
from tl_thinktok.reproduce.rundirs import slug
from tl_thinktok.reproduce.traces import TraceSet

NAME = "figs9_20"
COLS = 4


def grid(ts: TraceSet, title: str):
    """One small panel per trace, peaks marked."""
    import matplotlib.pyplot as plt

    n = len(ts.traces)
    rows = max(1, math.ceil(n / COLS))
    fig, axes = plt.subplots(rows, COLS, figsize=(3.2 * COLS, 1.5 * rows + 0.6), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        if k >= n:
            ax.axis("off")
            continue
        tr = ts.traces[k]
        tr.plot(ax, lw=0.7, marker_size=5, axis_labels=False, legend=False)
        ax.set_title(f"{tr.id} ({len(tr.peaks)} peaks)", fontsize=6)
        ax.tick_params(labelsize=5)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def run(ctx: ExpContext) -> Summary:
    sets = [("reasoning", ctx.traces("model"))]
    if ctx.base_model:
        sets.append(("base", ctx.traces("base")))
    files, numbers, data = [], {}, {}
    for role, ts in sets:
        name = f"{NAME}_{role}_{slug(ts.model)}"
        files.append(save_fig(ctx.out, name, grid(ts, f"All MI trajectories: {ts.model}")))
        numbers[f"{role}: traces"] = len(ts.traces)
        numbers[f"{role}: traces with ≥1 peak"] = sum(1 for t in ts.traces if t.peaks)
        data[role] = {
            "model": ts.model,
            "traces": [{"id": t.id, "mi": t.mi.tolist(), "peaks": t.peaks} for t in ts.traces],
        }
    files.append(save_json(ctx.out, NAME, data))
    return Summary(
        name=NAME,
        title="All MI trajectories per model, 4-column grids (paper Figs. 9–20)",
        model=", ".join(ts.model for _, ts in sets),
        dataset=ctx.dataset,
        numbers=numbers,
        paper="the paper shows 100 traces per model; peaks appear in most traces.",
        files=files,
    )
