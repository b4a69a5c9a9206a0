"""Table-1 trace pipeline end to end (generate, capture, MI, peaks): tl-thinktok vs the reference.

Run (not part of CI; prints the ratio table at the end)::

    python -m pytest tests/benchmarks/test_bench_trace.py -q -s

Models: the bundled organism (4 layers, d 128) and a random Qwen2 with 8 layers and d_model 512
(:func:`tl_thinktok.testing.models.make_random_hf_model`); batches of 1 and 16 organism problems,
``THINKTOK_BENCH_TRACE_STEPS`` (64) new tokens each, the last block's states, the answer
representation of each gold solution, NOCCO MI (float64) and Q3 + 1.5 IQR peaks.

Pipelines (``trace_pipelines.py``): the reference (HF ``generate`` with a forward hook per step,
HF answer pass, the reference MI formula step by step) and tl-thinktok's routes ``capture``
(``MIProbe`` during batched generation), ``teacher`` (batched generation + one right-padded
teacher-forced pass) and ``per_trace`` (batched generation + one pass per trace). Identical
generated tokens are asserted, and every route's MI agrees with the reference formula on the
steps where it was evaluated.

Timing: one torch thread, process CPU time (robust to the other processes of a shared machine),
``THINKTOK_BENCH_ROUNDS`` (3) interleaved rounds, medians. The reference MI formula costs tens to
hundreds of ms per step, so it is evaluated on ``REF_STEPS`` steps of every trace per round and
charged per step for all steps (its cost does not depend on the step).
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from bench_clock import clock
from trace_pipelines import ROUTES, hf_answer_states, hf_generate_capture, reference_mi, tl_route

import tl_thinktok
from tl_thinktok.datasets import load_dataset, prompt_for
from tl_thinktok.generation import encode
from tl_thinktok.loading import load_model
from tl_thinktok.testing.models import make_random_hf_model

N_STEPS = int(os.environ.get("THINKTOK_BENCH_TRACE_STEPS", "64"))
ROUNDS = int(os.environ.get("THINKTOK_BENCH_ROUNDS", "3"))
REF_STEPS = {1: 8, 16: 2}
BATCHES = (1, 16)
MODELS = ("organism", "qwen2-8L-d512")


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory) -> dict[str, Path]:
    q = make_random_hf_model(tmp_path_factory.mktemp("bench_q8"), "qwen2", n_layers=8,
                             d_model=512, n_heads=8)  # fmt: skip
    org = Path(tl_thinktok.__file__).parent / "assets" / "models" / "organism"
    return {"organism": org, "qwen2-8L-d512": q}


def _cpu(fn, *args):
    """(seconds, result): process CPU time on a CPU run, synchronised wall time on a GPU."""
    t0 = clock()
    out = fn(*args)
    return clock() - t0, out


def _reference_mis(states, ys, k):
    return [reference_mi(s, y, k) for s, y in zip(states, ys, strict=True)]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", MODELS)
def test_trace_pipeline_vs_reference(model_paths, name, batch, bench_rows, bench_device, benchmark):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = str(model_paths[name])
        model = load_model(path, host="hooked", device=bench_device)
        hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        hf = hf.eval().to(bench_device)
        family = "organism" if name == "organism" else "raw"
        items = load_dataset("organism", n=batch, seed=0)
        prompts = [encode(model, prompt_for(family, it.question)) for it in items]
        answers = [encode(model, it.solution) for it in items]
        texts = [it.solution for it in items]
        layer = model.cfg.n_layers - 1
        tok = model.tokenizer
        k = REF_STEPS[batch]
        times: dict[str, list[float]] = {r: [] for r in ("reference", *ROUTES)}
        parts: dict[str, list[float]] = {"ref_generate": [], "ref_mi_per_step": []}
        for _ in range(ROUNDS):  # interleaved rounds: drift of a shared machine hits all alike
            t_gen, (gens, states) = _cpu(hf_generate_capture, hf, prompts, layer, N_STEPS,
                                         tok.pad_token_id, tok.eos_token_id)  # fmt: skip
            t_ans, ys = _cpu(hf_answer_states, hf, answers, layer)
            t_mi, ref = _cpu(_reference_mis, states, ys, k)
            n_tok = sum(len(g) for g in gens)
            per_step = t_mi / sum(len(r) for r in ref)
            times["reference"].append(t_gen + t_ans + per_step * n_tok)
            parts["ref_generate"].append(t_gen + t_ans)
            parts["ref_mi_per_step"].append(per_step)
            for route in ROUTES:
                t, out = _cpu(tl_route, model, prompts, texts, layer, N_STEPS, route)
                times[route].append(t)
                assert [o[0] for o in out] == gens, f"{route}: tokens differ from HF generate"
                for (_, mi, _), r in zip(out, ref, strict=True):
                    scale = np.abs(r).max()
                    assert np.abs(mi[: len(r)] - r).max() <= 1e-3 * scale, route
        benchmark.pedantic(tl_route, args=(model, prompts, texts, layer, N_STEPS, "capture"),
                           rounds=1, iterations=1)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    med = {r: statistics.median(v) for r, v in times.items()}
    tps = {r: n_tok / t for r, t in med.items()}
    best = min(("capture", "teacher", "per_trace"), key=lambda r: med[r])  # library routes
    row = dict(
        table="trace", model=name, batch=batch, tokens=n_tok, rounds=ROUNDS, ref_steps=k,
        tokens_per_s=tps, ratio={r: med["reference"] / med[r] for r in ROUTES}, fastest=best,
        ref_generate_s=statistics.median(parts["ref_generate"]),
        ref_mi_ms_per_step=1e3 * statistics.median(parts["ref_mi_per_step"]),
    )  # fmt: skip
    bench_rows.append(row)
    benchmark.extra_info.update(row)
    print(f"\n[{name} batch {batch}] tokens/s " + ", ".join(f"{r} {v:.1f}" for r, v in tps.items()))
