"""Representation Recycling throughput: tokens/s at batch 8 vs batch 1 (goal >= 4x on 2 cores).

Run (not part of CI; prints the table at the end)::

    python -m pytest tests/benchmarks/test_bench_rr_batch.py -q -s

Greedy cached generation of ``N_STEPS`` tokens per prompt (no EOS stop, so every row makes the
same number of tokens) with RR attached at ``L = n_layers - 3``; organism prompts; models: the
bundled organism and a random Qwen2 with 8 layers and d_model 512. A baseline without RR
(``none``: plain batched decoding, the ceiling any batched intervention can reach) and two
trigger settings:
``T = whole vocabulary, p = 0.5`` (every candidate triggers with probability 1/2, so at batch 8
nearly every step reruns blocks >= L for the whole batch: the worst case for batching) and the
organism's thinking words (the paper's setting, p = 0.5). Batch 8 is compared with the same 8
prompts generated one at a time. One torch thread, process CPU time, ``THINKTOK_BENCH_ROUNDS``
(3) interleaved rounds, medians.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import pytest
import torch
from bench_clock import clock

import tl_thinktok
from tl_thinktok import hosts
from tl_thinktok.datasets import load_dataset, prompt_for
from tl_thinktok.generation import encode, greedy_batch
from tl_thinktok.interventions.base import attach_all
from tl_thinktok.interventions.recycle import RepresentationRecycling
from tl_thinktok.loading import load_model
from tl_thinktok.testing.models import make_random_hf_model
from tl_thinktok.vocab import ThinkingTokens

N_STEPS = int(os.environ.get("THINKTOK_BENCH_RR_STEPS", "48"))
ROUNDS = int(os.environ.get("THINKTOK_BENCH_ROUNDS", "3"))
BATCH = 8
RR_SEED = 0


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory) -> dict[str, Path]:
    q = make_random_hf_model(tmp_path_factory.mktemp("bench_rr_q8"), "qwen2", n_layers=8,
                             d_model=512, n_heads=8)  # fmt: skip
    org = Path(tl_thinktok.__file__).parent / "assets" / "models" / "organism"
    return {"organism": org, "qwen2-8L-d512": q}


def _run(model, prompts, rr):
    if rr is None:  # the ceiling: plain batched decoding, nothing attached
        return greedy_batch(model, prompts, N_STEPS, stop_at_eos=False)
    with attach_all(model, rr):
        return greedy_batch(model, prompts, N_STEPS, stop_at_eos=False)


def _trigger_ids(model, kind):
    if kind == "none":
        return None
    if kind == "vocab":
        return list(range(hosts.d_vocab(model)))
    words = ["So", "Let", "Hmm", "Wait", "First", "Now", "Okay", "But", "I", "Therefore"]
    try:
        tt = ThinkingTokens.from_words(model.tokenizer, words)
    except ValueError as err:  # the random stand-in's tokenizer has no such words
        pytest.skip(f"no thinking words in this tokenizer: {err}")
    return tt.token_ids()


@pytest.mark.parametrize("trig", ["none", "vocab", "thinking"])
@pytest.mark.parametrize("name", ["organism", "qwen2-8L-d512"])
def test_rr_batch8_vs_batch1(model_paths, name, trig, bench_rows, bench_device, benchmark):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = load_model(str(model_paths[name]), host="hooked", device=bench_device)
        layer = hosts.n_layers(model) - 3
        ids = _trigger_ids(model, trig)
        family = "organism" if name == "organism" else "raw"
        prompts = [encode(model, prompt_for(family, it.question))
                   for it in load_dataset("organism", n=BATCH, seed=0)]  # fmt: skip
        one, many, fired = [], [], []
        for _ in range(ROUNDS):
            t0 = clock()
            alone = []
            base = RepresentationRecycling(layer, ids or [0], p=0.5, seed=RR_SEED)
            for i, p in enumerate(prompts):
                rr = None if ids is None else RepresentationRecycling(
                    layer, ids, p=0.5, seed=base.row_seed(i))  # fmt: skip
                alone += _run(model, [p], rr)
            one.append(clock() - t0)
            rr = None if ids is None else RepresentationRecycling(layer, ids, p=0.5, seed=RR_SEED)
            t0 = clock()
            batched = _run(model, prompts, rr)
            many.append(clock() - t0)
            fired.append(0 if rr is None else rr.fired)
            assert batched == alone  # each row equals its prompt alone (seeded by row)
        benchmark.pedantic(_run, args=(model, prompts, rr), rounds=1, iterations=1)
    finally:
        torch.set_num_threads(threads)
    n_tok = BATCH * N_STEPS
    t1, t8 = statistics.median(one), statistics.median(many)
    row = dict(
        table="rr_batch", model=name, trigger=trig, layer=layer, batch=BATCH, steps=N_STEPS,
        rounds=ROUNDS, fired=statistics.median(fired), tokens_per_s_b1=n_tok / t1,
        tokens_per_s_b8=n_tok / t8, ratio=t1 / t8,
    )  # fmt: skip
    bench_rows.append(row)
    benchmark.extra_info.update(row)
    print(f"\n[{name} {trig}] RR tokens/s batch 1 {n_tok / t1:.1f}, batch 8 {n_tok / t8:.1f}, "
          f"ratio {t1 / t8:.2f} (fired {row['fired']} of {n_tok} steps)")  # fmt: skip
