"""Counterfactual importance of each step of a trace (Thought Anchors, arXiv 2506.19143).

For step ``t`` of a finished greedy trace: replace generated token ``t`` by a token drawn from the
model's own next-token distribution at that step with the original token excluded (renormalised,
temperature 1, a seeded generator per ``(seed, key, step)``), continue greedily from there within
the trace's budget, and grade the result. With ``n_samples`` draws::

    importance_t    = |acc(original) − mean_s acc(resample_s)|
    answer_change_t = mean_s [answer(resample_s) ≠ answer(original)]

``acc`` is the grader's 0/1 correctness (the project's ``datasets.grade``, or any callable on the
generated ids); ``answer_change`` needs no gold answer (it also separates steps of a model that is
wrong whatever happens). Thought Anchors resample the whole rest of a sentence-level step; here a
step is one token and the continuation is greedy, so the only randomness is the replacement.
A step whose distribution has no mass outside the original token (float64) is undefined: NaN.

The expensive measure: ``n_samples`` continuations per step, so it runs through a
:class:`~tl_thinktok.runs.RunDir` when given one (one fsync'd line per step; a rerun resumes).
Identical draws share one continuation.

Example:
    >>> from tl_thinktok.loading import load_model
    >>> from tl_thinktok.trace import MITrace
    >>> model = load_model("organism")
    >>> tr = MITrace.from_model(model, "Q: 2 + 3 = ?", "2 + 3 = 5.", max_new_tokens=8)
    >>> ci = CounterfactualImportance(n_samples=2, seed=0)
    >>> res = ci.estimate(model, tr.tokens, tr.prompt_len, lambda ids: 5 in ids, steps=[0, 1])
    >>> res.importance.shape
    (2,)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float

from tl_thinktok import generation, hosts
from tl_thinktok._io import JsonIO
from tl_thinktok._validate import as_f64_vector, as_token_ids, check_int
from tl_thinktok.runs import RunDir

__all__ = ["CounterfactualImportance", "CounterfactualResult", "step_seed"]


def step_seed(seed: int, key: str, step: int) -> int:
    """The generator seed of one step's draws (stable across processes and Python versions).

    Example:
        >>> step_seed(0, "a", 3) == step_seed(0, "a", 3) != step_seed(0, "a", 4)
        True
    """
    h = hashlib.sha256(f"{seed}\x00{key}\x00{step}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


@dataclass
class CounterfactualResult(JsonIO):
    """Counterfactual importance at some steps of one trace.

    Attributes:
        steps: the evaluated steps (ascending).
        importance: ``[n]`` ``|acc(original) − mean acc(resampled)|`` (float64; NaN undefined).
        acc_resampled: ``[n]`` mean correctness of the resampled continuations.
        answer_change: ``[n]`` fraction of resamples whose extracted answer differs.
        acc_original: the original trace's correctness (0 or 1).
        n_samples: draws per step.
        seed: base seed.
        replaced: per step, the replacement token drawn for each sample.
    """

    steps: list[int]
    importance: Float[np.ndarray, " n"]
    acc_resampled: Float[np.ndarray, " n"]
    answer_change: Float[np.ndarray, " n"]
    acc_original: float
    n_samples: int
    seed: int
    replaced: list[list[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.steps)
        for name in ("importance", "acc_resampled", "answer_change"):
            v = as_f64_vector(name, getattr(self, name))
            if v.size != n:
                raise ValueError(f"{name} has {v.size} values for {n} steps")
            setattr(self, name, v)

    def __len__(self) -> int:
        return len(self.steps)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CounterfactualResult:
        """Inverse of ``to_dict`` (``None`` → NaN)."""
        d = dict(data)
        for k in ("importance", "acc_resampled", "answer_change"):
            d[k] = [np.nan if v is None else v for v in d[k]]
        return super().from_dict(d)

    def dense(self, n_steps: int, what: str = "importance") -> np.ndarray:
        """``[n_steps]`` array of ``what`` with NaN at the steps not evaluated."""
        out = np.full(check_int("n_steps", n_steps, low=0), np.nan)
        out[self.steps] = getattr(self, what)
        return out

    def plot(self, ax: Any = None, *, title: str | None = None) -> Any:
        """Importance and answer change per evaluated step. Returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(9, 2.8))
        ax.plot(self.steps, self.importance, "o-", ms=3, lw=0.8, label="importance")
        ax.plot(self.steps, self.answer_change, "x", ms=3, color="tab:gray",
                label="answer change")  # fmt: skip
        ax.set_xlabel("generation step t")
        ax.set_ylabel("counterfactual importance")
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=7)
        if title:
            ax.set_title(title, fontsize=9)
        return ax


class CounterfactualImportance:
    """Resample one step, continue greedily, grade: how much the answer depends on that step.

    Args:
        n_samples: replacement draws per step (the sample budget: ``n_samples`` continuations of
            at most ``max_new_tokens − t − 1`` tokens per step).
        seed: base seed (each step's draws use :func:`step_seed`).
        batch_size: continuations per batched greedy call.

    Example:
        >>> ci = CounterfactualImportance(n_samples=4, seed=0)
        >>> res = ci.estimate(model, tr.tokens, tr.prompt_len, grade_ids,
        ...                   max_new_tokens=320, run=run, key=tr.id)   # doctest: +SKIP
    """

    def __init__(self, n_samples: int = 4, *, seed: int = 0, batch_size: int = 32) -> None:
        self.n_samples = check_int("n_samples", n_samples, low=1)
        self.seed = check_int("seed", seed)
        self.batch_size = check_int("batch_size", batch_size, low=1)

    def __repr__(self) -> str:
        return f"CounterfactualImportance(n_samples={self.n_samples}, seed={self.seed})"

    def config(self) -> dict[str, Any]:
        """What the results depend on (for a run directory's config)."""
        return {"kind": "counterfactual", "n_samples": self.n_samples, "seed": self.seed,
                "replacement": "model distribution without the original token, T=1",
                "continuation": "greedy"}  # fmt: skip

    def replacements(
        self, model: Any, tokens: Sequence[int], prompt_len: int, steps: Sequence[int], key: str
    ) -> list[list[int] | None]:
        """The seeded replacement draws of each step (``None``: no mass besides the original).

        One teacher-forced pass gives the next-token distributions (hooks attached to the model
        apply, as they do to the continuations).
        """
        ids = torch.tensor(tokens[:-1], dtype=torch.long, device=hosts.model_device(model))
        with torch.no_grad():
            logits = model(ids[None])[0]
        out: list[list[int] | None] = []
        for t in steps:
            p = torch.softmax(logits[prompt_len - 1 + t].double().cpu(), -1)
            p[tokens[prompt_len + t]] = 0.0
            if not float(p.sum()) > 0.0:
                out.append(None)
                continue
            g = torch.Generator().manual_seed(step_seed(self.seed, key, t))
            out.append(torch.multinomial(p, self.n_samples, True, generator=g).tolist())
        return out

    def _evaluate_steps(
        self,
        model: Any,
        tokens: list[int],
        prompt_len: int,
        steps: list[int],
        max_new: int,
        grade: Callable[[list[int]], bool],
        answer: Callable[[list[int]], Hashable] | None,
        key: str,
    ) -> list[dict[str, Any]]:
        """Per step: replacements, and each resample's correctness and extracted answer."""
        draws = self.replacements(model, tokens, prompt_len, steps, key)
        eos = generation.eos_id(model)
        units = sorted({(t, r) for t, rs in zip(steps, draws, strict=True) for r in rs or []})
        gen_of: dict[tuple[int, int], list[int]] = {}
        live = []
        for t, r in units:
            head = tokens[prompt_len : prompt_len + t] + [r]
            if r == eos or max_new - t - 1 <= 0:
                gen_of[(t, r)] = head
            else:
                live.append((t, r))
        for s in range(0, len(live), self.batch_size):
            chunk = live[s : s + self.batch_size]
            budget = max(max_new - t - 1 for t, _ in chunk)
            prefixes = [tokens[: prompt_len + t] + [r] for t, r in chunk]
            conts = generation.greedy_batch(model, prefixes, budget)
            for (t, r), c in zip(chunk, conts, strict=True):
                gen_of[(t, r)] = tokens[prompt_len : prompt_len + t] + [r] + c[: max_new - t - 1]
        rows = []
        for t, rs in zip(steps, draws, strict=True):
            gens = [gen_of[(t, r)] for r in rs or []]
            rows.append({
                "step": t,
                "replaced": rs or [],
                "correct": [bool(grade(g)) for g in gens],
                "answers": [None if answer is None else _jsonable(answer(g)) for g in gens],
            })  # fmt: skip
        return rows

    def estimate(
        self,
        model: Any,
        tokens: Sequence[int],
        prompt_len: int,
        grade: Callable[[list[int]], bool],
        *,
        answer: Callable[[list[int]], Hashable] | None = None,
        steps: Sequence[int] | None = None,
        max_new_tokens: int | None = None,
        run: RunDir | None = None,
        key: str = "trace",
        progress: bool = False,
    ) -> CounterfactualResult:
        """Counterfactual importance at ``steps`` of one finished trace.

        Args:
            model: HookedTransformer or TransformerBridge (hooks attached to it apply).
            tokens: ``prompt + generated`` ids of a greedy trace.
            prompt_len: number of prompt ids.
            grade: generated ids → correct (e.g. decode, then ``datasets.grade``).
            answer: generated ids → extracted final answer (for ``answer_change``; ``None``:
                answer change is NaN).
            steps: steps to evaluate (``None`` = all).
            max_new_tokens: the trace's generation budget (``None`` = its length); a
                continuation from step ``t`` gets ``max_new_tokens − t − 1`` tokens.
            run: a run directory to store each step in (resumable; keys ``"{key}:{step}"``).
            key: the trace's key (run keys and seeds).
            progress: progress bar.

        Returns:
            :class:`CounterfactualResult`.
        """
        ids = as_token_ids(tokens, name="tokens", allow_empty=False)
        prompt_len = check_int("prompt_len", prompt_len, low=1)
        n = len(ids) - prompt_len
        if n < 1:
            raise ValueError(f"prompt_len={prompt_len} leaves no generated token in {len(ids)}")
        max_new = n if max_new_tokens is None else check_int("max_new_tokens", max_new_tokens)
        if max_new < n:
            raise ValueError(f"max_new_tokens={max_new} is shorter than the trace ({n} steps)")
        todo = list(range(n)) if steps is None else sorted({check_int("step", s) for s in steps})
        bad = [s for s in todo if not 0 <= s < n]
        if bad:
            raise ValueError(f"steps {bad[:10]} are outside the trace ({n} steps)")
        key = str(key)
        per_call = max(1, self.batch_size // self.n_samples)

        def fn(batch: list[int]) -> list[dict[str, Any]]:
            return self._evaluate_steps(model, ids, prompt_len, list(batch), max_new, grade,
                                        answer, key)  # fmt: skip

        if run is None:
            rows = [r for s in range(0, len(todo), per_call) for r in fn(todo[s : s + per_call])]
        else:
            rows = run.map_batched(todo, key=lambda t: f"{key}:{t}", fn=fn, batch_size=per_call,
                                   desc=f"counterfactual {key}", progress=progress)  # fmt: skip
        orig = ids[prompt_len:]
        acc0 = float(bool(grade(orig)))
        ans0 = None if answer is None else _jsonable(answer(orig))
        imp, acc, chg = [], [], []
        for r in rows:
            c = np.asarray(r["correct"], dtype=np.float64)
            a = float(c.mean()) if c.size else np.nan
            acc.append(a)
            imp.append(abs(acc0 - a) if c.size else np.nan)
            if answer is None or not c.size:
                chg.append(np.nan)
            else:
                chg.append(float(np.mean([x != ans0 for x in r["answers"]])))
        return CounterfactualResult(
            steps=todo,
            importance=np.asarray(imp, dtype=np.float64),
            acc_resampled=np.asarray(acc, dtype=np.float64),
            answer_change=np.asarray(chg, dtype=np.float64),
            acc_original=acc0,
            n_samples=self.n_samples,
            seed=self.seed,
            replaced=[list(r["replaced"]) for r in rows],
        )


def _jsonable(a: Any) -> Any:
    """An extracted answer as a JSON value (run files): numbers and strings kept, else str."""
    if a is None or isinstance(a, (bool, int, float, str)):
        return a
    return str(a)
