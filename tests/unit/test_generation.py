"""tl_thinktok.generation: greedy decoding against a no-cache argmax reference, the context-length
rule (too-long prompts refused, budgets clipped), BOS policy, argument checks."""

from __future__ import annotations

import pytest
import torch

from tl_thinktok import generation
from tl_thinktok.generation import (
    answer_suffix,
    check_prompt_length,
    decode,
    encode,
    greedy,
    greedy_batch,
    max_new_tokens_room,
)
from tl_thinktok.hosts import supported_hosts

N_CTX = 12


@pytest.fixture(scope="module", params=list(supported_hosts()))
def tiny(request, tmp_path_factory):
    """A random model with a 12-token context and a real tokenizer, on each available host."""
    if request.param == "bridge":  # a random Qwen2 whose config declares a 12-token context
        import json

        from tl_thinktok.loading import load_model
        from tl_thinktok.testing.models import make_random_hf_model

        path = make_random_hf_model(tmp_path_factory.mktemp("ctx12"), "qwen2", n_layers=1)
        cfg = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**cfg, "max_position_embeddings": N_CTX}))
        model = load_model(path, host="bridge")
        assert model.cfg.n_ctx == N_CTX
        return model
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from tl_thinktok.testing.models import make_tokenizer

    tok = make_tokenizer(tmp_path_factory.mktemp("tok"))
    cfg = HookedTransformerConfig(
        n_layers=1, d_model=32, n_ctx=N_CTX, d_head=8, n_heads=4, d_vocab=len(tok),
        act_fn="gelu", positional_embedding_type="standard", normalization_type="LN", seed=0,
    )  # fmt: skip
    model = HookedTransformer(cfg, tokenizer=tok).eval()
    with torch.no_grad():  # larger weights: greedy output is not one repeated token
        for p in model.parameters():
            p.mul_(4.0)
    return model


def argmax_reference(model, ids: list[int], n: int) -> list[int]:
    """Greedy decoding by hand: full forward pass (no KV cache) and argmax, n times."""
    out = list(ids)
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([out]))[0, -1]
            out.append(int(logits.argmax()))
    return out[len(ids) :]


def test_greedy_equals_no_cache_argmax(tiny):
    ids = [5, 17, 42, 99]
    got = greedy(tiny, ids, 6, stop_at_eos=False)
    assert got == argmax_reference(tiny, ids, 6)
    assert len(set(got)) > 1  # a non-degenerate model, so the comparison has teeth


def test_batched_equals_one_by_one(tiny):
    prompts = [[5, 17, 42], [7, 8], [100, 101, 102, 103, 104]]
    batched = greedy_batch(tiny, prompts, 4, stop_at_eos=False)
    assert batched == [greedy(tiny, p, 4, stop_at_eos=False) for p in prompts]


def test_prompt_longer_than_context_is_refused_naming_both_lengths(tiny):
    too_long = list(range(5, 5 + N_CTX + 1))
    with pytest.raises(ValueError, match=rf"{N_CTX + 1} tokens.*n_ctx\) is {N_CTX} tokens"):
        greedy(tiny, too_long, 1)
    with pytest.raises(ValueError, match=rf"{N_CTX + 1} tokens"):
        greedy_batch(tiny, [[5, 6], too_long], 1)
    with pytest.raises(ValueError, match="answer text has 20 tokens"):
        check_prompt_length(tiny, 20, what="answer text")


def test_budget_beyond_context_is_clipped_with_a_warning(tiny):
    ids = list(range(5, 5 + N_CTX - 3))  # room for n_ctx - P + 1 = 4 new tokens
    assert max_new_tokens_room(tiny, len(ids)) == 4
    with pytest.warns(UserWarning, match="room for 4 new tokens"):
        got = greedy(tiny, ids, 50, stop_at_eos=False)
    assert got == argmax_reference(tiny, ids, 4)
    # a prompt that fills the context exactly still gets its one prediction
    full = list(range(5, 5 + N_CTX))
    with pytest.warns(UserWarning):
        assert greedy(tiny, full, 3, stop_at_eos=False) == argmax_reference(tiny, full, 1)


def test_budget_within_context_does_not_warn(tiny, recwarn):
    greedy(tiny, list(range(5, 5 + N_CTX - 3)), 4, stop_at_eos=False)
    assert not [w for w in recwarn if "does not fit" in str(w.message)]


def test_bad_arguments(tiny):
    with pytest.raises(ValueError, match="max_new_tokens must be >= 0"):
        greedy(tiny, [5], -1)
    with pytest.raises(TypeError, match="max_new_tokens must be an int"):
        greedy(tiny, [5], 2.5)
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        greedy_batch(tiny, [[5], []], 2)
    assert greedy(tiny, [5, 6], 0) == []
    assert greedy_batch(tiny, [], 3) == []


def test_encode_bos_policy_and_decode(tiny):
    tok = tiny.tokenizer
    plain = encode(tiny, "hello world", bos=False)
    assert plain == tok("hello world", add_special_tokens=False)["input_ids"]
    assert encode(tiny, "hello world", bos=True) == [tok.bos_token_id] + plain
    assert decode(tiny, [tok.bos_token_id] + plain) == decode(tiny, plain)


def test_ids_and_suffixes(tiny):
    tok = tiny.tokenizer
    assert generation.eos_id(tiny) == tok.eos_token_id
    assert generation.pad_id(tiny) == tok.pad_token_id
    assert answer_suffix("organism").endswith("\\boxed{")
    assert "</think>" in answer_suffix("r1")
    assert "</think>" not in answer_suffix("reference")
