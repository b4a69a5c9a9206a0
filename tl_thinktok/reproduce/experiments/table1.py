"""Table 1: peak statistics averaged over all traces of each model.

Run alone: ``python experiments/table1_peak_stats.py --model organism --quick``.
"""

from __future__ import annotations

import numpy as np

from tl_thinktok.reproduce.context import ExpContext
from tl_thinktok.reproduce.outputs import (
    Summary,
    count_key,
    nanmean_n,
    save_csv,
    save_fig,
    save_json,
)
from tl_thinktok.trace import MITrace

NAME = "table1"
COLUMNS = ["n_peaks", "n_steps", "ratio", "max_interval", "min_interval", "avg_interval"]
PAPER = {
    "R1-Qwen-7B": (2.57, 507.97, "0.51%"),
    "R1-Llama-8B": (24.54, 511.03, "4.80%"),
    "R1-Qwen-14B": (18.30, 510.09, ""),
    "R1-Qwen-32B": (10.82, 511.22, ""),
    "QwQ-32B": (5.41, 489.80, ""),
    "R1-Llama-70B": (16.60, 512.00, ""),
}


def stats_row(role: str, model: str, traces: list[MITrace]) -> dict:
    """Means over traces of the Table 1 columns; ``<column>_n`` = traces where it is defined.

    An interval needs two peaks: a mean over no such trace is NaN (undefined), never 0.
    """
    stats = [t.stats() for t in traces]
    row: dict = {"role": role, "model": model, "n_traces": len(stats)}
    for c in COLUMNS:
        row[c], row[f"{c}_n"] = nanmean_n([getattr(s, c) for s in stats])
    return row


def table_rows(ctx: ExpContext) -> list[dict]:
    sets = [("reasoning", ctx.traces("model"))]
    if ctx.base_model:
        sets.append(("base", ctx.traces("base")))
    return [stats_row(role, ts.model, ts.traces) for role, ts in sets]


def _cell(v: float, fmt: str) -> str:
    return "n/a" if not np.isfinite(v) else format(v, fmt)


def run(ctx: ExpContext) -> Summary:
    import matplotlib.pyplot as plt

    rows = table_rows(ctx)
    fig, ax = plt.subplots(figsize=(10, 0.5 + 0.28 * (len(rows) + len(PAPER))))
    ax.axis("off")
    cells = [
        [
            r["model"],
            f"{r['n_peaks']:.2f}",
            f"{r['n_steps']:.1f}",
            f"{100 * r['ratio']:.2f}%",
            *(
                f"{_cell(r[c], '.1f')} (n={r[c + '_n']})"
                for c in ("max_interval", "min_interval", "avg_interval")
            ),
        ]
        for r in rows
    ]
    cells += [
        [f"paper: {k}", f"{v[0]:.2f}", f"{v[1]:.2f}", v[2] or "-", "-", "-", "-"]
        for k, v in PAPER.items()
    ]
    t = ax.table(
        cellText=cells,
        colLabels=["model", "#peaks", "#steps", "ratio", "max int.", "min int.", "avg int."],
        colWidths=[0.28] + [0.12] * 6,
        loc="center",
    )
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    ax.set_title("Table 1: peaks per trace (mean over traces; intervals over traces with ≥2 peaks)")
    files = [
        save_fig(ctx.out, NAME, fig),
        save_json(ctx.out, NAME, rows),
        save_csv(ctx.out, NAME, rows),
    ]
    numbers = {}
    for r in rows:
        numbers[f"{r['role']}: peaks/steps"] = (
            f"{r['n_peaks']:.2f} / {r['n_steps']:.1f} ({100 * r['ratio']:.2f}%)"
        )
        numbers[f"{r['role']}: avg interval"] = r["avg_interval"]
        numbers[count_key(f"{r['role']}: avg interval")] = r["avg_interval_n"]
    return Summary(
        name=NAME,
        title="Peak statistics over all traces (paper Table 1)",
        model=", ".join(r["model"] for r in rows),
        dataset=ctx.dataset,
        numbers=numbers,
        paper="; ".join(f"{k} {v[0]} peaks / {v[1]} steps" for k, v in PAPER.items()),
        notes="ratio = mean over traces of #peaks/#steps; intervals = gaps between consecutive "
        "peaks, averaged over the traces that have at least 2 peaks (n = how many); with no such "
        "trace the mean is undefined (NaN / null / n/a), never 0.",
        files=files,
    )
