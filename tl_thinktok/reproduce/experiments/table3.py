"""Table 3: AOM and peak statistics per dataset (the paper's Table 3 reports AOM on GPQA / MedQA,
which cannot be bundled: pass any JSONL with ``--dataset path.jsonl --question-field ...
--answer-field ...``).

Datasets: the trace dataset (``--dataset``: a bundled name or a user JSONL file) and the bundled
ones for the model kind: the organism's own task and GSM8K (out of distribution for the organism:
its vocabulary misses many GSM8K words), or GSM8K / MATH-500 / AIME24 for a real model. Per
dataset: one trace pass (cached), then the means over traces of #peaks, #steps, ratio, intervals,
mean / std of MI and AOM, each with the number of traces where it is defined (NaN if none).

Every dataset is read before anything is computed (a malformed line of a user file is an error
naming file and line) and the outputs are written at the end, atomically. A bundled extra dataset
whose problems do not fit the model's context is skipped and named in the summary (the trace
dataset never is).

Run alone: ``python -m tl_thinktok reproduce --only table3 --dataset my.jsonl --question-field
problem --answer-field answer``.
"""

from __future__ import annotations

import numpy as np

from tl_thinktok.datasets import is_user_dataset, load_dataset
from tl_thinktok.peaks import STAT_FIELDS, aggregate
from tl_thinktok.reproduce.context import ExpContext
from tl_thinktok.reproduce.outputs import (
    Summary,
    count_key,
    nanmean_n,
    save_csv,
    save_fig,
    save_json,
)
from tl_thinktok.reproduce.rundirs import slug
from tl_thinktok.reproduce.stats import trace_bootstrap, two_sample_bootstrap, wilson
from tl_thinktok.reproduce.traces import trace_pass

NAME = "table3"
N_BOOT = 1000
#: Bundled datasets per model kind (besides ``--dataset``).
BUNDLED = {"organism": ["organism", "gsm8k"], "hf": ["gsm8k", "math500", "aime24"]}
#: Traces per extra dataset (full / quick); the trace dataset keeps ``n_traces``.


def datasets_of(ctx: ExpContext) -> list[str]:
    """The trace dataset first, then the bundled ones of the model kind (no repeats)."""
    names = [ctx.dataset] + BUNDLED["organism" if ctx.is_organism else "hf"]
    return list(dict.fromkeys(n for n in names if n))


def label(ds: str) -> str:
    """Short display name of a dataset (a user file: its file name)."""
    return slug(ds.split("#", 1)[0]) if is_user_dataset(ds) else ds


def dataset_row(ds: str, traces: list, seed: int = 0, n_boot: int = N_BOOT) -> dict:
    """Table 3 row of one dataset: :func:`tl_thinktok.peaks.aggregate`, the AOM's
    trace-bootstrap 95% CI (over the traces with peaks) and the accuracy with its Wilson CI."""
    stats = [t.stats() for t in traces]
    agg = aggregate(stats)
    row: dict = {"dataset": label(ds), "spec": ds, "n_traces": len(traces)}
    for f in STAT_FIELDS:
        row[f], row[f"{f}_n"] = agg[f], int(agg[f"{f}_n"])
    rng = np.random.default_rng(seed)
    for f in ("ratio", "aom"):  # trace-bootstrap CI over the traces where it is defined
        v = _finite(stats, f)
        _, lo, hi = (
            trace_bootstrap(lambda i, v=v: float(v[i].mean()), v.size, rng, n_boot)
            if v.size
            else (np.nan, np.nan, np.nan)
        )
        row[f"{f}_ci_low"], row[f"{f}_ci_high"] = lo, hi
    graded = [bool(t.correct) for t in traces if t.correct is not None]
    row["accuracy"], row["accuracy_n"] = nanmean_n([float(c) for c in graded])
    row["accuracy_ci_low"], row["accuracy_ci_high"] = wilson(sum(graded), len(graded))
    return row


def _finite(stats: list, field: str) -> np.ndarray:
    v = np.array([getattr(s, field) for s in stats], dtype=np.float64)
    return v[np.isfinite(v)]


def compare(ds: str, traces: list, ref: str, ref_traces: list, seed: int = 0,
            n_boot: int = N_BOOT) -> dict:  # fmt: skip
    """Dataset ``ds`` against the trace dataset ``ref``: differences of the mean peak ratio
    (peaks per step, every trace) and of the AOM (traces with peaks), each with an independent
    two-sample trace-bootstrap 95% CI (null: 0)."""
    a, b = [t.stats() for t in traces], [t.stats() for t in ref_traces]
    out: dict = {"dataset": label(ds), "reference": label(ref)}
    rng = np.random.default_rng(seed)
    for f in ("ratio", "aom"):
        va, vb = _finite(a, f), _finite(b, f)
        if va.size and vb.size:
            d, lo, hi = two_sample_bootstrap(lambda i, v=va: float(v[i].mean()), va.size,
                                             lambda i, v=vb: float(v[i].mean()), vb.size, rng,
                                             n_boot)  # fmt: skip
        else:
            d = lo = hi = float("nan")
        out[f"{f}_diff"], out[f"{f}_diff_ci_low"], out[f"{f}_diff_ci_high"] = d, lo, hi
        out[f"{f}_n"], out[f"{f}_ref_n"] = int(va.size), int(vb.size)
    return out


def run(ctx: ExpContext) -> Summary:
    import matplotlib.pyplot as plt

    names = datasets_of(ctx)
    for ds in names:  # read every dataset first: a bad file fails before any work
        load_dataset(ds, n=1, seed=ctx.seed)
    n_traces = ctx.size("n_traces")
    rows, skipped, comparisons = [], {}, []
    ref_traces: list = []
    for ds in names:
        if ds == ctx.dataset:
            ts = ctx.traces("model")
        else:
            try:
                ts = trace_pass(ctx, ctx.model, ds, min(n_traces, ctx.size("n_extra")))
            except ValueError as e:  # a bundled extra the model cannot take (context too short)
                if "context" not in str(e):
                    raise
                skipped[label(ds)] = str(e)
                continue
        rows.append(dataset_row(ds, ts.traces, ctx.seed))
        if ds == ctx.dataset:
            ref_traces = ts.traces
        elif ref_traces:
            comparisons.append(compare(ds, ts.traces, ctx.dataset, ref_traces, ctx.seed))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 0.9 + 0.45 * len(rows)),
                                 gridspec_kw={"width_ratios": [2.2, 1]})  # fmt: skip
    a1.axis("off")

    def cell(r, f, fmt):
        v = r[f]
        return "n/a" if not np.isfinite(v) else format(v, fmt)

    cells = [[r["dataset"], str(r["n_traces"]), cell(r, "n_peaks", ".2f"),
              cell(r, "n_steps", ".1f"), f"{100 * r['ratio']:.2f}%", cell(r, "mean", ".4f"),
              f"{cell(r, 'aom', '.3f')} (n={r['aom_n']})", cell(r, "accuracy", ".2f")]
             for r in rows]  # fmt: skip
    t = a1.table(cellText=cells, loc="center",
                 colLabels=["dataset", "traces", "#peaks", "#steps", "ratio", "mean MI", "AOM",
                            "acc."])  # fmt: skip
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    a1.set_title(f"Table 3: peaks and AOM per dataset ({ctx.model})", fontsize=9)
    xs = np.arange(len(rows))
    aom = [r["aom"] if np.isfinite(r["aom"]) else 0.0 for r in rows]
    a2.bar(xs, aom, color="tab:red")
    for x, r in zip(xs, rows, strict=True):
        a2.text(x, aom[x], "n/a" if not np.isfinite(r["aom"]) else f"n={r['aom_n']}",
                ha="center", va="bottom", fontsize=7)  # fmt: skip
    a2.set_xticks(xs, [r["dataset"] for r in rows], rotation=30, fontsize=7)
    a2.set_ylabel("AOM (mean over traces with peaks)")
    fig.tight_layout()
    files = [
        save_fig(ctx.out, NAME, fig),
        save_json(
            ctx.out,
            NAME,
            {"model": ctx.model, "rows": rows, "comparisons": comparisons, "skipped": skipped},
        ),  # fmt: skip
        save_csv(ctx.out, NAME, rows),
    ]
    numbers: dict = {}
    for r in rows:
        d = r["dataset"]
        numbers[f"{d}: peaks/steps"] = f"{r['n_peaks']:.2f} / {r['n_steps']:.1f}"
        numbers[f"{d}: peak ratio (95% CI)"] = (
            f"{100 * r['ratio']:.2f}% [{100 * r['ratio_ci_low']:.2f}, "
            f"{100 * r['ratio_ci_high']:.2f}] (n={r['ratio_n']})"
        )
        numbers[f"{d}: AOM"] = r["aom"]
        numbers[count_key(f"{d}: AOM")] = r["aom_n"]
        numbers[f"{d}: AOM 95% CI"] = f"[{r['aom_ci_low']:.2f}, {r['aom_ci_high']:.2f}]"
        numbers[f"{d}: accuracy (Wilson 95% CI)"] = (
            f"{r['accuracy']:.3f} [{r['accuracy_ci_low']:.3f}, {r['accuracy_ci_high']:.3f}] "
            f"(n={r['accuracy_n']})"
        )
        numbers[f"{d}: mean MI"] = r["mean"]
    for c in comparisons:
        key = f"{c['dataset']} - {c['reference']}"
        numbers[f"{key}: peak ratio difference (95% CI)"] = (
            f"{100 * c['ratio_diff']:+.2f} [{100 * c['ratio_diff_ci_low']:+.2f}, "
            f"{100 * c['ratio_diff_ci_high']:+.2f}] points (n={c['ratio_n']} vs {c['ratio_ref_n']})"
        )
        numbers[f"{key}: AOM difference (95% CI)"] = (
            f"{c['aom_diff']:+.2f} [{c['aom_diff_ci_low']:+.2f}, {c['aom_diff_ci_high']:+.2f}] "
            f"(n={c['aom_n']} vs {c['aom_ref_n']})"
        )
    for d, why in skipped.items():
        numbers[f"{d}: skipped"] = why
    return Summary(
        name=NAME,
        title="AOM and peak statistics per dataset (paper Table 3)",
        model=ctx.model,
        dataset=", ".join(r["dataset"] for r in rows),
        numbers=numbers,
        paper="Table 3 (v2) reports AOM on GPQA and MedQA (not bundled; pass them as JSONL with "
        "--dataset path.jsonl --question-field ... --answer-field ...).",
        notes="Means over traces; AOM, intervals over the traces where defined (n), NaN if none; "
        "95% CIs: trace bootstrap (peak ratio over every trace, AOM over the traces with "
        "peaks; percentile intervals from fewer than about 10 traces are too narrow, read them "
        "as indicative); differences against the trace dataset: two-sample trace bootstrap "
        "(null 0); accuracy with its Wilson CI. "
        f"Extra datasets use {ctx.size('n_extra')} traces (or n_traces if fewer)"
        + ("; GSM8K is out of distribution for the organism." if ctx.is_organism else "."),
        files=files,
    )
