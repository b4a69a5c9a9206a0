"""Peak memory of the teacher-forced residual pass: one forward vs chunks with the KV cache.

``python tests/benchmarks/memory_teacher.py --tokens 4096`` (SmolLM2-135M-Instruct, last block,
one trace of random token ids): each mode runs in a fresh process and reports its peak RSS over
the baseline taken after the model loaded (docs/performance.md, "Engines on a real model").
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _child(mode: str, tokens: int) -> None:
    import torch

    from tl_thinktok.loading import load_model
    from tl_thinktok.probe import step_residuals_batch

    torch.set_num_threads(2)
    model = load_model("smollm2-135m")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(100, 40000, (tokens,), generator=g).tolist()
    base = _peak_mib()
    chunk = None if mode == "one pass" else int(mode.split()[1])
    (h,) = step_residuals_batch(model, [ids], [16], -1, chunk=chunk)
    print(json.dumps({"mode": mode, "steps": h.shape[0], "resid_mib": h.numel() * 4 / 2**20,
                      "peak_over_baseline_mib": _peak_mib() - base}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--child", default=None)
    a = ap.parse_args()
    if a.child:
        _child(a.child, a.tokens)
        return
    for mode in ("one pass", "chunk 256", "chunk 64"):
        out = subprocess.run([sys.executable, __file__, "--tokens", str(a.tokens), "--child", mode],
                             capture_output=True, text=True, check=True)  # fmt: skip
        print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
