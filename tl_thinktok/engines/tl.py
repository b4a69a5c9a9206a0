"""``TLEngine``: TransformerLens ``generate`` (every attached hook and SAE applies)."""

from __future__ import annotations

from tl_thinktok import generation
from tl_thinktok.engines.base import Engine

__all__ = ["TLEngine"]


class TLEngine(Engine):
    """The host's own ``generate`` (:func:`tl_thinktok.generation.greedy_batch`).

    Bans run as a :class:`~tl_thinktok.interventions.suppress.SuppressTokens` hook.

    Example:
        >>> TLEngine(model).generate([[1, 5, 7]], 8)   # doctest: +SKIP
    """

    name = "tl"
    hooks = True

    def _generate(self, prompts, max_new_tokens, banned, stops, stop_at_eos):  # noqa: D102
        from tl_thinktok.interventions.suppress import SuppressTokens

        hooks = SuppressTokens(banned).fwd_hooks(self.model) if banned else []
        return generation.greedy_batch(
            self.model, prompts, max_new_tokens, fwd_hooks=hooks, stop_at_eos=stop_at_eos,
            stop_ids=stops,
        )  # fmt: skip
