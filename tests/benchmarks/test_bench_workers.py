"""Items/s of the RR work list (fig6: one greedy generation per organism problem) with 1 and 2 Ray
workers on a local cluster (num_cpus=2). Actor start-up (model load) is excluded.

Run: ``python -m pytest -q tests/benchmarks/test_bench_workers.py``.
"""

from __future__ import annotations

import os
import time

import pytest

ray = pytest.importorskip("ray", reason='ray missing: pip install "tl-thinktok[distributed]"')

from tl_thinktok.datasets import load_dataset  # noqa: E402
from tl_thinktok.generation import decode, encode, greedy  # noqa: E402
from tl_thinktok.reproduce.context import ExpContext  # noqa: E402
from tl_thinktok.reproduce.distributed import RayExecutor  # noqa: E402
from tl_thinktok.runs import RunDir  # noqa: E402

N_ITEMS = 16
N_NEW = 96
_RATE: dict[int, float] = {}
_OUT: dict[int, list] = {}


@pytest.mark.parametrize("workers", [1, 2])
def test_bench_items_per_s(benchmark, tmp_path, ray_cluster, workers):
    ctx = ExpContext(model="organism", run_dir=tmp_path, progress=False)
    model = ctx.load("organism")
    items = load_dataset("organism", n=N_ITEMS, seed=2)

    def answer(item):
        return decode(model, greedy(model, encode(model, item.question), N_NEW))

    rounds = iter(range(100))
    with RayExecutor(ctx, workers=workers, verbose=False) as ex:

        def once():
            run = RunDir.open(tmp_path / f"r{next(rounds)}", {"w": workers})
            run.executor = ex
            t0 = time.perf_counter()
            out = run.map(items, lambda it: it.id, answer, progress=False)
            return out, time.perf_counter() - t0

        once()  # warm-up: the workers' first forward passes
        out, _ = benchmark.pedantic(once, rounds=2, iterations=1)
    assert len(out) == N_ITEMS
    _OUT[workers] = out
    _RATE[workers] = N_ITEMS / benchmark.stats.stats.mean
    benchmark.extra_info["items_per_s"] = round(_RATE[workers], 3)
    benchmark.extra_info["load_avg"] = os.getloadavg()[0]
    if len(_RATE) == 2:
        ratio = _RATE[2] / _RATE[1]
        benchmark.extra_info["ratio_2_over_1"] = round(ratio, 3)
        load = os.getloadavg()[0]
        print(f"\nitems/s: 1 worker {_RATE[1]:.2f}, 2 workers {_RATE[2]:.2f}, ratio {ratio:.2f} "
              f"(load average {load:.1f} on {os.cpu_count()} cores)")  # fmt: skip
        # the speed-up depends on what else the machine runs (reported, not asserted);
        # the answers may not depend on the number of workers
        assert _OUT[1] == _OUT[2]
