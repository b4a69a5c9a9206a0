"""Table 1: peak statistics averaged over all traces of each model, beside their nulls.

The peak rule (Q3 + 1.5 IQR) looks only at the set of values, not their order, so a peak count
alone shows nothing; each row gets the nulls it must beat (:func:`null_row`):

* *other answer*: the same residuals' MI against another problem's answer representation (the
  next trace's, cyclically) — peaks per trace when the answer is not this trace's, with a
  trace-bootstrap 95% interval of the paired difference own − other;
* *i.i.d. noise*: the rule's peak rate on Gaussian and on exponential (skewed, like MI) noise of
  the same trace lengths;
* *order-shuffled*: the same values in a random order, which keeps each trace's peak count and
  moves its peaks to random steps — the mean interval between peaks and the mean relative peak
  position under that null (mean and 95% range over ``N_SHUFFLES`` shuffles), beside the real ones.

Run alone: ``python experiments/table1_peak_stats.py --model organism --quick``.
"""

from __future__ import annotations

import numpy as np
import torch

from tl_thinktok.reproduce.context import ExpContext
from tl_thinktok.reproduce.outputs import (
    Summary,
    count_key,
    nanmean_n,
    save_csv,
    save_fig,
    save_json,
)
from tl_thinktok.reproduce.stats import percentile_interval, trace_bootstrap
from tl_thinktok.reproduce.traces import TraceSet, compute_mi, peak_indices
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


N_SHUFFLES = 200
N_BOOT = 1000


def _peak_count(values: np.ndarray) -> int:
    return len(peak_indices(values))


def _intervals_and_positions(peaks: np.ndarray, n: int) -> tuple[float, float]:
    """Mean gap between consecutive peaks (NaN below 2 peaks), mean relative peak position."""
    gap = float(np.mean(np.diff(peaks))) if len(peaks) >= 2 else float("nan")
    pos = float(np.mean(peaks / max(n - 1, 1))) if len(peaks) else float("nan")
    return gap, pos


def null_row(ts: TraceSet, seed: int) -> dict:
    """The nulls of one model's Table 1 row (see the module docstring); every value has its n."""
    traces = ts.traces
    rng = np.random.default_rng(seed)
    own = np.array([len(t.peaks) for t in traces], dtype=np.float64)
    tensors = [ts.residuals(t) for t in traces]  # each trace's file read once
    other = np.array([
        _peak_count(compute_mi(t["resid"].to(torch.float64),
                               tensors[(i + 1) % len(traces)]["answer"].to(torch.float64)))
        for i, t in enumerate(tensors)
    ], dtype=np.float64)  # fmt: skip
    diff = own - other
    _, lo, hi = trace_bootstrap(lambda i: diff[i].mean(), len(diff), rng, N_BOOT)
    gauss, expo = [], []
    for tr in traces:
        for _ in range(20):
            gauss.append(_peak_count(rng.standard_normal(tr.n_steps)) / tr.n_steps)
            expo.append(_peak_count(rng.exponential(size=tr.n_steps)) / tr.n_steps)
    real = [_intervals_and_positions(np.asarray(t.peaks), t.n_steps) for t in traces]
    shuffled_gap, shuffled_pos = [], []
    for _ in range(N_SHUFFLES):
        draw = [_intervals_and_positions(np.sort(rng.choice(t.n_steps, len(t.peaks), False)),
                                         t.n_steps) for t in traces]  # fmt: skip
        shuffled_gap.append(nanmean_n([g for g, _ in draw])[0])
        shuffled_pos.append(nanmean_n([p for _, p in draw])[0])
    gap, gap_n = nanmean_n([g for g, _ in real])
    pos, pos_n = nanmean_n([p for _, p in real])
    return {
        "n_traces": len(traces),
        "peaks_own": float(own.mean()),
        "peaks_other_answer": float(other.mean()),
        "peaks_own_minus_other": float(diff.mean()),
        "peaks_own_minus_other_ci": [lo, hi],
        "ratio_gaussian_iid": float(np.mean(gauss)),
        "ratio_exponential_iid": float(np.mean(expo)),
        "avg_interval": gap,
        "avg_interval_n": gap_n,
        "avg_interval_shuffled": nanmean_n(shuffled_gap)[0],
        "avg_interval_shuffled_range": list(percentile_interval(shuffled_gap)),
        "peak_position": pos,
        "peak_position_n": pos_n,
        "peak_position_shuffled": nanmean_n(shuffled_pos)[0],
        "peak_position_shuffled_range": list(percentile_interval(shuffled_pos)),
    }


def flat_row(row: dict) -> dict:
    """A Table 1 row for the CSV: the nulls as ``null_<key>`` columns (ranges as ``lo;hi``)."""
    out = {k: v for k, v in row.items() if k != "nulls"}
    for k, v in row.get("nulls", {}).items():
        out[f"null_{k}"] = ";".join(f"{x:.6g}" for x in v) if isinstance(v, list) else v
    return out


def table_rows(ctx: ExpContext) -> list[dict]:
    sets = [("reasoning", ctx.traces("model"))]
    if ctx.base_model:
        sets.append(("base", ctx.traces("base")))
    rows = []
    for role, ts in sets:
        row = stats_row(role, ts.model, ts.traces)
        row["nulls"] = null_row(ts, ctx.seed)
        rows.append(row)
    return rows


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
        save_csv(ctx.out, NAME, [flat_row(r) for r in rows]),
    ]
    numbers = {}
    for r in rows:
        role, nl = r["role"], r["nulls"]
        numbers[f"{role}: peaks/steps"] = (
            f"{r['n_peaks']:.2f} / {r['n_steps']:.1f} ({100 * r['ratio']:.2f}%)"
        )
        numbers[f"{role}: avg interval"] = r["avg_interval"]
        numbers[count_key(f"{role}: avg interval")] = r["avg_interval_n"]
        lo, hi = nl["peaks_own_minus_other_ci"]
        numbers[f"{role}: peaks per trace, own answer vs another problem's (null)"] = (
            f"{nl['peaks_own']:.2f} vs {nl['peaks_other_answer']:.2f} (difference "
            f"{nl['peaks_own_minus_other']:+.2f} [{lo:+.2f}, {hi:+.2f}], n={nl['n_traces']})"
        )
        numbers[f"{role}: peak rate, real vs i.i.d. Gaussian / exponential noise (null)"] = (
            f"{100 * r['ratio']:.2f}% vs {100 * nl['ratio_gaussian_iid']:.2f}% / "
            f"{100 * nl['ratio_exponential_iid']:.2f}%"
        )
        a, b = nl["avg_interval_shuffled_range"]
        numbers[f"{role}: avg interval, real vs order-shuffled (null, 95% range)"] = (
            f"{nl['avg_interval']:.1f} vs {nl['avg_interval_shuffled']:.1f} [{a:.1f}, {b:.1f}]"
        )
        a, b = nl["peak_position_shuffled_range"]
        numbers[f"{role}: mean relative peak position, real vs order-shuffled (null)"] = (
            f"{nl['peak_position']:.3f} vs {nl['peak_position_shuffled']:.3f} [{a:.3f}, {b:.3f}]"
        )
    return Summary(
        name=NAME,
        title="Peak statistics over all traces (paper Table 1)",
        model=", ".join(r["model"] for r in rows),
        dataset=ctx.dataset,
        numbers=numbers,
        paper="; ".join(f"{k} {v[0]} peaks / {v[1]} steps" for k, v in PAPER.items()),
        notes="ratio = mean over traces of #peaks/#steps; intervals = gaps between consecutive "
        "peaks, averaged over the traces that have at least 2 peaks (n = how many); with no such "
        "trace the mean is undefined (NaN / null / n/a), never 0. Nulls: the rule is blind to "
        "order, so the peak count is compared with the same residuals against another "
        "problem's answer (trace-bootstrap 95% interval of the paired difference) and with "
        "i.i.d. noise; intervals and positions with the same values in a random order "
        f"({N_SHUFFLES} shuffles, 95% range of the mean).",
        files=files,
    )
