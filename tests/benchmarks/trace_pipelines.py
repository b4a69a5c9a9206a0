"""The Table-1 trace pipelines compared by ``test_bench_trace.py`` (generate, capture, MI, peaks).

* :func:`reference_pipeline` — what a researcher runs without tl-thinktok (as the reference
  scripts do): HF ``generate`` (left-padded batch, greedy) with a forward hook on decoder layer
  ``L`` that keeps the last position of every step, the answer representation from an HF forward
  pass, then the reference MI formula (:func:`tl_thinktok.testing.reference.reference_nocco`,
  numpy float64) step by step, and the Q3 + 1.5 IQR peaks.
* :func:`tl_route` — tl-thinktok on a TransformerLens model, by route: ``"capture"``
  (``MITrace.batch_from_model``'s default: batched greedy generation with an
  :class:`~tl_thinktok.probe.MIProbe` recording every step, no second pass), ``"teacher"``
  (batched greedy generation, then ONE right-padded teacher-forced pass for every trace) or
  ``"per_trace"`` (batched generation, then one teacher-forced pass per trace with
  ``MITrace.from_tokens``: the trace pass before this benchmark existed); ``"capture_fastmi"`` is
  ``capture`` with the fast low-rank estimator (``tol=1e-10``) instead of the exact one: an
  option measured here, not the library's default (``MITrace`` records exact MI).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tl_thinktok.generation import encode, greedy_batch
from tl_thinktok.interventions.base import attach_all
from tl_thinktok.mi import HSIC
from tl_thinktok.peaks import find_peaks
from tl_thinktok.probe import MIProbe, last_residuals_batch
from tl_thinktok.testing.reference import reference_nocco
from tl_thinktok.trace import MITrace, trace_steps

#: Fast-mode tolerance of the ``capture_fastmi`` route (relative MI error <= ~1e-6, mi.py).
FAST_TOL = 1e-10
ROUTES = ("capture", "teacher", "per_trace", "capture_fastmi")


@torch.no_grad()
def tl_route(
    model: Any,
    prompts: Sequence[list[int]],
    answer_texts: Sequence[str],
    layer: int,
    max_new: int,
    route: str,
) -> list[tuple[list[int], np.ndarray, list[int]]]:
    """tl-thinktok's trace pipeline on a batch by ``route`` → ``(generated ids, mi, peaks)``."""
    if route == "capture_fastmi":  # capture, then the fast estimator (not a library default)
        probe = MIProbe(layer)
        with attach_all(model, probe):
            news = greedy_batch(model, prompts, max_new)
        gens = [trace_steps(model, n) for n in news]
        hs = probe.pop_rows([len(g) for g in gens])
        answers = [encode(model, t) for t in answer_texts]
        out = []
        for g, h, y in zip(gens, hs, last_residuals_batch(model, answers, layer), strict=True):
            mi = HSIC(y.cpu(), tol=FAST_TOL)(h.cpu()).numpy()
            out.append((g, mi, find_peaks(torch.as_tensor(mi))))
        return out
    if route == "per_trace":
        gens = [trace_steps(model, g) for g in greedy_batch(model, prompts, max_new)]
        trs = [MITrace.from_tokens(model, p + g, len(p), text, layer=layer)
               for p, g, text in zip(prompts, gens, answer_texts, strict=True)]  # fmt: skip
    else:
        trs = MITrace.batch_from_model(model, prompts, answer_texts, layer=layer,
                                       max_new_tokens=max_new, route=route)  # fmt: skip
    return [(tr.gen_ids, tr.mi, tr.peaks) for tr in trs]


@torch.no_grad()
def hf_generate_capture(
    hf: Any, prompts: Sequence[list[int]], layer: int, max_new: int, pad: int, eos: int | None
) -> tuple[list[list[int]], list[np.ndarray]]:
    """HF greedy ``generate`` of a left-padded batch with a forward hook on ``layers[layer]``.

    Returns the generated ids per row (up to and including the first EOS: the step that predicted
    EOS is a step, as in the reference code and ``MITrace``) and each row's step states
    ``[steps, d]`` (float64 numpy).
    """
    width = max(len(p) for p in prompts)
    dev = hf.device
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=dev)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=dev)
    caps: list[torch.Tensor] = []

    def hook(_m, _a, out):
        caps.append((out[0] if isinstance(out, tuple) else out)[:, -1].detach().clone())

    handle = hf.model.layers[layer].register_forward_hook(hook)
    try:
        out = hf.generate(ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                          pad_token_id=pad, eos_token_id=eos)  # fmt: skip
    finally:
        handle.remove()
    states = torch.stack(caps, 1).double().cpu().numpy()
    gens, rows = [], []
    for i, row in enumerate(out[:, width:].tolist()):
        if eos is not None and eos in row:
            row = row[: row.index(eos) + 1]
        kept = row
        gens.append(kept)
        rows.append(states[i, : len(kept)])
    return gens, rows


@torch.no_grad()
def hf_answer_states(hf: Any, answers: Sequence[list[int]], layer: int) -> list[np.ndarray]:
    """Decoder layer ``layer``'s output at the last token of each answer (one HF pass each)."""
    out = []
    for a in answers:
        cap = {}

        def hook(_m, _a, o, cap=cap):
            cap["h"] = (o[0] if isinstance(o, tuple) else o)[0, -1].double().cpu().numpy()

        handle = hf.model.layers[layer].register_forward_hook(hook)
        try:
            hf(torch.tensor([a], device=hf.device))
        finally:
            handle.remove()
        out.append(cap["h"])
    return out


def reference_mi(states: np.ndarray, y: np.ndarray, n: int | None = None) -> np.ndarray:
    """The reference formula on the first ``n`` steps (all when ``None``)."""
    rows = states if n is None else states[:n]
    return np.array([reference_nocco(r, y) for r in rows], dtype=np.float64)
