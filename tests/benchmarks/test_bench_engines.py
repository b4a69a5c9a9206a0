"""Trace pipeline by engine on a real model: SmolLM2-135M-Instruct, vllm vs tl vs the reference.

Run (not part of CI; needs vLLM for the ``vllm`` column, prints the table at the end)::

    THINKTOK_BENCH_OUT=docs/bench/cpu_engines_smollm2.json \\
        python -m pytest tests/benchmarks/test_bench_engines.py -q -s

One pipeline = generate greedily (GSM8K prompts in SmolLM2's chat format,
``THINKTOK_BENCH_ENGINE_STEPS`` = 48 new tokens each), the last block's step states, the gold
solution's representation, NOCCO MI (float64), peaks:

* ``scripts`` — what the MI-Peaks reference scripts do (``trace_pipelines.reference_scripts_
  pipeline``: HF ``generate`` one prompt at a time with a hook, the float32 formula per step);
* ``tl`` — ``MITrace.batch_from_model(engine="tl")``: TL ``generate`` of the batch, the states
  recorded by an ``MIProbe`` during it;
* ``vllm`` — ``MITrace.batch_from_model(engine="vllm")``: vLLM generates, one chunked
  teacher-forced TL pass records the states (the engine's start-up, once per model, is reported
  apart and not charged).

Checks: every pipeline's tokens equal the reference's (where vLLM parts from it, the step must be
a near-tie in vLLM's own log-probabilities, < 1e-4); MI within 1e-3 of the float64 formula.
Clock: wall time (vLLM runs its own threads, so process CPU time would overcount it), two torch
threads for every pipeline, batches of 1, 16 and 64, ``THINKTOK_BENCH_ROUNDS`` (1) rounds.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import pytest
import torch
import trace_pipelines
import transformers

from tl_thinktok.datasets import load_dataset, model_family, prompt_for, trace_prompt_family
from tl_thinktok.engines import get_engine
from tl_thinktok.engines.vllm import vllm_available
from tl_thinktok.generation import encode
from tl_thinktok.loading import load_model
from tl_thinktok.trace import MITrace

N_STEPS = int(os.environ.get("THINKTOK_BENCH_ENGINE_STEPS", "48"))
ROUNDS = int(os.environ.get("THINKTOK_BENCH_ROUNDS", "1"))
BATCHES = (1, 16, 64)
REF_STEPS = {1: 8, 16: 2, 64: 1}
ENGINES = ("tl", "vllm") if vllm_available() else ("tl",)


@pytest.fixture(scope="module")
def smollm2():
    model = load_model("smollm2-135m")
    engines = {}
    for name in ENGINES:
        t0 = time.perf_counter()
        engines[name] = get_engine(model, name)
        engines[f"{name}_startup_s"] = time.perf_counter() - t0
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        model.thinktok_info.source_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    return model, hf, engines


def _pipeline(model, engine, prompts, texts, layer):
    trs = MITrace.batch_from_model(model, prompts, texts, layer=layer, max_new_tokens=N_STEPS,
                                   engine=engine)  # fmt: skip
    return [(tr.gen_ids, tr.mi) for tr in trs]


@pytest.mark.parametrize("batch", BATCHES)
def test_engines_vs_reference_scripts(smollm2, batch, bench_rows, benchmark, monkeypatch):
    model, hf, engines = smollm2
    monkeypatch.setattr(trace_pipelines, "clock", time.perf_counter)  # wall time (docstring)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fam = trace_prompt_family(model_family("smollm2-135m"))
        items = load_dataset("gsm8k", n=batch, seed=0)
        prompts = [encode(model, prompt_for(fam, it.question)) for it in items]
        texts = [it.solution for it in items]
        answers = [encode(model, t) for t in texts]
        layer = model.cfg.n_layers - 1
        tok = model.tokenizer
        times: dict[str, list[float]] = {k: [] for k in ("scripts", *ENGINES)}
        for _ in range(ROUNDS):
            ref = trace_pipelines.reference_scripts_pipeline(
                hf, prompts, answers, layer, N_STEPS, tok.pad_token_id, tok.eos_token_id,
                REF_STEPS[batch],
            )  # fmt: skip
            times["scripts"].append(ref.total_s)
            for name in ENGINES:
                t0 = time.perf_counter()
                out = _pipeline(model, engines[name], prompts, texts, layer)
                times[name].append(time.perf_counter() - t0)
                for (g, mi), rg, r64 in zip(out, ref.gens, ref.mi_f64, strict=True):
                    if g != rg:  # only a near-tie may part (vLLM's own log-probabilities)
                        assert name == "vllm", f"{name}: tokens differ from HF generate"
                        i = next(j for j, (a, b) in enumerate(zip(g, rg, strict=False)) if a != b)
                        (ids, steps), = engines["vllm"].generate_with_logprobs(
                            [prompts[out.index((g, mi))]], i + 1, k=2
                        )  # fmt: skip
                        top = sorted(steps[i].values(), reverse=True)
                        assert top[0] - top[1] < 1e-4, (i, top[:2])
                        continue
                    err = np.abs(np.asarray(mi)[: len(r64)] - r64).max()
                    assert err <= 1e-3 * np.abs(r64).max(), f"{name}: MI off by {err:.3g}"
        benchmark.pedantic(_pipeline, args=(model, engines[ENGINES[-1]], prompts, texts, layer),
                           rounds=1, iterations=1)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    med = {k: statistics.median(v) for k, v in times.items()}
    n_tok = ref.tokens
    row = dict(
        table="engines", model="smollm2-135m", batch=batch, tokens=n_tok, rounds=ROUNDS,
        seconds=med, tokens_per_s={k: n_tok / v for k, v in med.items()},
        ratio_scripts={k: med["scripts"] / med[k] for k in ENGINES},
        startup_s={k: engines[f"{k}_startup_s"] for k in ENGINES},
        ref_generate_s=ref.generate_s, ref_mi_ms_per_step=1e3 * ref.formula_s_per_step,
    )  # fmt: skip
    bench_rows.append(row)
    benchmark.extra_info.update(row)
    tps = ", ".join(f"{k} {v:.1f}" for k, v in row["tokens_per_s"].items())
    ratio = ", ".join(f"{k} {v:.1f}" for k, v in row["ratio_scripts"].items())
    print(f"\n[smollm2 batch {batch}] tokens/s {tps} | x scripts {ratio}")
