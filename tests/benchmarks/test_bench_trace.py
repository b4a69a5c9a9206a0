"""Table-1 trace pipeline end to end (generate, capture, MI, peaks): tl-thinktok vs two references.

Run (not part of CI; prints the tables at the end)::

    python -m pytest tests/benchmarks/test_bench_trace.py -q -s

Models: the bundled organism (4 layers, d 128) and a random Qwen2 with 8 layers and d_model 512
(:func:`tl_thinktok.testing.models.make_random_hf_model`); batches of 1 and 16 organism problems,
``THINKTOK_BENCH_TRACE_STEPS`` (64) new tokens each, the last block's states, the answer
representation of each gold solution, NOCCO MI (float64) and Q3 + 1.5 IQR peaks.

Pipelines (``trace_pipelines.py``), side by side in every round:

* ``scripts`` — what the MI-Peaks reference scripts do: HF ``generate`` one prompt at a time
  (batch 1, ``output_hidden_states=True``) with a forward hook keeping ``hidden[0, -1]`` per step,
  one HF pass per answer, the MI formula per step in torch float32;
* ``batched`` — a strengthened reference: one left-padded batched HF ``generate``, then the same;
* tl-thinktok's routes (``THINKTOK_BENCH_ROUTES``, a comma list; default all of
  ``trace_pipelines.ROUTES``): ``capture``, ``teacher``, ``per_trace``, ``hf`` (engine), and the
  fast-estimator option ``capture_fastmi``.

Checks in every round: every route's generated tokens equal the per-prompt HF ``generate`` tokens
(and so do the batched reference's), and every route's MI agrees with the float64 formula on the
steps where the references evaluated it (≤ 1e-3 of the trace's scale).

Timing: one torch thread, process CPU time (robust to the other processes of a shared machine;
synchronised wall time on a GPU, bench_clock.py), ``THINKTOK_BENCH_ROUNDS`` (3) interleaved
rounds, medians. The reference formula costs ms to hundreds of ms per step, so it is evaluated on
``REF_STEPS`` steps of every trace per round and charged per step for all steps.
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
from trace_pipelines import (
    LIBRARY_ROUTES,
    ROUTES,
    reference_batched,
    reference_scripts_pipeline,
    tl_route,
)

import tl_thinktok
from tl_thinktok.datasets import load_dataset, prompt_for
from tl_thinktok.generation import encode
from tl_thinktok.hosts import default_host
from tl_thinktok.loading import load_model
from tl_thinktok.testing.models import make_random_hf_model

#: TransformerLens host of the library routes (``THINKTOK_BENCH_HOST``; default: the installed
#: TL's default host, ``hooked`` on TL 3.x, ``bridge`` on TL 4.x).
HOST = os.environ.get("THINKTOK_BENCH_HOST") or default_host()
N_STEPS = int(os.environ.get("THINKTOK_BENCH_TRACE_STEPS", "64"))
ROUNDS = int(os.environ.get("THINKTOK_BENCH_ROUNDS", "3"))
REF_STEPS = {1: 8, 16: 2}
BATCHES = (1, 16)
MODELS = ("organism", "qwen2-8L-d512")
REFERENCES = ("scripts", "batched")


def _selected_routes() -> tuple[str, ...]:
    raw = os.environ.get("THINKTOK_BENCH_ROUTES", "").strip()
    if not raw:
        return ROUTES
    routes = tuple(r.strip() for r in raw.split(",") if r.strip())
    bad = [r for r in routes if r not in ROUTES]
    if bad or not routes:
        raise ValueError(f"THINKTOK_BENCH_ROUTES={raw!r}: unknown {bad}; choose from {ROUTES}")
    return routes


SELECTED = _selected_routes()


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory) -> dict[str, Path]:
    q = make_random_hf_model(tmp_path_factory.mktemp("bench_q8"), "qwen2", n_layers=8,
                             d_model=512, n_heads=8)  # fmt: skip
    org = Path(tl_thinktok.__file__).parent / "assets" / "models" / "organism"
    return {"organism": org, "qwen2-8L-d512": q}


def _timed(fn, *args):
    """(seconds, result) on the benchmarks' clock."""
    t0 = clock()
    out = fn(*args)
    return clock() - t0, out


def _check_mi(label, mis, run) -> None:
    for mi, ref in zip(mis, run.mi_f64, strict=True):
        scale = np.abs(ref).max()
        err = np.abs(np.asarray(mi)[: len(ref)] - ref).max()
        assert err <= 1e-3 * scale, f"{label}: MI off the float64 formula by {err:.3g}"


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", MODELS)
def test_trace_pipeline_vs_reference(model_paths, name, batch, bench_rows, bench_device, benchmark):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = str(model_paths[name])
        model = load_model(path, host=HOST, device=bench_device)
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
        ref_args = (hf, prompts, answers, layer, N_STEPS, tok.pad_token_id, tok.eos_token_id, k)
        times: dict[str, list[float]] = {r: [] for r in (*REFERENCES, *SELECTED)}
        parts: dict[str, list[float]] = {
            "scripts_generate": [], "batched_generate": [], "ref_mi_per_step": []
        }  # fmt: skip
        f32_err: list[tuple[float, float]] = []
        for _ in range(ROUNDS):  # interleaved rounds: drift of a shared machine hits all alike
            scripts = reference_scripts_pipeline(*ref_args)
            batched = reference_batched(*ref_args)
            gens = scripts.gens
            assert batched.gens == gens, "batched HF generate differs from per-prompt generate"
            for label, run in (("scripts", scripts), ("batched", batched)):
                times[label].append(run.total_s)
                parts[f"{label}_generate"].append(run.generate_s)
            parts["ref_mi_per_step"].append(
                statistics.mean([scripts.formula_s_per_step, batched.formula_s_per_step])
            )
            f32_err.append(scripts.f32_error())
            _check_mi("batched reference states", batched.mi_f64, scripts)
            for route in SELECTED:
                t, out = _timed(tl_route, model, prompts, texts, layer, N_STEPS, route)
                times[route].append(t)
                assert [o[0] for o in out] == gens, f"{route}: tokens differ from HF generate"
                _check_mi(route, [o[1] for o in out], scripts)
        benchmark.pedantic(tl_route, args=(model, prompts, texts, layer, N_STEPS, SELECTED[0]),
                           rounds=1, iterations=1)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    n_tok = scripts.tokens
    med = {r: statistics.median(v) for r, v in times.items()}
    tps = {r: n_tok / t for r, t in med.items()}
    library = [r for r in SELECTED if r in LIBRARY_ROUTES]
    best = min(library, key=lambda r: med[r]) if library else min(SELECTED, key=lambda r: med[r])
    row = dict(
        table="trace", model=name, host=HOST, batch=batch, tokens=n_tok, rounds=ROUNDS,
        ref_steps=k,
        tokens_per_s=tps,
        ratio_scripts={r: med["scripts"] / med[r] for r in SELECTED},
        ratio_batched={r: med["batched"] / med[r] for r in SELECTED},
        fastest=best,
        scripts_generate_s=statistics.median(parts["scripts_generate"]),
        batched_generate_s=statistics.median(parts["batched_generate"]),
        ref_mi_ms_per_step=1e3 * statistics.median(parts["ref_mi_per_step"]),
        ref_f32_rel_err_median=statistics.median(e[0] for e in f32_err),
        ref_f32_rel_err_max=max(e[1] for e in f32_err),
    )  # fmt: skip
    bench_rows.append(row)
    benchmark.extra_info.update(row)
    print(f"\n[{name} batch {batch}] tokens/s " + ", ".join(f"{r} {v:.1f}" for r, v in tps.items()))
