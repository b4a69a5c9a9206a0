"""``Engine``: one greedy generator of token ids for a loaded model (subclass per engine)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from tl_thinktok import generation
from tl_thinktok._validate import as_token_ids, check_int

__all__ = ["Engine", "EngineUnavailable"]


class EngineUnavailable(RuntimeError):
    """An engine cannot run this model here (not installed, unsupported model or dtype)."""


class Engine(ABC):
    """Greedy generation of new token ids for ``model``'s prompts.

    Subclasses implement :meth:`_generate`; this class checks the input, clips the budget to the
    model's context (as :func:`tl_thinktok.generation.greedy_batch`) and cuts each row after its
    first EOS.

    Attributes:
        name: engine name (``"tl"``, ``"hf"``, ``"vllm"``), recorded on every trace.
        hooks: whether TransformerLens hooks attached to the model apply (only ``"tl"``).
    """

    name: ClassVar[str]
    hooks: ClassVar[bool] = False

    def __init__(self, model: Any) -> None:
        self.model = model

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__})"

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        *,
        banned_ids: Sequence[int] = (),
        stop_ids: Sequence[int] = (),
        stop_at_eos: bool = True,
    ) -> list[list[int]]:
        """Greedy new ids per prompt (EOS included when produced and ``stop_at_eos``).

        Args:
            prompts: token ids per prompt (each non-empty).
            max_new_tokens: new tokens per prompt (clipped to the context room).
            banned_ids: ids never generated (their logits are ``-inf`` at every step).
            stop_ids: more ids that end a row (included), as EOS does.
            stop_at_eos: stop a row at EOS.

        Example:
            >>> get_engine(model, "tl").generate([[1, 5, 7]], 8)   # doctest: +SKIP
        """
        max_new_tokens = check_int("max_new_tokens", max_new_tokens, low=0)
        rows = [as_token_ids(p, name="prompt", allow_empty=False) for p in prompts]
        if not rows:
            return []
        banned = sorted(set(as_token_ids(list(banned_ids), name="banned_ids")))
        stops = sorted(set(as_token_ids(list(stop_ids), name="stop_ids")))
        budget = generation.clip_budget(self.model, rows, max_new_tokens)
        if budget <= 0:
            return [[] for _ in rows]
        out = self._generate(rows, budget, banned, stops, stop_at_eos)
        eos = generation.eos_id(self.model)
        ends = set(stops) | ({eos} if stop_at_eos and eos is not None else set())
        return [_cut(r, ends) for r in out]

    @abstractmethod
    def _generate(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        banned: list[int],
        stops: list[int],
        stop_at_eos: bool,
    ) -> list[list[int]]:
        """New ids per prompt (checked input, budget >= 1; rows are cut at ends afterwards)."""

    def close(self) -> None:  # noqa: B027 - optional for subclasses
        """Release what the engine holds (default: nothing)."""


def _cut(row: list[int], ends: set[int]) -> list[int]:
    """``row`` up to and including its first id in ``ends``."""
    for i, t in enumerate(row):
        if t in ends:
            return row[: i + 1]
    return row
