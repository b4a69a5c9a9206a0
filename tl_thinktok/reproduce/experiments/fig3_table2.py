"""Fig. 3 + Table 2: reasoning model vs its base twin (3 traces each; mean / std / AOM of MI).

Run alone: ``python experiments/fig3_table2_base_vs_reasoning.py --model organism --quick``.
"""

from __future__ import annotations

import math

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

NAME = "fig3_table2"
N_SHOWN = 3


def table2_row(role: str, model: str, traces: list[MITrace]) -> dict:
    """Table 2 row: means over traces of mean / std / AOM of MI, each with its count ``<key>_n``.

    AOM is undefined for a trace without peaks; the mean skips those traces and is NaN when no
    trace has a peak.
    """
    st = [t.stats() for t in traces]
    row: dict = {"role": role, "model": model, "n_traces": len(st)}
    for key in ("mean", "std", "aom"):
        row[key], row[f"{key}_n"] = nanmean_n([getattr(s, key) for s in st])
    row["accuracy"], row["accuracy_n"] = nanmean_n(
        [None if t.correct is None else float(t.correct) for t in traces]
    )
    return row


def _fmt(value: float, n: int, spec: str) -> str:
    """A Table 2 cell: the value, or ``n/a`` when undefined (no trace counted)."""
    return "n/a" if n == 0 or math.isnan(value) else format(value, spec)


def table2_cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Column labels and cell text of Table 2 as drawn under the trajectories."""
    labels = ["model", "traces", "mean MI", "std MI", "AOM (traces with a peak)", "trace acc."]
    cells = [
        [
            f"{r['role']}: {r['model']}",
            str(r["n_traces"]),
            _fmt(r["mean"], r["mean_n"], ".4f"),
            _fmt(r["std"], r["std_n"], ".4f"),
            f"{_fmt(r['aom'], r['aom_n'], '.3f')} (n={r['aom_n']})",
            _fmt(r["accuracy"], r["accuracy_n"], ".2f"),
        ]
        for r in rows
    ]
    return labels, cells


def run(ctx: ExpContext) -> Summary:
    import matplotlib.pyplot as plt

    sets = [("reasoning", ctx.traces("model"))]
    if ctx.base_model:
        sets.append(("base", ctx.traces("base")))
    rows = [table2_row(role, ts.model, ts.traces) for role, ts in sets]
    fig = plt.figure(figsize=(4 * N_SHOWN, 3 + 0.35 * (len(rows) + 1)))
    grid = fig.add_gridspec(2, N_SHOWN, height_ratios=[3, 0.35 * (len(rows) + 1)])
    axes = [fig.add_subplot(grid[0, j]) for j in range(N_SHOWN)]
    shown: dict[str, list] = {}
    by_id = {role: {t.id: t for t in ts.traces} for role, ts in sets}
    common = [i for i in by_id["reasoning"] if all(i in d for d in by_id.values())]
    ids = common[:N_SHOWN]
    colors = {"reasoning": "tab:red", "base": "tab:gray"}
    for j, pid in enumerate(ids):
        ax = axes[j]
        for role, ts in sets:
            tr = by_id[role][pid]
            tr.plot(ax, color=colors[role], label=f"{role} ({ts.model})", peak_color=colors[role],
                    peak_label=None, marker_size=10, axis_labels=False, legend=False)  # fmt: skip
            shown.setdefault(role, []).append({"id": pid, "mi": tr.mi.tolist(), "peaks": tr.peaks})
        ax.set_title(f"problem {pid}", fontsize=9)
        ax.set_xlabel("step")
        if j == 0:
            ax.set_ylabel("MI(h_t, h_y)")
    # Table 2 under the trajectories; each row in its model's line colour (the legend)
    tab_ax = fig.add_subplot(grid[1, :])
    tab_ax.axis("off")
    labels, cells = table2_cells(rows)
    table = tab_ax.table(cellText=cells, colLabels=labels, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for i, r in enumerate(rows, start=1):
        table[i, 0].get_text().set_color(colors.get(r["role"], "black"))
    tab_ax.set_title("Table 2: means over all traces (the lines above: the first "
                     f"{len(ids)} problems)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    files = [
        save_fig(ctx.out, NAME, fig),
        save_json(ctx.out, NAME, {"table2": rows, "fig3": shown}),
        save_csv(ctx.out, NAME, rows),
    ]
    numbers: dict = {}
    for r in rows:
        for key, label in (("mean", "mean MI"), ("std", "std MI"), ("aom", "AOM")):
            numbers[f"{r['role']}: {label}"] = r[key]
            numbers[count_key(f"{r['role']}: {label}")] = r[f"{key}_n"]
        numbers[f"{r['role']}: trace accuracy"] = r["accuracy"]
    notes = (
        "Means over traces; AOM only over the traces with at least one peak (aom_n): with none "
        "it is undefined (NaN / null), never 0, so a model without peaks cannot look 'lower'."
    )
    if not ctx.base_model:
        notes += " No base model given (--base-model): reasoning model only."
    return Summary(
        name=NAME,
        title="Reasoning vs base model: MI trajectories and mean/std/AOM (paper Fig. 3, Table 2)",
        model=", ".join(r["model"] for r in rows),
        dataset=ctx.dataset,
        numbers=numbers,
        paper="reasoning models show higher mean MI, larger std and larger AOM than their "
        "base models (Table 2).",
        notes=notes,
        files=files,
    )
