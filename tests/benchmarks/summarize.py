"""Ratio table for the estimator benchmarks (tests/benchmarks/test_bench_estimator.py).

Used two ways: the benchmarks' conftest prints the table at the end of a run, and
``python tests/benchmarks/summarize.py BENCH.json`` rebuilds it from ``--benchmark-json`` output
(each benchmark stores its per-step time and errors in ``extra_info``).
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


def rows_from_json(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Extract rows from a pytest-benchmark ``--benchmark-json`` document."""
    rows = []
    for bench in data.get("benchmarks", []):
        extra = bench.get("extra_info", {})
        if "per_step_s" in extra and "mode" in extra:
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
        print("no estimator benchmark rows found", file=sys.stderr)
        return 1
    info = rows[0].get("machine", "")
    if info:
        print(info)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
