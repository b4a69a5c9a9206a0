"""Peak memory of the trace pass's MI stage on a long trace (run by hand; prints a table).

Usage::

    python tests/benchmarks/memory_trace.py --steps 16384 --d 4096

Each mode runs in a fresh subprocess and reports its peak resident set size (``ru_maxrss``)
minus the RSS before the residuals were allocated, so the numbers are what the trace's data
and the MI stage add on top of the interpreter and libraries:

* ``residuals``: the ``[steps, d]`` float32 step states alone (what a captured trace holds);
* ``streamed fast``: :func:`tl_thinktok.trace._analyse` as shipped (float64 work in 64 MiB
  chunks of steps), with the fast estimator (``tol=1e-10``) so that 16k steps finish on a CPU;
* ``whole fast``: the pre-streaming code path (``hsic_nocco`` on the whole trace + the norms of
  a whole float64 copy), same estimator;
* ``exact, one step``: the exact estimator's own working set (two ``d x d`` float64 matrices per
  step, independent of the trace length), measured on one step with the residuals allocated.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _child(mode: str, steps: int, d: int) -> dict:
    import torch

    import tl_thinktok.trace as trace_mod
    from tl_thinktok.mi import HSIC, hsic_nocco

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    y = torch.randn(d, generator=g) * 30
    HSIC(y[:64])  # warm the libraries up before the baseline
    base = _rss_mib()
    x = torch.randn(steps, d, generator=g).mul_(30)
    if mode == "streamed fast":
        orig = trace_mod.HSIC
        trace_mod.HSIC = lambda a, sigma: orig(a, sigma=sigma, tol=1e-10)
        trace_mod._analyse(x, y, 50.0)
    elif mode == "whole fast":
        hsic_nocco(x, y, tol=1e-10)
        x.double().norm(dim=-1)
    elif mode == "exact, one step":
        HSIC(y)(x[:1])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "extra_peak_mib": peak - base, "residuals_mib": steps * d * 4 / 2**20}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=16384)
    ap.add_argument("--d", type=int, default=4096)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.child, a.steps, a.d)))
        return 0
    rows = []
    for mode in ("residuals", "exact, one step", "streamed fast", "whole fast"):
        cmd = [sys.executable, __file__, "--steps", str(a.steps), "--d", str(a.d), "--child", mode]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{r['mode']:<16} peak over baseline {r['extra_peak_mib']:8.0f} MiB "
              f"(residuals {r['residuals_mib']:.0f} MiB)", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
