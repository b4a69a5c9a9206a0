"""reproduce --plan: items x tokens per experiment from the sizes and budgets, a measured probe."""

from __future__ import annotations

import math

from tl_thinktok.reproduce.cli import reproduce_main
from tl_thinktok.reproduce.context import PAPER_BUDGETS, ExpContext
from tl_thinktok.reproduce.distributed import WorkPlan, make_plan


def test_plan_counts_follow_sizes_and_budgets():
    ctx = ExpContext(model="organism", quick=True)
    plan = make_plan(ctx, ["table1", "fig3_table2", "fig5", "fig6", "fig7"], probe=False)
    by = {(w.experiment, w.what): w for w in plan.lines}
    tr = [w for w in plan.lines if w.experiment == "traces"]
    assert [w.items for w in tr] == [ctx.size("n_traces"), ctx.size("n_base_traces")]
    assert all(w.tokens_per_item == ctx.budget("traces") for w in tr)
    # quick organism fig5: ks [0, 4, 12], 3 random draws at k=12 -> 3 + 3 conditions
    assert ctx.size("k_values") == [0, 4, 12] and ctx.size("k_random") == [12]
    (f5,) = [w for w in plan.lines if w.experiment == "fig5"]
    assert f5.items == 6 * ctx.size("n_eval") and f5.tokens_per_item == ctx.budget("fig5")
    (f6,) = [w for w in plan.lines if w.experiment == "fig6"]
    assert f6.items == 2 * ctx.size("n_rr") and f6.tokens_per_item == ctx.budget("rr")
    f7 = [w for w in plan.lines if w.experiment == "fig7"]
    assert [w.tokens_per_item for w in f7] == [b + 8 for b in ctx.size("budgets")]
    assert plan.total_tokens == sum(w.items * w.tokens_per_item for w in plan.lines)
    assert math.isnan(plan.device_hours) and len(by) == len(plan.lines)


def test_plan_uses_paper_budgets_for_real_models():
    ctx = ExpContext(model="deepseek-ai/DeepSeek-R1-Distill-Llama-8B")
    plan = make_plan(ctx, ["fig6", "fig7"], probe=False)
    assert plan.lines[0].tokens_per_item == 16000
    f7 = [w.tokens_per_item for w in plan.lines if w.experiment == "fig7" and "aime24" in w.what]
    assert f7 == [b + 16 for b in PAPER_BUDGETS["aime24"]]


def test_cli_plan_probes_and_saves(tmp_path, capsys):
    out = tmp_path / "out"
    assert reproduce_main(["--quick", "--plan", "--only", "fig6", "--out", str(out),
                           "--run-dir", str(tmp_path / "runs"), "--no-progress"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "tokens/s" in text and "device-hours" in text
    plan = WorkPlan.load(out / "plan.json")
    assert plan.tokens_per_s > 0 and plan.device_hours > 0
    assert plan.total_tokens == plan.lines[0].items * plan.lines[0].tokens_per_item
    assert not (tmp_path / "runs").exists()  # nothing ran
    assert plan.probe["engine"] == "tl" and "engine tl" in text


def test_plan_probe_runs_on_the_chosen_engine():
    from tl_thinktok.reproduce.distributed.plan import probe_tokens_per_s

    ctx = ExpContext(model="organism", quick=True, engine="hf")
    rate, probe = probe_tokens_per_s(ctx, n_tokens=4)
    # stop_at_eos=False: every row makes exactly n_tokens, so the rate counts decode steps
    assert probe["engine"] == "hf" and probe["tokens"] == 4 * probe["batch"]
    assert rate == probe["tokens"] / probe["seconds"] > 0


def test_plan_covers_figs9_20_theorem_bounds_answer_control_and_table3():
    ctx = ExpContext(model="organism", quick=True)
    names = ["figs9_20", "theorem_bounds", "answer_control", "table3"]
    plan = make_plan(ctx, names, probe=False)
    by: dict[str, list] = {}
    for w in plan.lines:
        by.setdefault(w.experiment, []).append(w)
    # figs9_20 draws the base model's grid too: both trace passes
    assert [w.items for w in by["traces"]] == [ctx.size("n_traces"), ctx.size("n_base_traces")]
    # quick organism: 8 traces scored teacher-forced at every cut 0 .. budget (one forward each)
    assert ctx.size("n_traces") == 8
    assert [(w.items, w.tokens_per_item) for w in by["theorem_bounds"]] == [
        (8 * (ctx.budget("traces") + 1), 1)
    ]
    (ac,) = by["answer_control"]  # quick: 5 other answers per trace, MI only
    assert ac.items == 5 * 8 and ac.tokens == 0
    (t3,) = by["table3"]  # the organism's extra bundled dataset: GSM8K, 3 traces in quick mode
    assert "gsm8k" in t3.what and t3.items == 3 and t3.tokens_per_item == ctx.budget("traces")
    assert set(by) == {"traces", "theorem_bounds", "answer_control", "table3"}
    assert plan.trace_only == ["figs9_20"]
    assert "the trace pass is all the model work of: figs9_20" in plan.to_text()
    assert WorkPlan.from_dict(plan.to_dict()) == plan
    # without a base model, one trace pass; a real model's bounds score its traces too
    alone = make_plan(ExpContext(model="organism", base_model="none", quick=True), ["figs9_20"],
                      probe=False)  # fmt: skip
    assert [w.experiment for w in alone.lines] == ["traces"]
    real = make_plan(ExpContext(model="deepseek-ai/DeepSeek-R1-Distill-Llama-8B"),
                     ["theorem_bounds"], probe=False)  # fmt: skip
    assert [w.experiment for w in real.lines] == ["traces", "theorem_bounds"]
