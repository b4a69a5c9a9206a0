"""Helpers of the accuracy experiments (fig5 suppression, fig6 recycling, fig7 TTTS).

Example:
    >>> model = ctx.load(ctx.model)                                        # doctest: +SKIP
    >>> items = load_dataset("organism", n=10)                             # doctest: +SKIP
    >>> acc = [r["correct"] for r in generate_and_grade(ctx, model, "organism", items)]
    ... # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tl_thinktok import organism
from tl_thinktok.datasets import Item, grade, prompt_for
from tl_thinktok.generation import decode, encode, greedy_batch
from tl_thinktok.loading import model_fingerprint
from tl_thinktok.reproduce.context import ExpContext
from tl_thinktok.reproduce.rundirs import open_run
from tl_thinktok.runs import RunDir
from tl_thinktok.vocab import ThinkingTokens, vocab_index

__all__ = ["KIND_BUDGET", "PAPER_TOP_WORDS", "RR_TRIGGER_WORDS", "accuracy_run", "eval_prompt_ids",
           "generate_and_grade", "special_ids", "thinking_list"]  # fmt: skip

#: Top words at peaks reported by the paper (R1-Distill-Llama-8B), most frequent first.
PAPER_TOP_WORDS = ["So", "Let", "Hmm", "I", "That", "Okay", "The", "Now", "First", "But",
                   "Wait", "Since", "Then", "Therefore", "Maybe"]  # fmt: skip
#: Reference RR trigger words (first 10 alphabetic words of the reference list).
RR_TRIGGER_WORDS = ["So", "Let", "Hmm", "I", "The", "Okay", "That", "First", "Now", "Wait"]


def thinking_list(
    ctx: ExpContext, model: Any, words: Sequence[str] | None = None
) -> ThinkingTokens:
    """Ranked :class:`~tl_thinktok.vocab.ThinkingTokens` for a model.

    ``words`` given: those (in order). Else, the organism: its ``THINKING_WORDS`` (most frequent
    in its training traces first); other models: the fig4 list of this run
    (``<out>/fig4_thinking_tokens.jsonl``) if present, else the paper's reported list. Words the
    tokenizer cannot produce are dropped.

    Raises:
        ValueError: none of the words is a token of the tokenizer.
    """
    tok = model.tokenizer
    if words is None:
        jl = ctx.out / "fig4_thinking_tokens.jsonl"
        if ctx.is_organism:
            words = list(organism.THINKING_WORDS)
        elif jl.exists():
            return ThinkingTokens.load_jsonl(jl, tok)
        else:
            words = PAPER_TOP_WORDS
    index = vocab_index(tok)
    keep = [w for w in words if index.ids_for(w)]
    if not keep:
        raise ValueError(f"none of the thinking words {list(words)} is a token of this tokenizer")
    return ThinkingTokens.from_words(tok, keep)


def special_ids(model: Any) -> set[int]:
    """Ids of the tokenizer's special tokens (never banned by random controls)."""
    tok = model.tokenizer
    ids = set(getattr(tok, "all_special_ids", []) or [])
    for a in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        v = getattr(tok, a, None)
        if v is not None:
            ids.add(int(v))
    return ids


def eval_prompt_ids(ctx: ExpContext, model: Any, name: str, question: str) -> list[int]:
    """Prompt ids for the accuracy experiments (the model family's prompt)."""
    return encode(model, prompt_for(ctx.family(name), question))


#: Accuracy run kind → its generation budget (:meth:`ExpContext.budget`).
KIND_BUDGET = {"suppression": "suppression", "recycling": "rr", "ttts": "ttts_base"}


def accuracy_run(
    ctx: ExpContext, kind: str, extra: dict[str, Any], engine: str | None = None
) -> RunDir:
    """A resumable run directory for an accuracy experiment of ``ctx.model``, generating on
    ``engine`` (``None`` = ``ctx.engine``).

    Its pending items are evaluated by ``ctx.executor`` (serially when ``None``).

    Its ``max_new_tokens`` is the budget of ``kind`` (:data:`KIND_BUDGET`; else the running
    experiment's).
    """
    budget = KIND_BUDGET.get(kind)
    cfg = {
        "kind": kind,
        "model": ctx.model,
        "model_fingerprint": model_fingerprint(ctx.model),
        "seed": ctx.seed,
        "host": ctx.host,
        "max_new_tokens": ctx.budget(budget) if budget else ctx.size("max_new_tokens"),
        **extra,
    }
    engine = engine or ctx.engine
    if engine != "tl":  # "tl" runs keep their config (and their cached results)
        cfg["engine"] = engine
    run = open_run(ctx.run_dir, ctx.model, kind, cfg)
    run.executor = ctx.executor  # pending items: serial, Ray workers or one shard
    return run


def generate_and_grade(
    ctx: ExpContext,
    model: Any,
    dataset: str,
    items: Sequence[Item],
    hooks: Sequence[tuple[str, Callable]] = (),
    max_new_tokens: int | None = None,
    *,
    banned_ids: Sequence[int] = (),
    engine: str | None = None,
) -> list[dict[str, Any]]:
    """Greedy answers (batched) for ``items`` with ``hooks`` attached, graded.

    Without ``hooks`` the answers come from ``ctx.engine`` (:mod:`tl_thinktok.engines`), with
    ``banned_ids`` never generated; with ``hooks``, from TransformerLens (``tl``).

    Args:
        ctx: the context (batch size; budget of the running experiment by default).
        model: the model.
        dataset: dataset name (grading rule).
        items: problems.
        hooks: forward hooks attached during generation (``tl`` engine).
        banned_ids: ids the engine never generates (logits ``-inf``).
        engine: engine name (``None`` = ``ctx.engine``).
        max_new_tokens: generation budget (``None`` = ``ctx.size("max_new_tokens")``, the
            running experiment's budget).

    Returns:
        One ``{"id", "correct", "n_new"}`` dict per item.
    """
    prompts = [eval_prompt_ids(ctx, model, ctx.model, it.question) for it in items]
    out: list[dict[str, Any]] = []
    bs = ctx.size("batch_size")
    max_new = ctx.size("max_new_tokens") if max_new_tokens is None else max_new_tokens
    if hooks and banned_ids:
        raise ValueError("give hooks or banned_ids, not both")
    eng = ctx.engine_of(model, "tl" if hooks else engine)
    for s in range(0, len(items), bs):
        if hooks:
            gens = greedy_batch(model, prompts[s : s + bs], max_new, fwd_hooks=hooks)
        else:
            gens = eng.generate(prompts[s : s + bs], max_new, banned_ids=banned_ids)
        for it, g in zip(items[s : s + bs], gens, strict=True):
            text = decode(model, g)
            out.append(
                {"id": it.id, "correct": bool(grade(dataset, text, it.answer)), "n_new": len(g)}
            )
    return out
