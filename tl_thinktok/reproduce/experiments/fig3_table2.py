"""Fig. 3 + Table 2: reasoning model vs its base twin (3 traces each; mean / std / AOM of MI).

Run alone: ``python experiments/fig3_table2_base_vs_reasoning.py --model organism --quick``.
"""

from __future__ import annotations

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


def run(ctx: ExpContext) -> Summary:
    import matplotlib.pyplot as plt

    sets = [("reasoning", ctx.traces("model"))]
    if ctx.base_model:
        sets.append(("base", ctx.traces("base")))
    fig, axes = plt.subplots(1, N_SHOWN, figsize=(4 * N_SHOWN, 3), squeeze=False)
    shown: dict[str, list] = {}
    by_id = {role: {t.id: t for t in ts.traces} for role, ts in sets}
    common = [i for i in by_id["reasoning"] if all(i in d for d in by_id.values())]
    ids = common[:N_SHOWN]
    colors = {"reasoning": "tab:red", "base": "tab:gray"}
    for j, pid in enumerate(ids):
        ax = axes[0, j]
        for role, ts in sets:
            tr = by_id[role][pid]
            tr.plot(ax, color=colors[role], label=f"{role} ({ts.model})", peak_color=colors[role],
                    peak_label=None, marker_size=10, axis_labels=False, legend=False)  # fmt: skip
            shown.setdefault(role, []).append({"id": pid, "mi": tr.mi.tolist(), "peaks": tr.peaks})
        ax.set_title(f"problem {pid}", fontsize=9)
        ax.set_xlabel("step")
        if j == 0:
            ax.set_ylabel("MI(h_t, h_y)")
            ax.legend(fontsize=7)
    fig.tight_layout()
    rows = [table2_row(role, ts.model, ts.traces) for role, ts in sets]
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
