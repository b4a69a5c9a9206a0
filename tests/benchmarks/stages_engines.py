"""Stage times of the SmolLM2 trace pipeline by engine (docs/performance.md, "Engines on a real
model"): generation on tl and vllm, the chunked teacher-forced pass, exact and low-rank MI.

``python tests/benchmarks/stages_engines.py`` (needs vLLM; prints one JSON line per batch).
"""

from __future__ import annotations

import json
import time

import torch

from tl_thinktok.datasets import load_dataset, model_family, prompt_for, trace_prompt_family
from tl_thinktok.engines import get_engine
from tl_thinktok.generation import encode
from tl_thinktok.loading import load_model
from tl_thinktok.mi import HSIC
from tl_thinktok.probe import last_residuals_batch, step_residuals_batch


def main() -> None:
    torch.set_num_threads(2)
    m = load_model("smollm2-135m")
    fam = trace_prompt_family(model_family("smollm2-135m"))
    engines = {k: get_engine(m, k) for k in ("tl", "vllm")}
    for batch in (16, 64):
        items = load_dataset("gsm8k", n=batch, seed=0)
        ps = [encode(m, prompt_for(fam, it.question)) for it in items]
        r: dict = {"batch": batch}
        for k, e in engines.items():
            t = time.perf_counter()
            news = e.generate(ps, 48)
            r[f"generate_{k}_s"] = time.perf_counter() - t
        t = time.perf_counter()
        full = [p + n for p, n in zip(ps, news, strict=True)]
        hs = step_residuals_batch(m, full, [len(p) for p in ps], -1, chunk=256)
        r["teacher_pass_s"] = time.perf_counter() - t
        ys = last_residuals_batch(m, [encode(m, it.solution) for it in items], -1)
        for key, tol in (("mi_exact_s", None), ("mi_lowrank_s", 1e-10)):
            t = time.perf_counter()
            for h, y in zip(hs, ys, strict=True):
                HSIC(y.cpu(), tol=tol)(h.cpu())
            r[key] = time.perf_counter() - t
        r["tokens"] = sum(len(n) for n in news)
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
