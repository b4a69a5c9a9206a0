"""lens.py: PeakTokenLens vs generated tokens and an HF logit lens, both hosts; token counts."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tl_thinktok import hosts
from tl_thinktok.interventions.suppress import SuppressTokens
from tl_thinktok.lens import LensResult, PeakTokenLens, TokenCounts, thinking_token_counts
from tl_thinktok.probe import step_residuals

PROMPT = [1, 40, 41, 42, 43, 44, 45]


def _generate(model, n=8):
    with torch.no_grad():
        return model.generate(
            torch.tensor([PROMPT]), max_new_tokens=n, do_sample=False, stop_at_eos=False,
            verbose=False,
        )  # fmt: skip


def test_last_block_lens_is_generated_token(model):
    n = 8
    lens = PeakTokenLens(layer=-1, k=3)
    with lens.attach(model):
        out = _generate(model, n)
    gen = out[0, len(PROMPT) :].tolist()
    res = lens.decode(model)  # recorded during generation
    assert res.token_ids[:, 0].tolist() == gen
    tok = hosts.tokenizer_of(model)
    assert res.top1 == [tok.decode([g]) for g in gen]
    assert res.probs.shape == (n, 3) and bool((res.probs[:, :-1] >= res.probs[:, 1:]).all())
    # same from the teacher-forced residuals, at chosen steps
    h = step_residuals(model, out[0], len(PROMPT), -1)
    sub = PeakTokenLens(-1).decode(model, h, steps=[5, 0, -1])
    assert sub.steps == [5, 0, n - 1]
    assert sub.token_ids[:, 0].tolist() == [gen[5], gen[0], gen[-1]]


def test_lens_ignores_user_hooks_on_ln_final_and_unembed(model):
    out = _generate(model, 4)
    gen = out[0, len(PROMPT) :].tolist()
    h = step_residuals(model, out[0], len(PROMPT), -1)

    def explode(x, hook):
        raise AssertionError("the lens must not fire user hooks")

    ban = SuppressTokens(gen)  # would make every generated token impossible if it fired
    with ban.attach(model), model.hooks(fwd_hooks=[("ln_final.hook_normalized", explode)]):
        res = PeakTokenLens(-1).decode(model, h)
    assert res.token_ids[:, 0].tolist() == gen
    assert ban.hits == 0  # the logits hook never ran


def test_middle_layer_is_hf_logit_lens(model, hf):
    tokens = torch.tensor(PROMPT + [50, 51, 52])
    h = step_residuals(model, tokens, len(PROMPT), 0)
    res = PeakTokenLens(layer=0, k=2).decode(model, h)
    # independent reference: HF block-0 output -> HF final norm -> HF lm_head, float64 softmax
    with torch.no_grad():
        hs = hf(tokens[None], output_hidden_states=True).hidden_states[1][0]
        ref = torch.softmax(hf.lm_head(hf.model.norm(hs)).double(), -1)[len(PROMPT) - 1 : -1]
    top = ref.topk(2, -1)
    assert res.token_ids.tolist() == top.indices.tolist()
    torch.testing.assert_close(res.probs, top.values, atol=1e-5, rtol=1e-4)


def test_lens_result_roundtrip_and_errors(model, tmp_path):
    h = torch.randn(4, hosts.d_model(model)) * 5
    res = PeakTokenLens(-1, k=2).decode(model, h, steps=torch.tensor([1, 3]))
    back = LensResult.load(res.save(tmp_path / "sub" / "lens.json"))
    assert back.steps == res.steps and back.tokens == res.tokens
    assert torch.equal(back.token_ids, res.token_ids) and torch.equal(back.probs, res.probs)
    old = tmp_path / "old.json"  # the format written before the JsonIO mixin (compact)
    old.write_text(json.dumps({
        "steps": res.steps, "token_ids": res.token_ids.tolist(), "tokens": res.tokens,
        "probs": res.probs.tolist(), "layer": res.layer,
    }, ensure_ascii=False))  # fmt: skip
    assert LensResult.load(old).tokens == res.tokens
    assert torch.equal(LensResult.load(old).probs, res.probs)
    with pytest.raises(ValueError, match="step 4 is out of range for 4"):
        PeakTokenLens(-1).decode(model, h, steps=[4])
    with pytest.raises(ValueError, match="width 3"):
        PeakTokenLens(-1).decode(model, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="k must be >= 1"):
        PeakTokenLens(-1, k=0)
    with pytest.raises(ValueError, match="recorded nothing"):
        PeakTokenLens(-1).decode(model)


_piece = st.one_of(
    st.sampled_from(["So", " So", "so", "Wait", " Wait\n", "I", " 3", "3a", "!", "", " ", "Hmm,"]),
    st.text(alphabet="aZ 1.-\n", max_size=4),
)


@settings(max_examples=50, deadline=None)
@given(st.lists(_piece, max_size=40))
def test_counts_match_counter_reference(pieces):
    got = thinking_token_counts(pieces)
    ref = Counter(p.strip() for p in pieces if re.fullmatch(r"[A-Za-z]+", p.strip()))
    assert dict(got.counts) == dict(ref)
    assert got.total == len(pieces)
    top = got.top(3)
    assert [c for _, c in top] == sorted(ref.values(), reverse=True)[:3]


def test_counts_from_lens_results_and_ids(model, tmp_path):
    tok = hosts.tokenizer_of(model)
    so, the = tok.convert_tokens_to_ids(["So", "ĠSo"]), tok.convert_tokens_to_ids(["The"])
    ids = so + the + so[:1] + [tok.convert_tokens_to_ids("0")]
    counts = thinking_token_counts(ids, tok)
    assert counts.counts == {"So": 3, "The": 1} and counts.total == 5
    with pytest.raises(ValueError, match="tokenizer="):
        thinking_token_counts(ids)
    res = LensResult([0, 1], torch.tensor([[1], [2]]), [[" So"], [" 7"]], torch.ones(2, 1))
    merged = thinking_token_counts([res, res]) + counts
    assert merged.top(1) == [("So", 5)] and merged.total == 9
    back = TokenCounts.load(merged.save(tmp_path / "c.json"))
    assert back == merged
    (tmp_path / "bad.json").write_text(json.dumps({"total": 3}))
    with pytest.raises(ValueError, match="bad.json: not a TokenCounts file"):
        TokenCounts.load(tmp_path / "bad.json")
    ax = merged.plot(k=15, title="peaks")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["So", "The"]
