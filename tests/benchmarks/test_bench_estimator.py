"""Benchmarks: the reference formula as written vs ``hsic_nocco`` exact vs fast (low-rank).

Run (not part of the CI test command)::

    python -m pytest tests/benchmarks/test_bench_estimator.py --benchmark-only
    THINKTOK_BENCH_DEVICE=cuda python -m pytest tests/benchmarks/test_bench_estimator.py \
        --benchmark-only --benchmark-json bench.json
    python tests/benchmarks/summarize.py bench.json

Data: a synthetic residual-like trace (most dims ~N(0, 1), 8 fixed "massive" dims 100-500x
larger, as in real residual streams) of ``THINKTOK_BENCH_STEPS`` (512) steps at d in {1536, 4096};
fast-mode errors are also measured on Gaussian vectors (scale 50 = sigma). The reference formula
costs seconds per step on a CPU, so it is timed on a few steps and reported per step (the test id
says how many: ``scaled_from_N_steps``); exact mode likewise on CPU. Fast mode runs the whole trace.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from tl_thinktok.mi import HSIC
from tl_thinktok.testing.reference import reference_nocco_trace

N_STEPS = int(os.environ.get("THINKTOK_BENCH_STEPS", "512"))
DEVICE_NAME = os.environ.get("THINKTOK_BENCH_DEVICE", "cpu")
ON_CPU = torch.device(DEVICE_NAME).type == "cpu"
D_VALUES = (1536, 4096)
REF_STEPS = {1536: 2, 4096: 1}
EXACT_STEPS = {1536: 16, 4096: 4} if ON_CPU else {1536: N_STEPS, 4096: N_STEPS}
ERR_STEPS = 4  # fast-mode errors vs exact on this many steps (and vs reference on REF_STEPS)
FAST_TOL = 1e-10

_cache: dict = {}


def make_trace(kind: str, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + d)
    if kind == "gauss":
        return rng.normal(size=(N_STEPS, d)) * 50, rng.normal(size=d) * 50
    big = rng.choice(d, 8, replace=False)
    scale = rng.uniform(100, 500, size=8) * rng.choice([-1.0, 1.0], size=8)
    a = rng.normal(size=(N_STEPS + 1, d))
    a[:, big] *= scale
    return a[:N_STEPS], a[N_STEPS]


def trace(kind: str, d: int) -> tuple[np.ndarray, np.ndarray]:
    key = ("trace", kind, d)
    if key not in _cache:
        _cache[key] = make_trace(kind, d)
    return _cache[key]


def reference_values(kind: str, d: int) -> np.ndarray:
    key = ("ref", kind, d)
    if key not in _cache:
        x, y = trace(kind, d)
        _cache[key] = reference_nocco_trace(x[: REF_STEPS[d]], y)
    return _cache[key]


def exact_values(kind: str, d: int, device: torch.device) -> np.ndarray:
    key = ("exact", kind, d)
    if key not in _cache:
        x, y = trace(kind, d)
        xt = torch.tensor(x[:ERR_STEPS], device=device)
        _cache[key] = HSIC(torch.tensor(y, device=device))(xt).cpu().numpy()
    return _cache[key]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _row(benchmark, rows, **row) -> None:
    per_step = benchmark.stats.stats.min / row["steps_timed"]
    row["per_step_s"] = per_step
    benchmark.extra_info.update(row)
    rows.append(row)


@pytest.mark.parametrize(
    "d", D_VALUES, ids=[f"d{d}-scaled_from_{REF_STEPS[d]}_steps" for d in D_VALUES]
)
def test_reference_numpy_per_step(benchmark, bench_rows, d):
    x, y = trace("residual", d)
    k = REF_STEPS[d]
    out = benchmark.pedantic(lambda: reference_nocco_trace(x[:k], y), rounds=1, iterations=1)
    _cache[("ref", "residual", d)] = out
    _row(benchmark, bench_rows, d=d, mode="reference_numpy", kind="residual", steps_timed=k)


if not ON_CPU:  # the numpy reference covers the CPU

    @pytest.mark.parametrize(
        "d", D_VALUES, ids=[f"d{d}-scaled_from_{REF_STEPS[d]}_steps" for d in D_VALUES]
    )
    def test_reference_torch_on_device_per_step(benchmark, bench_rows, bench_device, d):
        """The formula as written, in torch on the benchmark device (fair GPU ratio)."""
        x, y = trace("residual", d)
        k = REF_STEPS[d] * (4 if d == 1536 else 2)
        xt = torch.tensor(x[:k], device=bench_device)
        yt = torch.tensor(y, device=bench_device)

        def run():
            out = []
            m = d
            eye = torch.eye(m, dtype=torch.float64, device=bench_device)
            h = eye - 1.0 / m
            for row in xt:
                kx = torch.exp(-((row[:, None] - row[None, :]) ** 2) / (2 * 50.0**2)) @ h
                ky = torch.exp(-((yt[:, None] - yt[None, :]) ** 2) / (2 * 50.0**2)) @ h
                rx = kx @ torch.linalg.inv(kx + 1e-5 * m * eye)
                ry = ky @ torch.linalg.inv(ky + 1e-5 * m * eye)
                out.append((rx * ry.T).sum())
            _sync(bench_device)
            return torch.stack(out)

        out = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=1)
        ref = reference_values("residual", d)
        err = float(np.max(np.abs(out[: len(ref)].cpu().numpy() - ref) / np.abs(ref)))
        _row(
            benchmark,
            bench_rows,
            d=d,
            mode="reference_torch",
            kind="residual",
            steps_timed=k,
            max_rel_err=err,
        )


@pytest.mark.parametrize(
    "d", D_VALUES, ids=[f"d{d}-timed_{EXACT_STEPS[d]}_steps" for d in D_VALUES]
)
def test_exact(benchmark, bench_rows, bench_device, d):
    x, y = trace("residual", d)
    k = EXACT_STEPS[d]
    xt = torch.tensor(x[:k], device=bench_device)
    yt = torch.tensor(y, device=bench_device)

    def run():
        out = HSIC(yt)(xt)  # answer side prepared once per call, included in the time
        _sync(bench_device)
        return out

    out = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0 if ON_CPU else 1)
    ref = reference_values("residual", d)
    err = float(np.max(np.abs(out[: len(ref)].cpu().numpy() - ref) / np.abs(ref)))
    assert err < 1e-9
    _row(benchmark, bench_rows, d=d, mode="exact", kind="residual", steps_timed=k, max_rel_err=err)


@pytest.mark.parametrize("kind", ["residual", "gauss"])
@pytest.mark.parametrize("d", D_VALUES, ids=[f"d{d}-timed_{N_STEPS}_steps" for d in D_VALUES])
def test_fast(benchmark, bench_rows, bench_device, d, kind):
    x, y = trace(kind, d)
    xt = torch.tensor(x, device=bench_device)
    yt = torch.tensor(y, device=bench_device)

    def run():
        out = HSIC(yt, tol=FAST_TOL)(xt, return_info=True)
        _sync(bench_device)
        return out

    vals, info = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0 if ON_CPU else 1)
    vals = vals.cpu().numpy()
    exact = exact_values(kind, d, bench_device)
    err_exact = np.abs(vals[:ERR_STEPS] - exact) / np.abs(exact)
    ref = reference_values(kind, d)
    err_ref = np.abs(vals[: len(ref)] - ref) / np.abs(ref)
    err = float(max(err_exact.max(), err_ref.max()))
    assert err <= 1e-4
    _row(
        benchmark,
        bench_rows,
        d=d,
        mode="fast",
        kind=kind,
        steps_timed=N_STEPS,
        max_rel_err=err,
        max_error_bound=float(info.error_bound.max()),
        rank_x_max=int(info.rank_x.max()),
        rank_y=int(info.rank_y),
        tol=FAST_TOL,
    )
