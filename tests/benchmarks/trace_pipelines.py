"""The Table-1 trace pipelines compared by ``test_bench_trace.py`` (generate, capture, MI, peaks).

Two references (what a researcher runs without tl-thinktok):

* :func:`reference_scripts_pipeline` — what the MI-Peaks reference scripts do, step for step: per
  prompt, HF ``generate`` at batch 1 (greedy, ``return_dict_in_generate=True``,
  ``output_hidden_states=True``) with a forward hook on decoder layer ``L`` that keeps
  ``hidden[0, -1]`` (moved to the CPU) at every step, one HF forward pass per answer for its
  representation, then the reference MI formula in torch float32 on the CPU, step by step
  (:func:`tl_thinktok.testing.reference.reference_nocco_float32`: ``R_y`` recomputed and two
  ``m x m`` inversions per step).
* :func:`reference_batched` — the same with a *strengthened* generator: one HF ``generate`` of a
  left-padded batch, the last position of every step from the hook, the answer passes, then the
  same float32 formula (the arithmetic the scripts run; the float64 numpy transcription
  :func:`~tl_thinktok.testing.reference.reference_nocco` costs about the same per step and is
  only used here for the accuracy check).

Both time the formula on the first ``ref_steps`` steps of every trace and charge that per-step
cost for every step (its cost does not depend on the step), and both also evaluate the float64
formula on those steps, untimed, as the accuracy reference for every pipeline's MI.

:func:`tl_route` — tl-thinktok on a TransformerLens model, by route: ``"capture"``
(``MITrace.batch_from_model``'s default: batched greedy generation with an
:class:`~tl_thinktok.probe.MIProbe` recording every step, no second pass), ``"teacher"`` (batched
greedy generation, then ONE right-padded teacher-forced pass for every trace), ``"per_trace"``
(batched generation, then one teacher-forced pass per trace with ``MITrace.from_tokens``: the
trace pass before this benchmark existed), ``"hf"`` (``engine="hf"`` of
``MITrace.batch_from_model``: HF ``generate``, then the chunked teacher-forced pass);
``"capture_fastmi"`` is ``capture`` with the fast low-rank estimator (``tol=1e-10``) instead of
the exact one: an option measured here, not the library's default (``MITrace`` records exact
MI). (The ``vllm`` engine is benchmarked on SmolLM2 in test_bench_engines.py.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from bench_clock import clock

from tl_thinktok.generation import encode, greedy_batch
from tl_thinktok.interventions.base import attach_all
from tl_thinktok.mi import HSIC
from tl_thinktok.peaks import find_peaks
from tl_thinktok.probe import MIProbe, last_residuals_batch
from tl_thinktok.testing.reference import reference_nocco, reference_nocco_float32
from tl_thinktok.trace import MITrace, trace_steps

#: Fast-mode tolerance of the ``*_fastmi`` routes (relative MI error <= ~1e-6, mi.py).
FAST_TOL = 1e-10
ROUTES = ("capture", "teacher", "per_trace", "hf", "capture_fastmi")
#: Routes that are library defaults (exact MI); the ``*_fastmi`` one is a measured option.
LIBRARY_ROUTES = ("capture", "teacher", "per_trace", "hf")


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
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; expected one of {ROUTES}")
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
    elif route == "hf":
        trs = MITrace.batch_from_model(model, prompts, answer_texts, layer=layer,
                                       max_new_tokens=max_new, engine="hf")  # fmt: skip
    else:
        trs = MITrace.batch_from_model(model, prompts, answer_texts, layer=layer,
                                       max_new_tokens=max_new, route=route)  # fmt: skip
    return [(tr.gen_ids, tr.mi, tr.peaks) for tr in trs]


@dataclass
class ReferenceRun:
    """One run of a reference pipeline.

    Attributes:
        gens: generated ids per prompt (up to and including the first EOS).
        states: per prompt, the step states ``[steps, d]`` (float32, CPU) from the hook.
        answers: per prompt, the answer representation ``[d]`` (float32, CPU).
        mi_f32: per prompt, the float32 formula on the first ``ref_steps`` steps (timed).
        mi_f64: per prompt, the float64 formula on the same steps (untimed accuracy reference).
        generate_s: clock seconds of generation + answer passes.
        formula_s_per_step: clock seconds of the float32 formula per step.
    """

    gens: list[list[int]]
    states: list[torch.Tensor]
    answers: list[torch.Tensor]
    mi_f32: list[np.ndarray]
    mi_f64: list[np.ndarray]
    generate_s: float
    formula_s_per_step: float

    @property
    def tokens(self) -> int:
        """Generated tokens (= steps) over all prompts."""
        return sum(len(g) for g in self.gens)

    @property
    def total_s(self) -> float:
        """End-to-end time: generation + answers + the formula charged for every step."""
        return self.generate_s + self.formula_s_per_step * self.tokens

    def f32_error(self) -> tuple[float, float]:
        """(median, max) relative error of the float32 formula vs float64 on the timed steps."""
        a, b = np.concatenate(self.mi_f32), np.concatenate(self.mi_f64)
        rel = np.abs(a - b) / np.abs(b)
        return float(np.median(rel)), float(rel.max())


def _hidden(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def _cut_at_eos(row: list[int], eos: int | None) -> list[int]:
    # the step that predicted EOS is a step (as in the reference code and MITrace)
    return row[: row.index(eos) + 1] if eos is not None and eos in row else row


@torch.no_grad()
def hf_generate_capture(
    hf: Any, prompts: Sequence[list[int]], layer: int, max_new: int, pad: int, eos: int | None
) -> tuple[list[list[int]], list[torch.Tensor]]:
    """HF greedy ``generate`` of a left-padded batch with a forward hook on ``layers[layer]``.

    Returns the generated ids per row (up to and including the first EOS) and each row's step
    states ``[steps, d]`` (float32, CPU).
    """
    width = max(len(p) for p in prompts)
    dev = hf.device
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=dev)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=dev)
    caps: list[torch.Tensor] = []

    def hook(_m, _a, out):
        caps.append(_hidden(out)[:, -1].detach().clone())

    handle = hf.model.layers[layer].register_forward_hook(hook)
    try:
        out = hf.generate(ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                          pad_token_id=pad, eos_token_id=eos)  # fmt: skip
    finally:
        handle.remove()
    states = torch.stack(caps, 1).float().cpu()
    gens = [_cut_at_eos(row, eos) for row in out[:, width:].tolist()]
    return gens, [states[i, : len(g)] for i, g in enumerate(gens)]


@torch.no_grad()
def hf_generate_one(
    hf: Any, prompt: list[int], layer: int, max_new: int, pad: int, eos: int | None
) -> tuple[list[int], torch.Tensor]:
    """The reference scripts' generation of one prompt: batch 1, hook keeps ``hidden[0, -1]``.

    ``generate`` is called as the scripts call it (greedy, ``return_dict_in_generate=True``,
    ``output_hidden_states=True``); the hook appends ``hidden[0, -1].detach().cpu()`` at every
    forward call (the prompt pass, then one per new token but the last), so there is one state
    per generated token. Returns the generated ids (up to and including EOS) and ``[steps, d]``.
    """
    caps: list[torch.Tensor] = []

    def hook(_m, _a, out):
        caps.append(_hidden(out)[0, -1].detach().cpu())

    ids = torch.tensor([prompt], device=hf.device)
    handle = hf.model.layers[layer].register_forward_hook(hook)
    try:
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                          do_sample=False, return_dict_in_generate=True,
                          output_hidden_states=True, pad_token_id=pad,
                          eos_token_id=eos)  # fmt: skip
    finally:
        handle.remove()
    gen = _cut_at_eos(out.sequences[0, len(prompt) :].tolist(), eos)
    states = torch.stack(caps).float()
    if states.shape[0] < len(gen):
        raise RuntimeError(f"hook saw {states.shape[0]} forward calls for {len(gen)} tokens")
    return gen, states[: len(gen)]


@torch.no_grad()
def hf_answer_states(hf: Any, answers: Sequence[list[int]], layer: int) -> list[torch.Tensor]:
    """Decoder layer ``layer``'s output at the last token of each answer (one HF pass each)."""
    out = []
    for a in answers:
        cap = {}

        def hook(_m, _a, o, cap=cap):
            cap["h"] = _hidden(o)[0, -1].detach().cpu().float()

        handle = hf.model.layers[layer].register_forward_hook(hook)
        try:
            hf(torch.tensor([a], device=hf.device))
        finally:
            handle.remove()
        out.append(cap["h"])
    return out


def reference_mi_f32(states: torch.Tensor, y: torch.Tensor, n: int | None = None) -> np.ndarray:
    """The reference scripts' formula (torch float32, CPU) on the first ``n`` steps (all: None)."""
    rows = states if n is None else states[:n]
    return np.array([reference_nocco_float32(r, y) for r in rows], dtype=np.float64)


def reference_mi(states: torch.Tensor, y: torch.Tensor, n: int | None = None) -> np.ndarray:
    """The float64 reference formula (numpy) on the first ``n`` steps (all when ``None``)."""
    rows = (states if n is None else states[:n]).double().numpy()
    yy = y.double().numpy()
    return np.array([reference_nocco(r, yy) for r in rows], dtype=np.float64)


def _finish(gens, states, ys, t_gen: float, ref_steps: int) -> ReferenceRun:
    t0 = clock()
    mi32 = [reference_mi_f32(s, y, ref_steps) for s, y in zip(states, ys, strict=True)]
    t_mi = clock() - t0
    mi64 = [reference_mi(s, y, ref_steps) for s, y in zip(states, ys, strict=True)]  # untimed
    per_step = t_mi / sum(len(m) for m in mi32)
    return ReferenceRun(gens, states, ys, mi32, mi64, t_gen, per_step)


def reference_scripts_pipeline(
    hf: Any,
    prompts: Sequence[list[int]],
    answers: Sequence[list[int]],
    layer: int,
    max_new: int,
    pad: int,
    eos: int | None,
    ref_steps: int,
) -> ReferenceRun:
    """What the reference scripts do: prompts one by one, answers one by one, float32 formula.

    Args:
        hf: HF causal LM (``hf.model.layers`` are the decoder blocks).
        prompts: prompt ids per problem.
        answers: answer (gold solution) ids per problem.
        layer: decoder block (non-negative).
        max_new: new-token budget per prompt.
        pad: pad id given to ``generate``.
        eos: EOS id (generation stops there; ``None``: never).
        ref_steps: steps per trace on which the formula is run and timed (charged per step).

    Returns:
        A :class:`ReferenceRun`.
    """
    t0 = clock()
    gens, states = [], []
    for p in prompts:
        g, s = hf_generate_one(hf, p, layer, max_new, pad, eos)
        gens.append(g)
        states.append(s)
    ys = hf_answer_states(hf, answers, layer)
    return _finish(gens, states, ys, clock() - t0, ref_steps)


def reference_batched(
    hf: Any,
    prompts: Sequence[list[int]],
    answers: Sequence[list[int]],
    layer: int,
    max_new: int,
    pad: int,
    eos: int | None,
    ref_steps: int,
) -> ReferenceRun:
    """A strengthened reference: ONE left-padded HF ``generate`` for all prompts, then as the
    scripts (answer passes, float32 formula). Arguments as :func:`reference_scripts_pipeline`."""
    t0 = clock()
    gens, states = hf_generate_capture(hf, prompts, layer, max_new, pad, eos)
    ys = hf_answer_states(hf, answers, layer)
    return _finish(gens, states, ys, clock() - t0, ref_steps)
