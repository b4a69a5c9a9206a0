"""Ratio tables of the benchmarks, side by side for one run.

Three kinds of rows (``extra_info`` of each benchmark): estimator rows (test_bench_estimator.py:
``d``, ``mode``, ``per_step_s`` …), trace-pipeline rows (test_bench_trace.py: ``table="trace"``)
and RR batch rows (test_bench_rr_batch.py: ``table="rr_batch"``). Used two ways: the benchmarks'
conftest prints the tables at the end of a run, and ``python tests/benchmarks/summarize.py
BENCH.json`` rebuilds them from ``--benchmark-json`` output.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping
from typing import Any

MODES = ("reference_numpy", "reference_torch", "exact", "fast")


def format_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows with keys d, mode, kind, per_step_s, steps_timed (+ optional error keys) → text."""
    rows = sorted(
        rows, key=lambda r: (r["d"], MODES.index(r["mode"]) if r["mode"] in MODES else 9, r["kind"])
    )
    ref = {(r["d"]): r["per_step_s"] for r in rows if r["mode"] == "reference_numpy"}
    ref_t = {(r["d"]): r["per_step_s"] for r in rows if r["mode"] == "reference_torch"}
    head = (
        f"{'d':>5} {'mode':<16} {'data':<9} {'timed':>6} {'ms/step':>10} {'x ref(np)':>10} "
        f"{'x ref(dev)':>10} {'max rel err':>12} {'err bound':>10} {'rank x/y':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        per = r["per_step_s"]
        ratio = ref.get(r["d"], math.nan) / per
        ratio_t = ref_t.get(r["d"], math.nan) / per
        err = r.get("max_rel_err", math.nan)
        bound = r.get("max_error_bound", math.nan)
        ranks = f"{r['rank_x_max']}/{r['rank_y']}" if "rank_y" in r else ""
        lines.append(
            f"{r['d']:>5} {r['mode']:<16} {r['kind']:<9} {r['steps_timed']:>6} {per * 1e3:>10.3f} "
            f"{ratio:>10.1f} {ratio_t:>10.1f} {err:>12.2e} {bound:>10.1e} {ranks:>9}"
        )
    return "\n".join(lines)


TRACE_REFS = ("scripts", "batched", "reference")  # "reference": rows written before both refs
TRACE_ROUTES = ("capture", "teacher", "per_trace", "hf", "capture_fastmi")


def _label(row: Mapping[str, Any]) -> str:
    return f"{row['model']} ({row['host']})" if row.get("host") else str(row["model"])


def format_trace_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """Trace-pipeline rows → text: tokens/s of every pipeline, then each route's speed-up over
    each reference (reference time / route time = route tokens/s / reference tokens/s)."""
    rows = sorted(rows, key=lambda r: (r.get("host", ""), r["model"], r["batch"]))
    seen = {k for r in rows for k in r["tokens_per_s"]}
    refs = [k for k in TRACE_REFS if k in seen]
    routes = [k for k in TRACE_ROUTES if k in seen] + sorted(seen - {*TRACE_REFS, *TRACE_ROUTES})
    pipes = refs + routes
    key = f"{'model (host)':<24} {'batch':>5} {'tokens':>6}"
    head = key + " " + " ".join(f"{'tok/s ' + p:>20}" for p in pipes)
    head += f" {'fastest':>9} {'ref MI ms/step':>14} {'ref f32 err med/max':>20}"
    lines = [head, "-" * len(head)]
    for r in rows:
        tps = r["tokens_per_s"]
        err = f"{r.get('ref_f32_rel_err_median', math.nan):.2g}/"
        err += f"{r.get('ref_f32_rel_err_max', math.nan):.2g}"
        lines.append(
            f"{_label(r):<24} {r['batch']:>5} {r['tokens']:>6} "
            + " ".join(f"{tps.get(p, math.nan):>20.1f}" for p in pipes)
            + f" {r['fastest']:>9} {r['ref_mi_ms_per_step']:>14.1f} {err:>20}"
        )
    lines.append("")
    head = key + " " + " ".join(f"{'x ' + '/'.join(refs) + ' ' + k:>28}" for k in routes)
    lines += [head, "-" * len(head)]
    for r in rows:
        tps = r["tokens_per_s"]
        cells = []
        for k in routes:
            got = tps.get(k, math.nan)
            cells.append(" / ".join(f"{got / tps.get(ref, math.nan):.2f}" for ref in refs))
        lines.append(
            f"{_label(r):<24} {r['batch']:>5} {r['tokens']:>6} "
            + " ".join(f"{c:>28}" for c in cells)
        )
    return "\n".join(lines)


def format_rr_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """RR batch rows → text: tokens/s at batch 1 and batch 8 and their ratio."""
    rows = sorted(rows, key=lambda r: (r["model"], r["trigger"]))
    head = (
        f"{'model':<14} {'trigger set':<11} {'L':>2} {'steps':>5} {'fired':>6} "
        f"{'tok/s b1':>9} {'tok/s b8':>9} {'b8/b1':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:<14} {r['trigger']:<11} {r['layer']:>2} {r['steps']:>5} "
            f"{r['fired']:>6.0f} {r['tokens_per_s_b1']:>9.1f} {r['tokens_per_s_b8']:>9.1f} "
            f"{r['ratio']:>6.2f}"
        )
    return "\n".join(lines)


def format_engine_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """Engine rows (test_bench_engines.py) → text: tokens/s per pipeline and the ratios."""
    rows = list(rows)
    engines = sorted({k for r in rows for k in r["ratio_scripts"]})
    head = f"{'model':<14} {'batch':>5} {'tokens':>6} {'scripts':>9}"
    head += "".join(f" {e:>9} {'x ' + e:>8}" for e in engines)
    lines = [head]
    for r in rows:
        line = f"{r['model']:<14} {r['batch']:>5} {r['tokens']:>6} "
        line += f"{r['tokens_per_s']['scripts']:>9.1f}"
        for e in engines:
            line += f" {r['tokens_per_s'][e]:>9.1f} {r['ratio_scripts'][e]:>8.1f}"
        lines.append(line)
    return "\n".join(lines)


def format_all(rows: Iterable[Mapping[str, Any]]) -> str:
    """Every kind of row, one table per kind (estimator, trace pipeline, RR batch)."""
    rows = list(rows)
    parts = []
    est = [r for r in rows if "table" not in r]
    if est:
        parts.append(format_table(est))
    trace = [r for r in rows if r.get("table") == "trace"]
    if trace:
        parts.append(
            "trace pipeline, tokens/s end to end; x scripts / batched = that reference's "
            "time / the route's time"
        )
        parts.append(format_trace_table(trace))
    eng = [r for r in rows if r.get("table") == "engines"]
    if eng:
        parts.append("trace pipeline by engine, tokens/s end to end (wall); x scripts = the "
                     "reference scripts' time / the engine's time")  # fmt: skip
        parts.append(format_engine_table(eng))
    rr = [r for r in rows if r.get("table") == "rr_batch"]
    if rr:
        parts.append("Representation Recycling, tokens/s at batch 8 vs the same prompts one by one")
        parts.append(format_rr_table(rr))
    return "\n\n".join(parts)


def rows_from_json(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Extract rows from a pytest-benchmark ``--benchmark-json`` document."""
    rows = []
    for bench in data.get("benchmarks", []):
        extra = bench.get("extra_info", {})
        if ("per_step_s" in extra and "mode" in extra) or extra.get("table"):
            rows.append(dict(extra))
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python tests/benchmarks/summarize.py BENCH.json", file=sys.stderr)
        return 2
    with open(argv[0]) as fh:
        data = json.load(fh)
    rows = rows_from_json(data)
    if not rows:
        print("no benchmark rows found", file=sys.stderr)
        return 1
    info = rows[0].get("machine", "")
    if info:
        print(info)
    print(format_all(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
