"""``reproduce --plan``: the work of a run (items × tokens per experiment) and a device-hour
estimate from a short measured tokens/s probe, printed before anything long starts.

Every experiment is covered: the trace pass (reasoning and base model) of the experiments that
read it, table3's extra datasets, theorem_bounds' answer scoring at every thinking step,
answer_control's MI against other answers (no generation: listed with 0 tokens), importance's
counterfactual continuations and its all-block forward per trace, and the accuracy runs of
fig5-7. The experiments that only read the trace pass are named below the table.

Example:
    >>> from tl_thinktok.reproduce.context import ExpContext
    >>> plan = make_plan(ExpContext(model="organism", quick=True), ["fig6"], probe=False)
    >>> [(w.experiment, w.items, w.tokens_per_item) for w in plan.lines]
    [('fig6', 8, 320)]
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tl_thinktok._io import JsonIO

__all__ = ["TRACE_EXPERIMENTS", "WorkLine", "WorkPlan", "make_plan", "probe_tokens_per_s"]

#: Experiments that read the trace pass of the reasoning model.
TRACE_EXPERIMENTS = ("fig2", "table1", "fig3_table2", "fig4", "figs9_20", "theorem_bounds",
                     "peaks_robustness", "answer_control", "table3", "importance")  # fmt: skip
#: Experiments that also read the base model's traces (when there is a base model).
BASE_EXPERIMENTS = ("fig2", "table1", "fig3_table2", "fig4", "figs9_20")
#: Experiments whose only model work is the trace pass.
TRACE_ONLY = ("fig2", "table1", "fig3_table2", "fig4", "figs9_20", "peaks_robustness")


@dataclass
class WorkLine(JsonIO):
    """One kind of work: ``items`` generations of up to ``tokens_per_item`` tokens each.

    Attributes:
        experiment: experiment(s) it serves.
        what: description.
        items: number of generations.
        tokens_per_item: budget of each (upper bound; greedy runs may stop earlier); 1 for a
            teacher-forced forward, 0 for work without the model (MI only).
    """

    experiment: str
    what: str
    items: int
    tokens_per_item: int

    @property
    def tokens(self) -> int:
        """Total generated tokens (upper bound)."""
        return self.items * self.tokens_per_item


@dataclass
class WorkPlan(JsonIO):
    """The work of a ``reproduce`` run and its device-hour estimate.

    Attributes:
        model: reasoning model.
        lines: the work, per experiment.
        tokens_per_s: measured generation throughput (``None`` = not probed).
        probe: how it was measured (batch, tokens, seconds, device).
        trace_only: selected experiments whose only model work is the trace pass.
    """

    model: str
    lines: list[WorkLine] = field(default_factory=list)
    trace_only: list[str] = field(default_factory=list)
    tokens_per_s: float | None = None
    probe: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (work lines as dicts, totals added)."""
        d = super().to_dict()
        d["lines"] = [w.to_dict() for w in self.lines]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkPlan:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["lines"] = [WorkLine.from_dict(w) for w in data.get("lines", [])]
        return super().from_dict(data)

    @property
    def total_tokens(self) -> int:
        """Generated tokens of the whole run (upper bound)."""
        return sum(w.tokens for w in self.lines)

    @property
    def device_hours(self) -> float:
        """Estimated device-hours (NaN when not probed)."""
        if not self.tokens_per_s:
            return math.nan
        return self.total_tokens / self.tokens_per_s / 3600.0

    def to_text(self) -> str:
        """The plan as a table."""
        rows = [f"{'experiment':<18} {'work':<44} {'items':>7} {'tokens':>8} {'total':>12}"]
        for w in self.lines:
            rows.append(f"{w.experiment:<18} {w.what:<44} {w.items:>7} {w.tokens_per_item:>8} "
                        f"{w.tokens:>12,}")  # fmt: skip
        rows.append(f"{'total':<18} {'':<44} {sum(w.items for w in self.lines):>7} {'':>8} "
                    f"{self.total_tokens:>12,}")  # fmt: skip
        if self.trace_only:
            rows.append(f"the trace pass is all the model work of: {', '.join(self.trace_only)}")
        if self.tokens_per_s:
            p = self.probe
            rows.append(
                f"probe: {self.tokens_per_s:,.1f} tokens/s (batch {p.get('batch')}, "
                f"{p.get('tokens')} tokens, {p.get('seconds', 0):.2f} s on {p.get('device')}, "
                f"engine {p.get('engine', 'tl')})"
            )
            rows.append(
                f"estimate: {self.device_hours:,.2f} device-hours at that rate (budgets are upper "
                f"bounds; long contexts decode slower, so treat it as a rough guide); divide by "
                f"--workers for wall-clock hours"
            )
        return "\n".join(rows)


def make_plan(ctx: Any, names: Sequence[str], probe: bool = True) -> WorkPlan:
    """The work of running experiments ``names`` with ``ctx`` (and a throughput probe).

    Args:
        ctx: an ``ExpContext``.
        names: experiment names (resolved).
        probe: measure tokens/s (loads the model and generates a few tokens).
    """
    lines: list[WorkLine] = []
    if any(n in TRACE_EXPERIMENTS for n in names):
        used = "traces"
        lines.append(WorkLine(used, f"traces of {ctx.model} on {ctx.dataset}",
                              int(ctx.size("n_traces")), ctx.budget("traces")))  # fmt: skip
        if ctx.base_model and any(n in BASE_EXPERIMENTS for n in names):
            n_base = int(ctx.size("n_base_traces"))
            what = f"traces of {ctx.base_model}"
            lines.append(WorkLine(used, what, n_base, ctx.budget("traces")))
    if "table3" in names:
        from tl_thinktok.reproduce.experiments.table3 import datasets_of

        n_extra = min(int(ctx.size("n_traces")), int(ctx.size("n_extra")))
        for ds in datasets_of(ctx):
            if ds != ctx.dataset:
                lines.append(WorkLine("table3", f"traces of {ctx.model} on {ds}", n_extra,
                                      ctx.budget("traces")))  # fmt: skip
    if "theorem_bounds" in names:
        from tl_thinktok.reproduce.experiments.theorem_bounds import size as bounds_size

        n = int(bounds_size(ctx, "n_traces"))
        cuts = ctx.budget("traces") + 1  # every thinking step (upper bound: the trace budget)
        lines.append(WorkLine("theorem_bounds", f"answer scoring: up to {cuts} cuts x {n} traces "
                              "(teacher-forced)", n * cuts, 1))  # fmt: skip
    if "answer_control" in names:
        from tl_thinktok.reproduce.experiments.answer_control import K_OTHERS

        k = K_OTHERS[ctx.mode]
        lines.append(WorkLine("answer_control", f"MI vs {k} other answers per trace (no model)",
                              k * int(ctx.size("n_traces")), 0))  # fmt: skip
    if "importance" in names:
        from tl_thinktok.reproduce.experiments.importance import size

        n_tr = int(size(ctx, "n_traces"))
        k = size(ctx, "ci_steps")
        budget = ctx.budget("traces")
        # every step (k None): up to `budget` steps, the one from step t continues budget - t - 1
        # tokens (mean (budget + 1) / 2 with the replaced token); chosen steps: up to the budget
        steps, per = (budget, (budget + 1) // 2) if k is None else (int(k), budget)
        draws = int(size(ctx, "n_samples"))
        lines.append(WorkLine("importance", f"counterfactual: {steps} steps x {draws} draws x "
                              "traces", n_tr * steps * draws, per))  # fmt: skip
        lines.append(WorkLine("importance", "entropy + lens depth: all blocks (forward)", n_tr,
                              1))  # fmt: skip
    if "fig5" in names:
        k_max = int(ctx.size("k_max"))
        ks = sorted({min(int(k), k_max) for k in (ctx.size("k_values") or range(k_max + 1))})
        kr = ctx.size("k_random")
        k_random = set(ks) if kr is None else {min(int(k), k_max) for k in kr}
        n_random = max(3, int(ctx.size("n_random")))
        units = len(ks) + n_random * len([k for k in ks if k > 0 and k in k_random])
        for ds in ctx.eval_datasets:
            lines.append(
                WorkLine(
                    "fig5",
                    f"suppression on {ds}: {units} conditions",
                    units * int(ctx.size("n_eval")),
                    ctx.budget("suppression"),
                )
            )
    if "fig6" in names:
        lines.append(WorkLine("fig6", f"original + RR on {ctx.rr_dataset}",
                              2 * int(ctx.size("n_rr")), ctx.budget("rr")))  # fmt: skip
    if "fig7" in names:
        from tl_thinktok.reproduce.context import PAPER_BUDGETS

        conds = 1 + len(ctx.size("ttts_words"))
        answer = ctx.budget("ttts_answer")
        for ds in ctx.eval_datasets:
            budgets = list(ctx.size("budgets") or PAPER_BUDGETS.get(ds, []))
            n = int(ctx.size("n_ttts"))
            for b in budgets:
                lines.append(WorkLine("fig7", f"TTTS on {ds}, budget {b}: {conds} conditions",
                                      conds * n, b + answer))  # fmt: skip
    trace_only = [n for n in names if n in TRACE_ONLY]
    plan = WorkPlan(model=ctx.model, lines=lines, trace_only=trace_only)
    if probe and lines:
        plan.tokens_per_s, plan.probe = probe_tokens_per_s(ctx)
    return plan


def probe_tokens_per_s(ctx: Any, n_tokens: int = 16) -> tuple[float, dict[str, Any]]:
    """Measured greedy tokens/s of ``ctx.model`` on the run's engine (``ctx.engine``) at the run's
    batch size, after one warm-up (which also builds the engine: a vLLM engine's start-up is not
    counted)."""
    from tl_thinktok import hosts
    from tl_thinktok.datasets import load_dataset, prompt_for
    from tl_thinktok.generation import encode

    model = ctx.load(ctx.model)
    engine = ctx.engine_of(model)
    batch = int(ctx.size("batch_size"))
    items = load_dataset(ctx.dataset, n=batch, seed=ctx.seed)
    prompts = [encode(model, prompt_for(ctx.family(ctx.model), it.question)) for it in items]
    prompts = (prompts * batch)[:batch]
    engine.generate(prompts, 2, stop_at_eos=False)  # warm-up
    t0 = time.perf_counter()
    gens = engine.generate(prompts, n_tokens, stop_at_eos=False)
    dt = time.perf_counter() - t0
    made = sum(len(g) for g in gens) or 1
    dev = str(hosts.model_device(model)) if hasattr(hosts, "model_device") else str(ctx.device)
    probe = {"batch": batch, "tokens": made, "seconds": dt, "device": dev, "engine": engine.name}
    return made / dt, probe
