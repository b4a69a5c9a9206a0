"""``PeakReadout``: what the peak-token lens reads at the MI peaks of one :class:`MITrace`.

Per peak step: the generated token, its MI, the lens's top-``k`` tokens with probabilities, and the
rank and log-probability the lens gives the generated token. The circuitsvis views
(:mod:`tl_thinktok.viz`) and the HTML report (:mod:`tl_thinktok.report.html`) both show it.

Example:
    >>> from tl_thinktok.loading import load_model
    >>> from tl_thinktok.trace import MITrace
    >>> model = load_model("organism")
    >>> tr = MITrace.from_model(model, "Q: 2 + 3 = ?", "2 + 3 = 5.", max_new_tokens=16)
    >>> ro = peak_readout(tr, model, k=3)
    >>> len(ro) == len(tr.peaks)
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tl_thinktok import hosts
from tl_thinktok._io import JsonIO
from tl_thinktok._validate import check_int
from tl_thinktok.lens import PeakTokenLens
from tl_thinktok.probe import step_residuals
from tl_thinktok.trace import MITrace

__all__ = ["PeakReadout", "peak_readout"]


@dataclass
class PeakReadout(JsonIO):
    """The lens at a set of steps of one trace (by default its MI peaks).

    Attributes:
        steps: step indices (rows of the trace).
        token_ids: the generated token id at each step.
        tokens: those tokens, decoded (not stripped).
        mi: MI value at each step.
        topk_ids: ``[n][k]`` lens top-``k`` token ids, most probable first.
        topk_tokens: ``[n][k]`` decoded top-``k`` tokens.
        topk_probs: ``[n][k]`` their probabilities (float64 softmax).
        rank: 0-based rank of the generated token in the lens distribution (0 = top-1).
        logprob: natural-log probability the lens gives the generated token.
        layer: block the lens read.
    """

    steps: list[int]
    token_ids: list[int]
    tokens: list[str]
    mi: list[float]
    topk_ids: list[list[int]]
    topk_tokens: list[list[str]]
    topk_probs: list[list[float]]
    rank: list[int]
    logprob: list[float]
    layer: int = -1

    def __post_init__(self) -> None:
        n = len(self.steps)
        for name in ("token_ids", "tokens", "mi", "topk_ids", "topk_tokens", "topk_probs", "rank",
                     "logprob"):  # fmt: skip
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, steps has {n}")

    def __len__(self) -> int:
        return len(self.steps)


def peak_readout(
    trace: MITrace,
    model: Any,
    *,
    k: int = 5,
    layer: int | None = None,
    steps: list[int] | None = None,
) -> PeakReadout:
    """Read the peak-token lens at the peaks (or ``steps``) of ``trace``.

    Args:
        trace: the trace (its kept residuals are used when they are at ``layer``).
        model: the model that made the trace (final norm, unembedding and tokenizer).
        k: top-``k`` tokens per step.
        layer: block to read (``None`` = the trace's layer); another layer runs one
            teacher-forced pass.
        steps: steps to read (``None`` = ``trace.peaks``).

    Raises:
        ValueError: a step outside the trace; residual width differs from the model's.
    """
    if not isinstance(trace, MITrace):
        raise TypeError(f"trace must be an MITrace, got {type(trace).__name__}")
    k = check_int("k", k, low=1)
    layer = trace.layer if layer is None else check_int("layer", layer)
    idx = list(trace.peaks) if steps is None else [check_int("step", s) for s in steps]
    bad = [s for s in idx if not 0 <= s < trace.n_steps]
    if bad:
        raise ValueError(f"steps {bad[:10]} are outside the trace ({trace.n_steps} steps)")
    dev = hosts.model_device(model)
    if trace.residuals is not None and layer == trace.layer:
        resid = trace.residuals.to(dev)
    else:
        tokens = torch.tensor(trace.tokens, dtype=torch.long, device=dev)
        with torch.no_grad():
            resid = step_residuals(model, tokens, trace.prompt_len, layer).detach()
    gen = trace.gen_ids
    tok = hosts.tokenizer_of(model)
    ids = [gen[s] for s in idx]
    if not idx:  # no peaks: an empty readout
        return PeakReadout([], [], [], [], [], [], [], [], [], layer)
    res = PeakTokenLens(layer=layer, k=k).decode(model, resid, steps=idx)
    with torch.no_grad():
        logp = torch.log_softmax(hosts.unembed_resid(model, resid[idx]).double(), dim=-1).cpu()
    chosen = logp[torch.arange(len(idx)), torch.tensor(ids)]
    rank = (logp > chosen[:, None]).sum(-1)
    return PeakReadout(
        steps=idx,
        token_ids=ids,
        tokens=[tok.decode([i]) for i in ids],
        mi=[float(trace.mi[s]) for s in idx],
        topk_ids=res.token_ids.tolist(),
        topk_tokens=res.tokens,
        topk_probs=res.probs.tolist(),
        rank=[int(r) for r in rank],
        logprob=[float(v) for v in chosen],
        layer=layer,
    )
