"""Per-experiment generation budgets (ExpContext.budget): paper sizes, overrides, legacy key."""

from __future__ import annotations

import pytest

from tl_thinktok.reproduce.context import BUDGETS, EXPERIMENT_BUDGET, SIZES, ExpContext
from tl_thinktok.reproduce.registry import EXPERIMENTS, UnknownExperimentError


def hf_ctx(**kw) -> ExpContext:
    # a hub-like name: family "r1"/"reference", never loaded here
    return ExpContext(model="deepseek-ai/DeepSeek-R1-Distill-Llama-8B", **kw)


@pytest.mark.parametrize("mode", ["full", "quick"])
def test_organism_budgets_unchanged(mode):
    """Organism results stay identical: every generation budget is the former max_new_tokens,
    the TTTS answer the former hard-coded 8 tokens."""
    ctx = ExpContext(model="organism", quick=mode == "quick")
    legacy = SIZES[("organism", mode)]["max_new_tokens"]
    for name in BUDGETS:
        assert ctx.budget(name) == (8 if name == "ttts_answer" else legacy), name
    for exp in EXPERIMENTS:
        assert ctx.budget(exp) == legacy, exp


def test_paper_budgets_on_real_models():
    ctx = hf_ctx()
    assert ctx.budget("traces") == 512  # Fig. 2 / Table 1: steps 0-512
    assert ctx.budget("rr") == ctx.budget("fig6") == 16000  # RR: 16,000 greedy tokens
    assert ctx.budget("ttts_base") == ctx.budget("fig7") == 4096
    assert ctx.budget("ttts_answer") == 16  # reference: 16 answer tokens
    assert ctx.budget("table1") == ctx.budget("fig2") == ctx.budget("traces")
    assert ctx.budget("fig5") == ctx.budget("suppression")


def test_size_max_new_tokens_follows_running_experiment():
    ctx = hf_ctx()
    assert ctx.size("max_new_tokens") == ctx.budget("traces")
    for exp, b in EXPERIMENT_BUDGET.items():
        ctx.experiment = exp
        assert ctx.size("max_new_tokens") == ctx.budget(b)
    ctx.experiment = "table1"
    assert ctx.size("max_new_tokens") == 512


def test_override_precedence():
    ctx = hf_ctx(overrides={"max_new_tokens": 64, "budget_rr": 100})
    assert ctx.budget("rr") == 100  # the specific budget wins
    assert ctx.budget("traces") == ctx.budget("suppression") == ctx.budget("ttts_base") == 64
    assert ctx.budget("ttts_answer") == 16  # legacy key leaves the answer alone
    ctx.experiment = "fig6"
    assert ctx.size("max_new_tokens") == 100


def test_unknown_budget_is_a_clear_error():
    with pytest.raises(UnknownExperimentError, match="unknown experiment 'nope'"):
        ExpContext(model="organism").budget("nope")


def test_budget_keys_are_known_to_set():
    """Every budget is a size key, so ``--set budget_rr=...`` is accepted."""
    from tl_thinktok.reproduce.cli import _overrides

    for key in BUDGETS.values():
        assert key in SIZES[("organism", "full")]
        assert _overrides([f"{key}=7"]) == {key: 7}


@pytest.mark.parametrize("mode", ["full", "quick"])
def test_smollm2_has_its_own_sizes_and_gsm8k_defaults(mode):
    """SmolLM2-135M (also as a path naming it) picks its size table and GSM8K everywhere; every
    size table has the same keys, so a --set key valid for one is valid for all."""
    for name in ("smollm2-135m", "/cache/gguf/SmolLM2-135M-Instruct.Q4_1-0123"):
        ctx = ExpContext(model=name, quick=mode == "quick", base_model="none")
        assert ctx.kind == "smollm2"
        assert (ctx.dataset, ctx.eval_datasets, ctx.rr_dataset) == ("gsm8k", ["gsm8k"], "gsm8k")
        table = SIZES[("smollm2", mode)]
        assert ctx.size("n_traces") == table["n_traces"] and ctx.budget("rr") == table["budget_rr"]
    assert ExpContext(model="organism").kind == "organism" and hf_ctx().kind == "hf"
    keys = {k: set(v) for k, v in SIZES.items()}
    assert all(v == keys[("organism", "full")] for v in keys.values()), keys
