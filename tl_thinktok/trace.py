"""``MITrace``: one reasoning trace and its MI trajectory, the paper's central result object.

A trace is the token ids ``prompt + generated``, the block ``layer`` whose outputs are the step
representations ``h_t``, the MI proxy ``MI(h_t, h_y)`` of every step against the answer
representation ``h_y`` (the paper's NOCCO estimator, float64), its peaks (Q3 + 1.5 IQR) and the
residual norms ``‖h_t‖``. Row ``t`` of every per-step array belongs to generated token ``t``.

Build one from a model (greedy generation, then one teacher-forced pass), or from an
:class:`~tl_thinktok.probe.MIProbe` that recorded a ``generate`` call; ``save`` writes JSON (and,
when the residuals are kept, a ``.safetensors`` file next to it).

Example:
    >>> from tl_thinktok.loading import load_model
    >>> from tl_thinktok.trace import MITrace
    >>> model = load_model("organism")
    >>> tr = MITrace.from_model(model, "Q: 2 + 3 = ?", "2 + 3 = 5. The answer is 5.",
    ...                         max_new_tokens=32)
    >>> len(tr.mi) == tr.n_steps == len(tr.gen_ids)
    True
    >>> words = tr.peak_tokens(model)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from tl_thinktok import generation, hosts
from tl_thinktok._io import JsonIO, atomic_write_text, to_jsonable
from tl_thinktok._validate import as_f64_vector, as_token_ids, check_bool, check_float, check_int
from tl_thinktok.engines import Engine, get_engine
from tl_thinktok.interventions.base import attach_all
from tl_thinktok.mi import HSIC
from tl_thinktok.peaks import TraceStats, find_peaks, trace_stats
from tl_thinktok.probe import (
    MIProbe,
    answer_representation,
    last_residuals_batch,
    step_residuals,
    step_residuals_batch,
)

__all__ = ["MITrace", "ROUTES", "resolve_route", "residual_file", "strip_eos", "trace_steps"]

#: Reference bandwidth of the paper's NOCCO estimator.
SIGMA = 50.0
#: Routes of :meth:`MITrace.batch_from_model` ("auto" picks one, :func:`resolve_route`).
ROUTES = ("auto", "capture", "teacher")
#: Positions per cached forward call of the teacher-forced pass (``"teacher"`` route): a trace
#: of any length never builds more than a ``[TEACHER_CHUNK, pos]`` attention matrix.
TEACHER_CHUNK = 256
#: Space :meth:`MITrace.plot` leaves above the highest labelled peak, as a fraction of the range
#: (a 7-pt label fits in axes from about 1 inch tall).
LABEL_HEADROOM = 0.18
#: MI and norms are computed over chunks of at most this many bytes of float64 step states, so a
#: long trace never gets a whole float64 copy (docs/performance.md, "Memory").
_STREAM_BYTES = 64 * 2**20
_META = ("id", "question", "answer", "text", "correct", "model", "engine")


def resolve_route(
    model: Any, route: str = "auto", engine: str = "tl", prompts: Sequence[Sequence[int]] = ()
) -> str:
    """The step-state route :meth:`MITrace.batch_from_model` takes.

    ``"auto"`` is ``"capture"`` (an :class:`~tl_thinktok.probe.MIProbe` during TL's
    ``generate``: no second pass) for the ``tl`` engine where one left-padded batch decodes the
    prompts exactly (:meth:`~tl_thinktok.hosts.base.HostAdapter.left_padding_safe`, or prompts of
    one length), else ``"teacher"`` (the chunked teacher-forced pass after generation). Other
    engines run no TransformerLens hook while they generate: ``"capture"`` is refused there.

    Example:
        >>> resolve_route(model, "auto", "vllm")  # doctest: +SKIP
        'teacher'
    """
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; expected one of {ROUTES}")
    if route == "capture" and engine != "tl":
        raise ValueError(
            f"route 'capture' records the residuals during TransformerLens' generate; the "
            f"{engine!r} engine runs no TL hook: use route 'teacher' (or 'auto')"
        )
    if route == "teacher" or (route == "auto" and engine != "tl"):
        return "teacher"
    one_length = len({len(p) for p in prompts}) <= 1
    if one_length or hosts.adapter(model).left_padding_safe():
        return "capture"
    if route == "capture":
        raise ValueError(
            "route 'capture' needs one left-padded batch, which this host cannot decode exactly "
            "(the bridge in float64) for prompts of unequal length: use route 'teacher'"
        )
    return "teacher"


def residual_file(path: str | Path) -> Path:
    """Where :meth:`MITrace.save` puts the residuals of the trace saved at ``path``."""
    return Path(path).with_suffix(".safetensors")


def _states(t: Tensor) -> Tensor:
    """Detached CPU copy in float32, or float64 if the model computes in float64."""
    t = t.detach().cpu()
    return t if t.dtype == torch.float64 else t.float()


def _analyse(
    resid: Float[Tensor, "step d"],
    answer: Float[Tensor, " d"],
    sigma: float,
    mi_tol: float | None = None,
) -> tuple[np.ndarray, list[int], np.ndarray]:
    """MI trajectory (float64), its peaks and the residual norms of CPU states (streamed).

    ``mi_tol``: ``None`` = the exact estimator; a float = the fast low-rank one with that
    tolerance (:class:`~tl_thinktok.mi.HSIC`).
    """
    est = HSIC(answer, sigma=sigma, tol=mi_tol)  # answer side factorised once for all chunks
    step = max(1, _STREAM_BYTES // (8 * resid.shape[-1]))
    chunks = [resid[i : i + step] for i in range(0, resid.shape[0], step)]
    mi = torch.cat([est(c) for c in chunks]).cpu().numpy()
    peaks = find_peaks(torch.as_tensor(mi, dtype=torch.float64))
    norms = torch.cat([c.double().norm(dim=-1) for c in chunks]).numpy()
    return mi, peaks, norms


@dataclass(eq=False)
class MITrace(JsonIO):
    """One trace and its MI trajectory.

    Attributes:
        tokens: all token ids, prompt then generated.
        prompt_len: number of prompt tokens (``1 <= prompt_len < len(tokens)``).
        layer: block whose outputs are ``h_t`` (as given, e.g. ``-1`` = last).
        mi: ``[step]`` float64 MI proxy of each step against ``h_y``.
        peaks: ascending peak steps.
        resid_norm: ``[step]`` float64 norms ``‖h_t‖``.
        sigma: kernel bandwidth of the estimator.
        mi_tol: ``None`` when ``mi`` is the exact estimator; else the fast estimator's tolerance
            (:class:`~tl_thinktok.mi.HSIC` ``tol``; relative error about 1e-6 at ``1e-10``).
        id, question, answer, text, correct, model, engine: optional metadata (problem id,
            question, gold answer, decoded generation, graded correctness, model name, the
            engine that generated the tokens).
        residuals: ``[step, d]`` ``h_t`` if kept (saved as safetensors, not JSON); float32, or
            float64 for a float64 model.
        answer_rep: ``[d]`` ``h_y`` if kept (same dtype).
    """

    tokens: list[int]
    prompt_len: int
    layer: int
    mi: Float[np.ndarray, " step"]
    peaks: list[int]
    resid_norm: Float[np.ndarray, " step"]
    sigma: float = SIGMA
    mi_tol: float | None = None
    id: str | None = None
    question: str | None = None
    answer: str | None = None
    text: str | None = None
    correct: bool | None = None
    model: str | None = None
    engine: str | None = None
    residuals: Tensor | None = field(default=None, repr=False)
    answer_rep: Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.tokens = as_token_ids(self.tokens, name="tokens", allow_empty=False)
        self.prompt_len = check_int("prompt_len", self.prompt_len, low=1)
        if self.prompt_len >= len(self.tokens):
            raise ValueError(
                f"prompt_len={self.prompt_len} must be < len(tokens)={len(self.tokens)} "
                "(a trace needs at least one generated token)"
            )
        self.layer = check_int("layer", self.layer)
        self.sigma = check_float("sigma", self.sigma, low=0.0)
        n = len(self.tokens) - self.prompt_len
        self.mi = as_f64_vector("mi", self.mi)
        self.resid_norm = as_f64_vector("resid_norm", self.resid_norm)
        for name, arr in (("mi", self.mi), ("resid_norm", self.resid_norm)):
            if arr.shape[0] != n:
                raise ValueError(
                    f"{name} has {arr.shape[0]} steps but the trace has {n} generated tokens"
                )
        peaks = [check_int("peak index", p) for p in self.peaks]
        bad = [p for p in peaks if not 0 <= p < n]
        if bad:
            raise ValueError(f"peak indices {bad[:10]} out of range for a trace of {n} steps")
        if peaks != sorted(set(peaks)):
            raise ValueError(f"peaks must be ascending without repeats, got {peaks[:10]}")
        self.peaks = peaks
        if self.residuals is not None and tuple(self.residuals.shape[:1]) != (n,):
            raise ValueError(
                f"residuals have shape {tuple(self.residuals.shape)}, expected [{n}, d_model]"
            )

    # ---------------------------------------------------------------------------------- views

    @property
    def gen_ids(self) -> list[int]:
        """The generated token ids (``tokens[prompt_len:]``)."""
        return self.tokens[self.prompt_len :]

    @property
    def n_steps(self) -> int:
        """Number of generated tokens (= steps of the trajectory)."""
        return len(self.tokens) - self.prompt_len

    def stats(self) -> TraceStats:
        """Table 1 / Table 2 statistics of this trajectory and its peaks."""
        return trace_stats(self.mi, peaks=self.peaks)

    def peak_tokens(self, tokenizer: Any) -> list[str]:
        """The generated token at each peak, decoded and stripped.

        Args:
            tokenizer: an HF tokenizer, or a model that has one.
        """
        tok = getattr(tokenizer, "tokenizer", None) or tokenizer
        gen = self.gen_ids
        return [tok.decode([gen[p]]).strip() for p in self.peaks]

    # ---------------------------------------------------------------------------- builders

    @classmethod
    def from_tokens(
        cls,
        model: Any,
        tokens: Sequence[int] | Tensor,
        prompt_len: int,
        answer_text: str | None = None,
        /,
        *,
        answer_rep: Float[Tensor, " d_model"] | None = None,
        layer: int = -1,
        sigma: float = SIGMA,
        keep_residuals: bool = False,
        **meta: Any,
    ) -> MITrace:
        """Trace of a finished generation: one teacher-forced pass gives every ``h_t``.

        The arguments before ``layer`` are positional (so that ``model=`` names metadata).

        Args:
            model: HookedTransformer or TransformerBridge.
            tokens: ``prompt + generated`` ids.
            prompt_len: number of prompt ids.
            answer_text: the gold solution text; ``h_y`` is its last-token state at ``layer``.
            answer_rep: ``h_y`` itself (instead of ``answer_text``).
            layer: block of ``h_t`` and ``h_y``.
            sigma: estimator bandwidth.
            keep_residuals: keep ``h_t`` / ``h_y`` on the trace (``.residuals``).
            **meta: metadata fields (``id``, ``question``, ``answer``, ``text``, ``correct``,
                ``model``).

        Raises:
            ValueError: not exactly one of ``answer_text`` / ``answer_rep``; a sequence longer
                than the model's context; a bad ``prompt_len``.
        """
        if (answer_text is None) == (answer_rep is None):
            raise ValueError("give exactly one of answer_text (gold solution) or answer_rep (h_y)")
        ids = as_token_ids(tokens, name="tokens", allow_empty=False)
        generation.check_prompt_length(model, len(ids) - 1, what="trace (minus its last token)")
        resid = step_residuals(model, torch.tensor(ids, dtype=torch.long), prompt_len, layer)
        resid = _states(resid.reshape(-1, resid.shape[-1]))
        if answer_text is not None:
            if not isinstance(answer_text, str) or not answer_text.strip():
                raise ValueError("answer_text must be a non-empty string (the gold solution)")
            n_ans = len(generation.encode(model, answer_text))
            generation.check_prompt_length(model, n_ans, what="answer text")
            answer_rep = answer_representation(model, answer_text, layer=layer)
        if not isinstance(answer_rep, Tensor):
            raise TypeError(f"answer_rep must be a tensor, got {type(answer_rep).__name__}")
        ans = _states(answer_rep.reshape(-1))
        if ans.shape[0] != resid.shape[-1]:
            raise ValueError(f"answer_rep has {ans.shape[0]} dims, h_t has {resid.shape[-1]}")
        return cls._build(ids, prompt_len, layer, resid, ans, sigma, keep_residuals, meta)

    @classmethod
    def from_model(
        cls,
        model: Any,
        prompt: str | Sequence[int],
        answer_text: str,
        /,
        *,
        layer: int = -1,
        max_new_tokens: int = 256,
        sigma: float = SIGMA,
        bos: bool | None = None,
        keep_residuals: bool = False,
        drop_eos: bool = False,
        **meta: Any,
    ) -> MITrace:
        """Greedy generation from ``prompt``, then :meth:`from_tokens`.

        The step whose prediction is EOS is kept, as the reference code keeps it
        (``drop_eos=True`` drops it; a generation that is only EOS keeps it, so that there is one
        step).

        Args:
            model: HookedTransformer or TransformerBridge with a tokenizer.
            prompt: prompt text (encoded with :func:`tl_thinktok.generation.encode`) or ids.
            answer_text: gold solution text for ``h_y``.
            layer: block of ``h_t`` and ``h_y``.
            max_new_tokens: generation budget (clipped to the model's context).
            sigma: estimator bandwidth.
            bos: BOS policy for a text prompt (``None`` = the model's default).
            keep_residuals: keep ``h_t`` / ``h_y`` on the trace.
            drop_eos: drop the final EOS step (default ``False``: kept, as the reference).
            **meta: metadata fields (``id``, ``answer``, ``model``, ...).

        Raises:
            ValueError: empty answer text, a prompt longer than the context, no budget.
        """
        if not isinstance(answer_text, str) or not answer_text.strip():
            raise ValueError("answer_text must be a non-empty string (the gold solution)")
        check_int("max_new_tokens", max_new_tokens, low=1)
        ids = generation.encode(model, prompt, bos=bos) if isinstance(prompt, str) else prompt
        ids = as_token_ids(ids, name="prompt", allow_empty=False)
        new = generation.greedy(model, ids, max_new_tokens)
        gen = trace_steps(model, new, drop_eos=check_bool("drop_eos", drop_eos))
        meta.setdefault("text", generation.decode(model, gen))
        return cls.from_tokens(
            model,
            ids + gen,
            len(ids),
            answer_text,
            layer=layer,
            sigma=sigma,
            keep_residuals=keep_residuals,
            **meta,
        )

    @classmethod
    def batch_from_model(
        cls,
        model: Any,
        prompts: Sequence[str | Sequence[int]],
        answer_texts: Sequence[str],
        /,
        *,
        layer: int = -1,
        max_new_tokens: int = 256,
        sigma: float = SIGMA,
        bos: bool | None = None,
        keep_residuals: bool = False,
        drop_eos: bool = False,
        route: str = "auto",
        engine: str | Engine = "tl",
        mi_tol: float | None = None,
        meta: Sequence[dict[str, Any]] | None = None,
    ) -> list[MITrace]:
        """:meth:`from_model` for many prompts: ONE batched greedy generation (left padding).

        Trace ``i`` has the tokens of ``from_model(model, prompts[i], answer_texts[i], ...)``
        and its MI within float32 round-off (tested on both hosts).

        The tokens come from ``engine`` (:mod:`tl_thinktok.engines`: ``"tl"`` TransformerLens
        ``generate``, ``"hf"`` HF ``generate``, ``"vllm"``), the step states ``h_t`` always
        from TransformerLens' hook points, by one of two routes (benchmarked in
        tests/benchmarks/test_bench_trace.py):

        * ``"capture"``: an :class:`~tl_thinktok.probe.MIProbe` records them during TL's
          ``generate`` (every hook and SAE attached to the model applies); no second pass;
          ``tl`` engine only;
        * ``"teacher"``: one right-padded teacher-forced pass over all traces afterwards, in
          chunks of :data:`TEACHER_CHUNK` positions with the host's KV cache
          (:func:`~tl_thinktok.probe.step_residuals_batch`), the definition of
          :meth:`from_tokens`;
        * ``"auto"`` (default): :func:`resolve_route`.

        The answer representations come from one batched pass
        (:func:`~tl_thinktok.probe.last_residuals_batch`, chunked as the teacher route for
        solutions longer than :data:`TEACHER_CHUNK`). Each trace records its ``engine``.

        Args:
            model: HookedTransformer or TransformerBridge with a tokenizer.
            prompts: prompt texts or id lists.
            answer_texts: gold solution text per prompt (``h_y``).
            layer: block of ``h_t`` and ``h_y``.
            max_new_tokens: generation budget per prompt (clipped to the model's context).
            sigma: estimator bandwidth.
            bos: BOS policy for text prompts and answers (``None`` = the model's default).
            keep_residuals: keep ``h_t`` / ``h_y`` on each trace.
            drop_eos: drop a final EOS step (as :meth:`from_model`).
            route: ``"auto"``, ``"capture"`` or ``"teacher"``.
            engine: ``"tl"`` (default), ``"hf"``, ``"vllm"`` or an
                :class:`~tl_thinktok.engines.Engine`.
            mi_tol: ``None`` (default) = the exact estimator; a float = the fast low-rank
                estimator with that tolerance (``1e-10``: relative error about 1e-6, docs/
                performance.md), recorded on each trace.
            meta: per prompt, metadata fields (``id``, ``question``, ``answer``, ``text``,
                ``correct``, ``model``); ``text`` defaults to the decoded generation.

        Returns:
            One trace per prompt, in order.

        Raises:
            ValueError: lists of different lengths, an empty answer text, an unknown route, a
                sequence longer than the context.

        Example:
            >>> trs = MITrace.batch_from_model(
            ...     model, ["Q: 2+3?", "Q: 4+4?"], ["2+3=5", "4+4=8"], max_new_tokens=32
            ... )  # doctest: +SKIP
        """
        if mi_tol is not None:
            mi_tol = check_float("mi_tol", mi_tol, low=0.0)
            if mi_tol == 0.0:
                raise ValueError("mi_tol must be > 0 (None selects the exact estimator)")
        check_int("max_new_tokens", max_new_tokens, low=1)
        drop_eos = check_bool("drop_eos", drop_eos)
        prompts, answer_texts = list(prompts), list(answer_texts)
        metas = [dict(m) for m in meta] if meta is not None else [{} for _ in prompts]
        if not len(prompts) == len(answer_texts) == len(metas):
            raise ValueError(
                f"got {len(prompts)} prompts, {len(answer_texts)} answer texts and {len(metas)} "
                "metadata dicts; give one of each per trace"
            )
        if not prompts:
            return []
        ids = [
            as_token_ids(
                generation.encode(model, p, bos=bos) if isinstance(p, str) else p,
                name="prompt",
                allow_empty=False,
            )
            for p in prompts
        ]
        answers = []
        for text in answer_texts:
            if not isinstance(text, str) or not text.strip():
                raise ValueError("answer_text must be a non-empty string (the gold solution)")
            a = generation.encode(model, text, bos=bos)
            generation.check_prompt_length(model, len(a), what="answer text")
            answers.append(a)
        eng = get_engine(model, engine)
        route = resolve_route(model, route, eng.name, ids)
        if route == "capture":
            probe = MIProbe(layer)
            with attach_all(model, probe):
                news = generation.greedy_batch(model, ids, max_new_tokens)
            gens = [trace_steps(model, n, drop_eos=drop_eos) for n in news]
            resid = probe.pop_rows([len(g) for g in gens])  # moved out: never held twice
        else:
            news = eng.generate(ids, max_new_tokens)
            gens = [trace_steps(model, n, drop_eos=drop_eos) for n in news]
            full = [p + g for p, g in zip(ids, gens, strict=True)]
            for f in full:
                generation.check_prompt_length(
                    model, len(f) - 1, what="trace (minus its last token)"
                )
            resid = step_residuals_batch(
                model, full, [len(p) for p in ids], layer, chunk=TEACHER_CHUNK
            )
        ys = last_residuals_batch(model, answers, layer, chunk=TEACHER_CHUNK)
        out = []
        for p, g, h, y, m in zip(ids, gens, resid, ys, metas, strict=True):
            m.setdefault("text", generation.decode(model, g))
            m.setdefault("engine", eng.name)
            out.append(cls._build(
                p + g, len(p), layer, _states(h), _states(y), sigma, keep_residuals, m,
                mi_tol=mi_tol,
            ))  # fmt: skip
        return out

    @classmethod
    def from_probe(
        cls,
        probe: MIProbe,
        answer_rep: Float[Tensor, " d_model"],
        tokens: Sequence[int] | Tensor,
        prompt_len: int,
        /,
        *,
        eos: int | None = None,
        drop_eos: bool = False,
        sigma: float = SIGMA,
        keep_residuals: bool = False,
        **meta: Any,
    ) -> MITrace:
        """Trace from an :class:`~tl_thinktok.probe.MIProbe` that recorded one ``generate`` call.

        Args:
            probe: the probe (batch 1; one row per generated token).
            answer_rep: ``h_y`` at the probe's layer.
            tokens: ``prompt + generated`` ids as returned by ``generate``.
            prompt_len: number of prompt ids.
            eos: EOS id (needed by ``drop_eos``).
            drop_eos: drop a trailing EOS and its row (default ``False``: the step whose
                prediction is EOS is kept, as the reference and :meth:`from_model`).
            sigma: estimator bandwidth.
            keep_residuals: keep ``h_t`` / ``h_y`` on the trace.
            **meta: metadata fields.

        Raises:
            ValueError: the probe's row count differs from the number of generated tokens.
        """
        if not isinstance(probe, MIProbe):
            raise TypeError(f"probe must be an MIProbe, got {type(probe).__name__}")
        ids = as_token_ids(tokens, name="tokens", allow_empty=False)
        prompt_len = check_int("prompt_len", prompt_len, low=1)
        resid = _states(probe.residuals)
        n_gen = len(ids) - prompt_len
        if resid.shape[0] != n_gen:
            raise ValueError(
                f"the probe recorded {resid.shape[0]} steps but tokens hold {n_gen} generated "
                "tokens: attach the probe around exactly the generate call that made them"
            )
        if check_bool("drop_eos", drop_eos) and eos is None:
            raise ValueError("drop_eos=True needs the EOS id (eos=...)")
        if drop_eos and n_gen > 1 and ids[-1] == eos:
            ids, resid = ids[:-1], resid[:-1]
        if not isinstance(answer_rep, Tensor) or answer_rep.numel() != resid.shape[-1]:
            shape = tuple(answer_rep.shape) if isinstance(answer_rep, Tensor) else answer_rep
            raise ValueError(f"answer_rep must have shape [{resid.shape[-1]}], got {shape}")
        ans = _states(answer_rep.reshape(-1))
        return cls._build(ids, prompt_len, probe.layer, resid, ans, sigma, keep_residuals, meta)

    @classmethod
    def _build(
        cls,
        ids: list[int],
        prompt_len: int,
        layer: int,
        resid: Tensor,
        ans: Tensor,
        sigma: float,
        keep: bool,
        meta: dict[str, Any],
        *,
        mi_tol: float | None = None,
    ) -> MITrace:
        unknown = set(meta) - set(_META)
        if unknown:
            raise TypeError(f"unknown MITrace metadata {sorted(unknown)}; known: {list(_META)}")
        mi, peaks, norms = _analyse(resid, ans, sigma, mi_tol)
        return cls(
            tokens=ids,
            prompt_len=prompt_len,
            layer=layer,
            mi=mi,
            peaks=peaks,
            resid_norm=norms,
            sigma=sigma,
            mi_tol=mi_tol,
            residuals=resid.contiguous() if keep else None,
            answer_rep=ans.contiguous() if keep else None,
            **meta,
        )

    # ---------------------------------------------------------------------------------- io

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (residuals excluded: :meth:`save` writes them as safetensors)."""
        skip = ("residuals", "answer_rep")
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in skip}
        return to_jsonable(out)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MITrace:
        """Inverse of :meth:`to_dict`."""
        d = dict(data)
        for key in ("mi", "resid_norm"):
            if key in d and d[key] is not None:
                d[key] = [np.nan if v is None else v for v in d[key]]
        return super().from_dict(d)

    def save(self, path: str | Path) -> Path:
        """Write JSON to ``path``; kept residuals go to ``path`` with suffix ``.safetensors``."""
        path = Path(path)
        if self.residuals is not None:
            self.save_residuals(residual_file(path))
        text = json.dumps(self.to_dict(), indent=1, ensure_ascii=False, allow_nan=False)
        return atomic_write_text(path, text)

    @classmethod
    def load(cls, path: str | Path) -> MITrace:
        """Read a trace written by :meth:`save` (with its residuals if they were saved)."""
        path = Path(path)
        tr = cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        rfile = residual_file(path)
        if rfile.exists():
            t = load_residuals(rfile)
            tr.residuals, tr.answer_rep = t["resid"], t["answer"]
        return tr

    def save_residuals(self, path: str | Path) -> Path:
        """Write ``{"resid": [step, d], "answer": [d]}`` as safetensors."""
        from safetensors.torch import save_file

        if self.residuals is None or self.answer_rep is None:
            raise ValueError("this trace keeps no residuals (build it with keep_residuals=True)")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tensors = {"resid": self.residuals.contiguous(), "answer": self.answer_rep.contiguous()}
        save_file(tensors, str(tmp))
        tmp.replace(path)
        return path

    # -------------------------------------------------------------------------------- plot

    def plot(
        self,
        ax: Any = None,
        *,
        tokenizer: Any = None,
        title: str | None = None,
        color: str = "tab:blue",
        lw: float = 1.0,
        label: str | None = None,
        peak_color: str = "tab:red",
        peak_label: str | None = "peaks (Q3+1.5 IQR)",
        marker_size: float = 18,
        axis_labels: bool = True,
        legend: bool = True,
    ) -> Any:
        """Plot the MI trajectory with its peaks marked (and labelled with their tokens).

        Args:
            ax: matplotlib axes (``None`` = a new figure).
            tokenizer: label each peak with its generated token (tokenizer or model).
            title: axes title.
            color: line colour.
            lw: line width.
            label: legend label of the line.
            peak_color: colour of the peak markers and labels.
            peak_label: legend label of the peak markers.
            marker_size: peak marker size.
            axis_labels: label the axes.
            legend: show the legend.

        Returns:
            The axes.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(9, 2.8))
        m, peaks = self.mi, self.peaks
        ax.plot(np.arange(len(m)), m, lw=lw, color=color, label=label)
        ax.scatter(peaks, m[peaks], color=peak_color, zorder=3, s=marker_size, label=peak_label)
        if tokenizer is not None:
            for p, w in zip(peaks, self.peak_tokens(tokenizer), strict=True):
                ax.annotate(w, (p, m[p]), textcoords="offset points", xytext=(0, 4),
                            ha="center", fontsize=7, color=peak_color)  # fmt: skip
            if peaks:  # room above the highest peak for its label, inside the axes
                lo, hi = ax.get_ylim()
                top = float(np.max(m[peaks]))
                ax.set_ylim(lo, max(hi, top + LABEL_HEADROOM * (top - lo)))
        if title is not None:
            ax.set_title(title, fontsize=9)
        if axis_labels:
            ax.set_xlabel("generation step t")
            ax.set_ylabel("MI(h_t, h_y)")
        if legend:  # beside the axes: never over the trajectory or a peak label
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0)
        return ax


def load_residuals(path: str | Path) -> dict[str, Tensor]:
    """Tensors written by :meth:`MITrace.save_residuals`."""
    from safetensors.torch import load_file

    return load_file(str(path))


def trace_steps(model: Any, new: Sequence[int], *, drop_eos: bool = False) -> list[int]:
    """The generated ids that are steps of a trace.

    Everything up to and including the first EOS: the step whose prediction is EOS is kept, as the
    reference code keeps it; ``drop_eos=True`` drops it (one step is always kept: an EOS-only
    generation keeps it).

    Example:
        >>> trace_steps(model, [5, 7, eos, eos])                  # doctest: +SKIP
        [5, 7, eos]
        >>> trace_steps(model, [5, 7, eos], drop_eos=True)        # doctest: +SKIP
        [5, 7]
    """
    eos = generation.eos_id(model)
    new = [int(t) for t in new]
    if eos is not None and eos in new:
        new = new[: new.index(eos) + 1]
    gen = new
    if drop_eos:
        gen = [t for t in new if t != eos] or new[:1]
    if not gen:  # nothing generated at all: one step, the EOS (or pad) prediction
        gen = [eos if eos is not None else generation.pad_id(model)]
    return gen


def strip_eos(model: Any, new: Sequence[int]) -> list[int]:
    """Generated ids without EOS (``trace_steps(..., drop_eos=True)``)."""
    return trace_steps(model, new, drop_eos=True)
