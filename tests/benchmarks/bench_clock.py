"""The benchmarks' clock: process CPU time on a CPU run, synchronised wall time on a GPU.

Process CPU time (one torch thread) is robust to the other processes of a shared machine; on a
GPU it would miss the device's work, so there the clock is ``perf_counter`` after
``torch.cuda.synchronize()``. The device comes from ``THINKTOK_BENCH_DEVICE`` (conftest).
"""

from __future__ import annotations

import os
import time

import torch

ON_GPU = torch.device(os.environ.get("THINKTOK_BENCH_DEVICE", "cpu")).type == "cuda"


def clock() -> float:
    """Seconds on the benchmarks' clock (see the module docstring)."""
    if ON_GPU:
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()
