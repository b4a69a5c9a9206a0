"""Benchmarks (pytest-benchmark; not part of CI): cost of the hook components.

Run: ``python -m pytest tests/benchmarks/test_bench_hooks.py -q -s`` (prints the ratios).

1. residual capture on a ~2k-token trace: one teacher-forced pass (``step_residuals``) vs recording
   with ``MIProbe`` during ``generate`` (overhead over plain generation);
2. generation with ``MIProbe + SuppressTokens`` attached vs plain ``model.generate`` on a random
   Qwen2 with 8 layers and d_model 512 (target: hooked throughput >= 0.95x plain).
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from tl_thinktok import hosts
from tl_thinktok.interventions.suppress import SuppressTokens
from tl_thinktok.loading import load_model
from tl_thinktok.probe import MIProbe, step_residuals

PROMPT = [1, 40, 41, 42, 43, 44, 45, 46]


def _gen(model, n):
    with torch.no_grad():
        return model.generate(
            torch.tensor([PROMPT]), max_new_tokens=n, do_sample=False, stop_at_eos=False,
            verbose=False,
        )  # fmt: skip


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


# all hosts: supported_hosts() (≈ 1 min more on 2 cores)
@pytest.mark.parametrize("host", [hosts.default_host()])
def test_bench_residual_capture_2k(benchmark, random_model_dir, host):
    model = load_model(str(random_model_dir("qwen2")), host=host)
    n_new = 2000
    t_plain, out = _timed(lambda: _gen(model, n_new))
    probe = MIProbe(-1)

    def with_probe():
        with probe.attach(model):
            return _gen(model, n_new)

    t_probe, out2 = _timed(with_probe)
    assert torch.equal(out, out2) and probe.residuals.shape[0] == n_new
    teacher = benchmark.pedantic(
        lambda: step_residuals(model, out[0], len(PROMPT), -1), rounds=3, iterations=1
    )
    t_teacher = benchmark.stats.stats.min
    assert (probe.residuals - teacher).abs().max() <= 1e-4 * teacher.abs().max()
    info = {
        "host": host,
        "trace_tokens": int(out.shape[-1]),
        "generate_plain_s": round(t_plain, 3),
        "generate_with_probe_s": round(t_probe, 3),
        "probe_overhead_s": round(t_probe - t_plain, 3),
        "teacher_forced_pass_s": round(t_teacher, 4),
        "teacher_pass_over_generate": round(t_teacher / t_plain, 5),
    }
    benchmark.extra_info.update(info)
    print("\nresidual capture", info)


@pytest.mark.parametrize("host", list(hosts.supported_hosts()))
def test_bench_hooked_vs_plain_generate(benchmark, random_model_dir, host):
    path = random_model_dir("qwen2", n_layers=8, d_model=512, n_heads=8, n_kv_heads=4)
    model = load_model(str(path), host=host)
    assert hosts.n_layers(model) == 8 and hosts.d_model(model) == 512
    n_new, rounds = 16, 3
    ban = SuppressTokens([5, 6, 7, 8])
    probe = MIProbe(-1)

    def hooked():
        with probe.attach(model), ban.attach(model):
            return _gen(model, n_new)

    _gen(model, 4), hooked()  # warm-up
    plain_t, hooked_t = [], []
    for _ in range(rounds):  # interleaved, so load drifts hit both sides alike
        plain_t.append(_timed(lambda: _gen(model, n_new))[0])
        hooked_t.append(_timed(hooked)[0])
    benchmark.pedantic(hooked, rounds=1, iterations=1)
    ratio = statistics.median(plain_t) / statistics.median(hooked_t)
    info = {
        "host": host,
        "new_tokens": n_new,
        "plain_median_s": round(statistics.median(plain_t), 4),
        "hooked_median_s": round(statistics.median(hooked_t), 4),
        "hooked_throughput_vs_plain": round(ratio, 3),
    }
    benchmark.extra_info.update(info)
    print("\nhooked vs plain generate", info)
    assert probe.residuals.shape[0] == n_new
    assert ratio > 0.8, f"hooked generation much slower than plain: {info}"
