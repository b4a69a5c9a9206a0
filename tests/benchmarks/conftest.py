"""Benchmark-only configuration: device selection and the end-of-run ratio table.

``THINKTOK_BENCH_DEVICE`` (default ``cpu``; e.g. ``cuda``) picks the device of the torch
estimators; ``THINKTOK_BENCH_STEPS`` (default 512) the trace length; ``THINKTOK_BENCH_OUT`` an
optional path where the table rows are also written as JSON.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
from pathlib import Path

import pytest
import torch

_ROWS = pytest.StashKey[list]()
_MACHINE = pytest.StashKey[dict]()


def _summarize_module():
    spec = importlib.util.spec_from_file_location(
        "thinktok_bench_summarize", Path(__file__).with_name("summarize.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _load() -> str:
    try:
        return "load avg {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load avg n/a"


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_ROWS] = []
    config.stash[_MACHINE] = {"load_start": _load()}


@pytest.fixture(scope="session")
def bench_device() -> torch.device:
    """Device from ``THINKTOK_BENCH_DEVICE``; fails loudly if it is not available."""
    name = os.environ.get("THINKTOK_BENCH_DEVICE", "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.fail(f"THINKTOK_BENCH_DEVICE={name} but CUDA is not available")
    return dev


@pytest.fixture(scope="session")
def bench_rows(request: pytest.FixtureRequest, bench_device: torch.device) -> list:
    """Rows for the ratio table (appended by the estimator benchmarks)."""
    machine = request.config.stash[_MACHINE]
    machine["device"] = (
        torch.cuda.get_device_name(bench_device) if bench_device.type == "cuda" else "cpu"
    )
    machine["cpu"] = f"{platform.processor() or platform.machine()} x{os.cpu_count()}"
    machine["torch_threads"] = torch.get_num_threads()
    machine["env_threads"] = {
        k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS") if k in os.environ
    }
    return request.config.stash[_ROWS]


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    rows = config.stash.get(_ROWS, [])
    if not rows:
        return
    machine = config.stash[_MACHINE]
    machine["load_end"] = _load()
    mod = _summarize_module()
    tr = terminalreporter
    tr.section("tl_thinktok benchmarks: times and ratios (one run)")
    tr.write_line(
        f"device={machine.get('device')} cpu={machine.get('cpu')} "
        f"torch_threads={machine.get('torch_threads')} env={machine.get('env_threads')} | "
        f"start {machine['load_start']} | "
        f"end {machine['load_end']}"
    )
    if any("table" not in r for r in rows):
        tr.write_line(
            "estimator: reference rows are timed on a few steps and scaled per step (see "
            "'timed'); 'x ref' = reference per-step time / this row's per-step time"
        )
    tr.write_line(mod.format_all(rows))
    out = os.environ.get("THINKTOK_BENCH_OUT")
    if out:
        Path(out).write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
        tr.write_line(f"rows written to {out}")
