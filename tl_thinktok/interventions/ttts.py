"""Thinking-token test-time scaling (TTTS) and s1-style budget forcing (PAPER.md §6, Fig. 7).

Two styles, both greedy and both through ``model.generate``. Interventions compose through
``components=`` (e.g. a :class:`~tl_thinktok.interventions.suppress.SuppressTokens` ban and
:class:`~tl_thinktok.interventions.recycle.RepresentationRecycling`: reset once at the start, then
attached with :func:`~tl_thinktok.interventions.base.attach_all` around every ``generate`` call)
and raw TransformerLens hooks through ``fwd_hooks=``:

* :func:`budget_forcing` (s1, Muennighoff et al. 2025): when the model ends its thinking (end
  marker or EOS) before ``min_thinking_tokens``, drop the end, append the thinking word ("Wait")
  and continue; at ``max_thinking_tokens`` force the end marker and the answer prefix. The thinking
  segment (appended words included) never exceeds ``max_thinking_tokens``, the remaining budget is
  never negative, and the answer phase always runs.
* :func:`reference_ttts` (Qian et al. reference code): prompt text
  ``f"{question} {answer_so_far.strip()} {word}"``, tokenised as a whole; generate
  ``token_budget`` more tokens, then append ``" Final Answer within \\boxed{}:"`` and generate
  ``answer_tokens`` tokens. :func:`reference_ttts_batch` runs many of them at once (one
  left-padded batch per phase); each result equals :func:`reference_ttts` on that row alone.

The model only needs ``model.tokenizer`` (a HF tokenizer) and ``model.generate(tokens, *,
max_new_tokens, do_sample, stop_at_eos, eos_token_id, verbose)`` as in TransformerLens (both
``HookedTransformer`` and ``TransformerBridge``), plus ``model.hooks(fwd_hooks=...)`` when hooks
are given; components need a real host.

Example:
    >>> res = budget_forcing(model, "Q: 2+3?\\n<think>", min_thinking_tokens=64,
    ...                      max_thinking_tokens=256, max_answer_tokens=16)   # doctest: +SKIP
    >>> res.thinking_tokens_used <= 256, res.budget_left >= 0                  # doctest: +SKIP
    (True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from tl_thinktok._io import JsonIO
from tl_thinktok._validate import check_int
from tl_thinktok.generation import greedy_batch
from tl_thinktok.hosts.versions import quiet_cache_rename
from tl_thinktok.interventions.base import Component, attach_all

__all__ = ["TTTSResult", "budget_forcing", "reference_ttts", "reference_ttts_batch"]


@dataclass
class TTTSResult(JsonIO):
    """Outcome of one TTTS / budget-forcing run.

    Attributes:
        text: the full decoded text (prompt, thinking, end marker / final prompt, answer).
        thinking_text: decoded thinking segment (generated tokens plus appended words).
        answer_text: decoded answer (generated after the answer prefix / final prompt).
        thinking_tokens_used: tokens in the thinking segment (appended words included).
        words_appended: how many times the thinking word was appended.
        budget_left: ``max_thinking_tokens - thinking_tokens_used`` (never negative).
        forced_end: True when the thinking budget ran out and the end was forced.
        style: ``"budget_forcing"`` or ``"reference"``.
        answer_tokens_used: tokens generated in the answer phase.

    ``save(path)`` writes JSON (folders created) and returns the path; ``load(path)`` reads it.

    Example:
        >>> r = TTTSResult("t", "t", "4", 3, 1, 5, False, "reference", 1)
        >>> r.budget_left
        5
    """

    text: str
    thinking_text: str
    answer_text: str
    thinking_tokens_used: int
    words_appended: int
    budget_left: int
    forced_end: bool
    style: str
    answer_tokens_used: int = 0


def _tokenizer(model: Any) -> Any:
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        raise ValueError("model has no tokenizer (model.tokenizer is None)")
    if getattr(tok, "eos_token_id", None) is None:
        raise ValueError("the tokenizer has no eos_token_id; TTTS needs one to detect endings")
    return tok


def _encode(tok: Any, text: str) -> list[int]:
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}")
    return [int(i) for i in tok(text, add_special_tokens=False)["input_ids"]]


def _start_components(components: Sequence[Component]) -> tuple[Component, ...]:
    """Check the components and reset them once for the whole run."""
    parts = tuple(components)
    for c in parts:
        if not isinstance(c, Component):
            raise TypeError(f"components must be Component instances, got {type(c).__name__}")
    for c in parts:
        c.reset()
    return parts


def _device(model: Any) -> Any:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return "cpu"


def _generate(
    model: Any,
    ids: list[int],
    max_new: int,
    stop_ids: Sequence[int],
    fwd_hooks: Sequence[tuple[str, Callable]],
    components: tuple[Component, ...] = (),
    engine: Any = None,
) -> list[int]:
    """Greedy ``model.generate`` from ``ids``; returns the new tokens (stop token included).

    Raw hooks are installed first, then the components (not reset: they count over the run).
    With ``engine`` (a :class:`~tl_thinktok.engines.Engine`, no hooks) that engine generates.
    """
    if max_new <= 0:
        return []
    if engine is not None:
        return engine.generate([ids], max_new, stop_ids=stop_ids)[0][:max_new]
    tokens = torch.tensor([ids], dtype=torch.long, device=_device(model))
    ctx = model.hooks(fwd_hooks=list(fwd_hooks)) if fwd_hooks else nullcontext()
    parts = attach_all(model, *components, reset=False) if components else nullcontext()
    with ctx, parts, quiet_cache_rename():
        out = model.generate(
            tokens,
            max_new_tokens=max_new,
            do_sample=False,
            stop_at_eos=True,
            eos_token_id=list(stop_ids),
            verbose=False,
        )
    return [int(t) for t in out[0, len(ids) :].tolist()][:max_new]


def _find_end(new: list[int], eos: int, end_ids: list[int]) -> int | None:
    """Index of the first EOS or end-marker occurrence in ``new`` (None if absent)."""
    k = len(end_ids)
    for i, t in enumerate(new):
        if t == eos or (k and new[i : i + k] == end_ids):
            return i
    return None


def budget_forcing(
    model: Any,
    prompt: str,
    *,
    thinking_word: str = "Wait",
    end_marker: str = "</think>",
    min_thinking_tokens: int = 0,
    max_thinking_tokens: int,
    answer_prefix: str = "Final Answer:",
    max_answer_tokens: int = 32,
    max_extensions: int | None = None,
    fwd_hooks: Sequence[tuple[str, Callable]] = (),
    prepend_bos: bool | None = None,
    components: Sequence[Component] = (),
    engine: Any = None,
) -> TTTSResult:
    """s1-style budget forcing: a minimum and a maximum thinking budget, then an answer.

    Args:
        model: TransformerLens model with a tokenizer (or anything with the same API).
        prompt: the prompt text (it should open the thinking segment, e.g. end with "<think>").
        thinking_word: appended (after a space) in place of an early end of thinking.
        end_marker: text that closes the thinking segment (also forced at the budget).
        min_thinking_tokens: an end before this many thinking tokens is replaced by the word.
        max_thinking_tokens: hard cap on the thinking segment (appended words count).
        answer_prefix: text appended after the end marker before the answer is generated.
        max_answer_tokens: tokens generated for the answer (>= 1: an answer is always produced).
        max_extensions: at most this many words are appended (None: unlimited).
        fwd_hooks: TransformerLens hooks active during every generation call.
        prepend_bos: prepend BOS to the prompt (None: ``model.cfg.default_prepend_bos``).
        components: tl-thinktok components (ban, RR, probe …), reset once, then attached
            together (``attach_all``) around every generation call.
        engine: generation engine of every call (``None`` / ``"tl"``: the model's own
            ``generate``; ``"hf"``, ``"vllm"`` or an :class:`~tl_thinktok.engines.Engine`:
            stop, append and continue run there; no hooks or components then).

    Returns:
        :class:`TTTSResult` with ``style="budget_forcing"``.

    Raises:
        ValueError: negative / inconsistent budgets, ``max_answer_tokens < 1``, no tokenizer.

    Example:
        >>> r = budget_forcing(model, "Q: 2+3? <think>", min_thinking_tokens=8,
        ...                    max_thinking_tokens=32, max_answer_tokens=4)   # doctest: +SKIP
        >>> r.forced_end, r.words_appended                                    # doctest: +SKIP
        (False, 2)
    """
    check_int("min_thinking_tokens", min_thinking_tokens, low=0)
    check_int("max_thinking_tokens", max_thinking_tokens, low=0)
    check_int("max_answer_tokens", max_answer_tokens, low=1)
    if max_extensions is not None:
        check_int("max_extensions", max_extensions, low=0)
    if min_thinking_tokens > max_thinking_tokens:
        raise ValueError(
            f"min_thinking_tokens ({min_thinking_tokens}) exceeds max_thinking_tokens "
            f"({max_thinking_tokens})"
        )
    tok = _tokenizer(model)
    eos = int(tok.eos_token_id)
    end_ids = _encode(tok, end_marker)
    word_ids = _encode(tok, " " + thinking_word)
    if not word_ids:
        raise ValueError(f"thinking_word {thinking_word!r} tokenises to nothing")
    if prepend_bos is None:
        prepend_bos = bool(getattr(getattr(model, "cfg", None), "default_prepend_bos", False))
    bos = getattr(tok, "bos_token_id", None)
    context = ([int(bos)] if prepend_bos and bos is not None else []) + _encode(tok, prompt)
    stop = [eos] + (end_ids if len(end_ids) == 1 else [])
    if engine is not None and not (isinstance(engine, str) and engine == "tl"):
        from tl_thinktok.engines import get_engine

        if fwd_hooks or components:
            raise ValueError("hooks and components run on TransformerLens only: engine='tl'")
        engine = get_engine(model, engine)
    else:
        engine = None
    parts = _start_components(components)

    thinking: list[int] = []
    words = 0
    forced = False
    while True:
        remaining = max_thinking_tokens - len(thinking)
        if remaining <= 0:
            forced = True
            break
        new = _generate(model, context + thinking, remaining, stop, fwd_hooks, parts, engine)
        cut = _find_end(new, eos, end_ids)
        thinking += new if cut is None else new[:cut]
        if cut is None:  # the budget ran out before any end
            forced = True
            break
        can_extend = max_extensions is None or words < max_extensions
        fits = len(thinking) + len(word_ids) <= max_thinking_tokens
        if len(thinking) < min_thinking_tokens and can_extend and fits:
            thinking += word_ids
            words += 1
            continue
        break
    answer_ctx = context + thinking + end_ids + _encode(tok, answer_prefix)
    answer = _generate(model, answer_ctx, max_answer_tokens, [eos], fwd_hooks, parts, engine)
    answer_clean = answer[:-1] if answer and answer[-1] == eos else answer
    return TTTSResult(
        text=tok.decode(answer_ctx + answer_clean),
        thinking_text=tok.decode(thinking),
        answer_text=tok.decode(answer_clean),
        thinking_tokens_used=len(thinking),
        words_appended=words,
        budget_left=max_thinking_tokens - len(thinking),
        forced_end=forced,
        style="budget_forcing",
        answer_tokens_used=len(answer),
    )


def reference_ttts(
    model: Any,
    question_text: str,
    answer_so_far: str,
    *,
    word: str,
    token_budget: int,
    final_prompt: str = " Final Answer within \\boxed{}:",
    answer_tokens: int = 16,
    fwd_hooks: Sequence[tuple[str, Callable]] = (),
    prepend_bos: bool | None = None,
    components: Sequence[Component] = (),
) -> TTTSResult:
    """The reference code's TTTS: continue after a thinking word, then ask for the final answer.

    Prompt = the text ``f"{question_text} {answer_so_far.strip()} {word}"`` tokenised anew (as the
    reference builds and re-tokenises it); generate up to ``token_budget``
    tokens (stopping at EOS); append ``final_prompt`` and generate ``answer_tokens`` tokens.

    Args:
        model: TransformerLens model with a tokenizer (or anything with the same API).
        question_text: the problem prompt.
        answer_so_far: the base generation so far (up to the base budget).
        word: the thinking word (So, Let, Hmm, I, Okay, First, Wait, But, Now, ...).
        token_budget: extra tokens after the word (``thinking_tokens_used`` counts them and the
            word's own tokens are not charged, as in the reference).
        final_prompt: appended before the answer is generated.
        answer_tokens: tokens generated for the answer (>= 1).
        fwd_hooks: TransformerLens hooks active during both generation calls.
        prepend_bos: prepend BOS (None: ``model.cfg.default_prepend_bos``).
        components: tl-thinktok components, reset once, attached around both generation calls.

    Returns:
        :class:`TTTSResult` with ``style="reference"``, ``words_appended == 1``.

    Example:
        >>> r = reference_ttts(model, "Q: 2+3?", " 2+3", word="Wait",
        ...                    token_budget=64)                       # doctest: +SKIP
        >>> r.budget_left >= 0                                        # doctest: +SKIP
        True
    """
    check_int("token_budget", token_budget, low=0)
    check_int("answer_tokens", answer_tokens, low=1)
    tok = _tokenizer(model)
    eos = int(tok.eos_token_id)
    prompt = _reference_prompt(model, tok, question_text, answer_so_far, word, prepend_bos)
    parts = _start_components(components)
    new = _generate(model, prompt, token_budget, [eos], fwd_hooks, parts)
    answer_ctx = prompt + _strip_end(new, eos) + _encode(tok, final_prompt)
    answer = _generate(model, answer_ctx, answer_tokens, [eos], fwd_hooks, parts)
    return _reference_result(tok, word, token_budget, new, answer_ctx, answer)


def _reference_prompt(
    model: Any, tok: Any, question: str, so_far: str, word: str, prepend_bos: bool | None
) -> list[int]:
    if not isinstance(word, str) or not word.strip():
        raise ValueError(f"word must be a non-empty string, got {word!r}")
    if prepend_bos is None:
        prepend_bos = bool(getattr(getattr(model, "cfg", None), "default_prepend_bos", False))
    bos = getattr(tok, "bos_token_id", None)
    head = [int(bos)] if prepend_bos and bos is not None else []
    return head + _encode(tok, f"{question} {so_far.strip()} {word}")  # the reference's text


def _strip_end(new: list[int], eos: int) -> list[int]:
    return new[:-1] if new and new[-1] == eos else new


def _reference_result(
    tok: Any, word: str, token_budget: int, new: list[int], answer_ctx: list[int], answer: list[int]
) -> TTTSResult:
    eos = int(tok.eos_token_id)
    ended = bool(new) and new[-1] == eos
    answer_clean = _strip_end(answer, eos)
    return TTTSResult(
        text=tok.decode(answer_ctx + answer_clean),
        thinking_text=tok.decode(_encode(tok, " " + word) + _strip_end(new, eos)),
        answer_text=tok.decode(answer_clean),
        thinking_tokens_used=len(new),
        words_appended=1,
        budget_left=token_budget - len(new),
        forced_end=not ended and len(new) == token_budget,
        style="reference",
        answer_tokens_used=len(answer),
    )


def _generate_batch(
    model: Any,
    prompts: list[list[int]],
    max_new: int,
    fwd_hooks: Sequence[tuple[str, Callable]],
    components: tuple[Component, ...],
) -> list[list[int]]:
    """Greedy left-padded batch from ``prompts`` (stops per row at EOS, EOS kept)."""
    if max_new <= 0:
        return [[] for _ in prompts]
    parts = attach_all(model, *components, reset=False) if components else nullcontext()
    with parts:
        return greedy_batch(model, prompts, max_new, fwd_hooks=fwd_hooks, stop_at_eos=True)


def reference_ttts_batch(
    model: Any,
    question_texts: Sequence[str],
    answers_so_far: Sequence[str],
    *,
    words: str | Sequence[str],
    token_budget: int,
    final_prompt: str = " Final Answer within \\boxed{}:",
    answer_tokens: int = 16,
    fwd_hooks: Sequence[tuple[str, Callable]] = (),
    prepend_bos: bool | None = None,
    components: Sequence[Component] = (),
) -> list[TTTSResult]:
    """:func:`reference_ttts` for many problems at once: one left-padded batch per phase.

    Result ``i`` equals ``reference_ttts`` on row ``i`` alone (tested on both hosts with a ban and
    Representation Recycling attached). Per-row state follows the rows: a
    :class:`~tl_thinktok.interventions.recycle.RepresentationRecycling` draws row ``i``'s coins
    from ``row_seed(i)`` in both phases, so row ``i`` equals the single run with
    ``seed=rr.row_seed(i)``; give it ``stop_token_ids=[eos]`` so that a row that ends early draws
    no coins after its EOS (as the single run, which stops there).

    Args:
        model: TransformerLens model with a tokenizer.
        question_texts: the problem prompts.
        answers_so_far: the base generations so far (one per question).
        words: the thinking word, or one word per question.
        token_budget: extra tokens after the word (as :func:`reference_ttts`).
        final_prompt: appended before the answer is generated.
        answer_tokens: tokens generated for each answer (>= 1).
        fwd_hooks: TransformerLens hooks active during both generation calls.
        prepend_bos: prepend BOS (None: ``model.cfg.default_prepend_bos``).
        components: tl-thinktok components, reset once, attached around both batched calls.

    Returns:
        One :class:`TTTSResult` per question, in order.

    Raises:
        ValueError: lists of different lengths, an empty word, bad budgets.

    Example:
        >>> rs = reference_ttts_batch(model, ["Q: 2+3?", "Q: 4+4?"], [" 2+3", " 4+4"],
        ...                           words="Wait", token_budget=32)    # doctest: +SKIP
        >>> len(rs)                                                     # doctest: +SKIP
        2
    """
    check_int("token_budget", token_budget, low=0)
    check_int("answer_tokens", answer_tokens, low=1)
    qs, sofar = list(question_texts), list(answers_so_far)
    ws = [words] * len(qs) if isinstance(words, str) else list(words)
    if not len(qs) == len(sofar) == len(ws):
        raise ValueError(
            f"got {len(qs)} questions, {len(sofar)} answers_so_far and {len(ws)} words; "
            "give one of each per problem"
        )
    if not qs:
        return []
    tok = _tokenizer(model)
    prompts = [
        _reference_prompt(model, tok, q, a, w, prepend_bos)
        for q, a, w in zip(qs, sofar, ws, strict=True)
    ]
    parts = _start_components(components)
    eos = int(tok.eos_token_id)
    news = _generate_batch(model, prompts, token_budget, fwd_hooks, parts)
    ctxs = [
        p + _strip_end(n, eos) + _encode(tok, final_prompt)
        for p, n in zip(prompts, news, strict=True)
    ]
    answers = _generate_batch(model, ctxs, answer_tokens, fwd_hooks, parts)
    return [
        _reference_result(tok, w, token_budget, n, c, a)
        for w, n, c, a in zip(ws, news, ctxs, answers, strict=True)
    ]
