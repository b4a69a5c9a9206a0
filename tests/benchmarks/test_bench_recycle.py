"""Cost of one Representation-Recycling trigger vs one full decoding step.

RR (candidate mode) recomputes only blocks >= L for the last position, so one trigger should
cost about (n_layers - L) / n_layers of a decoding step (plus the final norm + unembedding).
Measured with greedy cached generation on a random Qwen2 (8 layers, d_model 512), L = n - 3,
trigger set = the whole vocabulary and p = 1 (every step triggers), one torch thread, process CPU
time (robust to other processes), ROUNDS interleaved rounds of N_STEPS-step generations, medians:

- ratio (the figure compared with the target) = rerun / step within the same generation: the
  CPU time spent inside each trigger's rerun (KV rollback, blocks >= L, final norm, unembedding,
  timed around ``RepresentationRecycling._recycled_logits``) over the rest of that generation's
  time per step (a normal decoding step with RR attached). Both come from one run, so the
  machine's speed drifting between runs (tens of percent on a shared 2-core VM) cancels;
- the rerun's blocks >= L alone over the same step (its floor: the rest is the KV rollback,
  final norm and unembedding);
- cross-run figures, for reference: rerun / plain step, with the plain step from a plain
  ``model.generate``; the difference (t_rr - t_idle) / fired, t_idle being the same generation with
  RR attached but never firing (p = 0); the all-in (t_rr - t_plain) / fired; and the idle attach
  overhead (t_idle - t_plain) / N_STEPS.

Run: python -m pytest tests/benchmarks/test_bench_recycle.py -q -s
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from tl_thinktok import hosts
from tl_thinktok.interventions.recycle import RepresentationRecycling
from tl_thinktok.loading import load_model
from tl_thinktok.testing.models import make_random_hf_model

N_LAYERS, D_MODEL, N_STEPS, ROUNDS = 8, 512, 64, 7


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench_qwen2")
    return make_random_hf_model(path, "qwen2", n_layers=N_LAYERS, d_model=D_MODEL, n_heads=8)


def _generate(model, ids, rr=None):
    kw = dict(max_new_tokens=N_STEPS, do_sample=False, verbose=False, stop_at_eos=False)
    if rr is None:
        return model.generate(ids, **kw)
    with rr.attach(model):
        return model.generate(ids, **kw)


def _timed(fn, *args):
    t0 = time.process_time()  # CPU time of this (single-threaded) process: robust to load
    fn(*args)
    return time.process_time() - t0


class _RerunTimer:
    """Wraps an RR instance's rerun (``_recycled_logits``) and sums its process CPU time."""

    def __init__(self, rr: RepresentationRecycling) -> None:
        self.total = 0.0
        inner = rr._recycled_logits

        def timed(*args, **kwargs):
            t0 = time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.total += time.process_time() - t0

        rr._recycled_logits = timed  # instance attribute shadows the method


class _BlockTimer:
    """Sums the process CPU time of the rerun's own block calls (blocks >= L while RR is busy)."""

    def __init__(self, model, rr: RepresentationRecycling, layer: int) -> None:
        self.total = 0.0
        self._t0 = 0.0

        def pre(module, args):
            if rr._busy:
                self._t0 = time.process_time()

        def post(module, args, out):
            if rr._busy:
                self.total += time.process_time() - self._t0

        self._handles = [
            h
            for block in model.blocks[layer:]
            for h in (block.register_forward_pre_hook(pre), block.register_forward_hook(post))
        ]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


@pytest.mark.parametrize("host", list(hosts.supported_hosts()))
def test_rr_trigger_cost_vs_forward_step(model_dir, host, benchmark):
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = load_model(model_dir, host=host)
        layer = hosts.n_layers(model) - 3
        ids = torch.tensor([model.tokenizer("So let me", add_special_tokens=False)["input_ids"]])
        everything = list(range(hosts.d_vocab(model)))
        rr = RepresentationRecycling(layer, everything, p=1.0)
        timer = _RerunTimer(rr)
        idle = RepresentationRecycling(layer, everything, p=0.0)  # attached, never fires
        _generate(model, ids)  # warm-up
        _generate(model, ids, rr)
        blocks = _BlockTimer(model, rr, layer)
        plain, idles, alls, direct, within, floor = [], [], [], [], [], []
        for _ in range(ROUNDS):  # interleaved rounds (the machine is shared)
            plain.append(_timed(_generate, model, ids))
            idle.reset()
            idles.append(_timed(_generate, model, ids, idle))
            assert idle.fired == 0
            rr.reset()
            timer.total = blocks.total = 0.0
            alls.append(_timed(_generate, model, ids, rr))
            assert rr.fired == N_STEPS  # every step triggered exactly once
            direct.append(timer.total / N_STEPS)
            within.append(timer.total / (alls[-1] - timer.total))  # same run: drift cancels
            floor.append(blocks.total / (alls[-1] - timer.total))  # the rerun's blocks alone
        blocks.remove()
        benchmark.pedantic(_generate, args=(model, ids, rr), rounds=1, iterations=1)
    finally:
        torch.set_num_threads(n_threads)
    med = statistics.median
    t_plain, t_idle, t_rr = med(plain), med(idles), med(alls)
    step = t_plain / N_STEPS
    per_trigger = med(direct)
    diff = (t_rr - t_idle) / N_STEPS
    all_in = (t_rr - t_plain) / N_STEPS
    attach_overhead = (t_idle - t_plain) / N_STEPS
    ratio = med(within)
    target = (N_LAYERS - layer) / N_LAYERS
    print(
        f"\n[{host}] rerun per trigger {per_trigger * 1e3:.2f} ms, ratio to a step of the same "
        f"run {ratio:.3f} (rounds {min(within):.3f}-{max(within):.3f}; target <= {target:.3f} = "
        f"(n_layers - L) / n_layers, L={layer}); of which the blocks >= L alone "
        f"{med(floor):.3f}, the rest (rollback, final norm, unembedding) "
        f"{ratio - med(floor):.3f}; cross-run: plain step {step * 1e3:.2f} ms, "
        f"rerun/plain step {per_trigger / step:.3f}, difference-based {diff / step:.3f}, all-in "
        f"{all_in / step:.3f}, idle attach overhead {attach_overhead / step:.3f} of a step"
    )
    benchmark.extra_info.update(
        step_ms=step * 1e3, ratio=ratio, target=target, blocks_only=med(floor),
        cross_run_ratio=per_trigger / step,
        difference_ratio=diff / step, all_in_ratio=all_in / step,
        idle_overhead=attach_overhead / step,
    )  # fmt: skip
    assert ratio < 1.0  # recycling must be cheaper than one extra full decoding step
