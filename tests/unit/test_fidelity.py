"""Fidelity to the reference code (issue 14): each test failed on the code before its fix.

* B6: ``reference_ttts`` builds the prompt text ``f"{q} {a.strip()} {w}"`` and tokenises it anew;
* B7: the step whose prediction is EOS stays in a trace (``drop_eos=True`` drops it).
"""

from __future__ import annotations

import pytest
import torch

from tl_thinktok.generation import encode, eos_id, greedy
from tl_thinktok.interventions.ttts import reference_ttts
from tl_thinktok.trace import MITrace, strip_eos, trace_steps

QUESTION = "Q: Ann has 7 apples and buys 5 more. How many apples does she have?"
SOLUTION = "7 + 5 = 12. The answer is 12."


class _WordTokenizer:
    """Whitespace-sensitive toy tokenizer: one id per character (so any spacing change shows)."""

    eos_token_id = 0
    bos_token_id = 1

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids):
        return "".join(chr(i) for i in ids if i > 1)


class _RecordingModel:
    """Answers EOS at once; records the context of every ``generate`` call."""

    def __init__(self):
        self.tokenizer = _WordTokenizer()
        self.contexts = []

    def generate(self, tokens, max_new_tokens, do_sample, stop_at_eos, eos_token_id, verbose):
        self.contexts.append(tokens[0].tolist())
        return torch.cat([tokens, torch.tensor([[0]])], dim=1)


@pytest.mark.parametrize(
    ("so_far", "text"),
    [
        ("It is 2.\n\n", "Q: 1+1? It is 2. Wait"),  # trailing newlines stripped, one space
        ("  It is", "Q: 1+1? It is Wait"),  # leading spaces stripped, one space inserted
        ("", "Q: 1+1?  Wait"),  # the reference's f-string keeps both spaces
    ],
)
def test_reference_ttts_prompt_is_the_reference_text(so_far, text):
    m = _RecordingModel()
    reference_ttts(m, "Q: 1+1?", so_far, word="Wait", token_budget=4, prepend_bos=False)
    assert m.contexts[0] == m.tokenizer(text)["input_ids"]


def test_reference_ttts_prompt_retokenised_on_a_real_tokenizer():
    """The whole text is tokenised at once (BPE merges across the join), not ids concatenated."""
    from tl_thinktok.loading import load_model

    model = load_model("organism").eval()
    q, so_far = "Q: 2 + 3 = ?", "2 + 3 = 5.\n"
    seen = []

    orig = model.generate

    def spy(tokens, **kw):
        seen.append(tokens[0].tolist())
        return orig(tokens, **kw)

    model.generate = spy
    try:
        reference_ttts(model, q, so_far, word="So", token_budget=2, answer_tokens=1)
    finally:
        del model.generate
    tok = model.tokenizer
    bos = [tok.bos_token_id] if model.cfg.default_prepend_bos else []
    assert seen[0] == bos + tok(f"{q} {so_far.strip()} So", add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def organism():
    from tl_thinktok.loading import load_model

    return load_model("organism").eval()


def test_trace_keeps_the_eos_step_by_default(organism):
    from tl_thinktok.datasets import prompt_for

    ids = encode(organism, prompt_for("organism", QUESTION))
    new = greedy(organism, ids, 96)
    eos = eos_id(organism)
    assert eos in new, "the organism ends this answer within 96 tokens"
    kept = MITrace.from_model(organism, ids, SOLUTION, max_new_tokens=96)
    assert kept.gen_ids == new[: new.index(eos) + 1] and kept.gen_ids[-1] == eos
    assert len(kept.mi) == kept.n_steps
    dropped = MITrace.from_model(organism, ids, SOLUTION, max_new_tokens=96, drop_eos=True)
    assert dropped.gen_ids == kept.gen_ids[:-1]
    # the kept steps are the same states: MI of the common steps agrees up to the estimator's
    # dependence on nothing but the step itself (NOCCO is per step)
    torch.testing.assert_close(
        torch.as_tensor(dropped.mi), torch.as_tensor(kept.mi[:-1]), rtol=1e-6, atol=1e-12
    )


def test_trace_steps_cuts_after_the_first_eos(organism):
    eos = eos_id(organism)
    assert trace_steps(organism, [5, 7, eos, eos]) == [5, 7, eos]
    assert trace_steps(organism, [5, 7, eos], drop_eos=True) == [5, 7]
    assert strip_eos(organism, [5, 7, eos]) == [5, 7]
    assert trace_steps(organism, [eos], drop_eos=True) == [eos]  # one step always stays
    assert trace_steps(organism, [5, 7]) == [5, 7]


def test_from_probe_keeps_the_eos_row_unless_asked(organism):
    from tl_thinktok.probe import MIProbe, answer_representation

    ids = encode(organism, "Q: 2 + 3 = ?")
    eos = eos_id(organism)
    probe = MIProbe(layer=-1)
    with probe.attach(organism), torch.no_grad():
        out = organism.generate(torch.tensor([ids]), max_new_tokens=96, do_sample=False,
                                verbose=False, stop_at_eos=True, eos_token_id=eos)  # fmt: skip
    h_y = answer_representation(organism, SOLUTION, -1)
    toks = out[0].tolist()
    assert toks[-1] == eos
    kept = MITrace.from_probe(probe, h_y, toks, len(ids), eos=eos)
    assert kept.gen_ids[-1] == eos
    dropped = MITrace.from_probe(probe, h_y, toks, len(ids), eos=eos, drop_eos=True)
    assert dropped.n_steps == kept.n_steps - 1
    with pytest.raises(ValueError, match="needs the EOS id"):
        MITrace.from_probe(probe, h_y, toks, len(ids), drop_eos=True)


def test_bounds_panel_makes_no_circular_fano_check():
    """B4: the trace panel no longer checks Fano against the error of the decoder whose own
    cross-entropy gave the bound (circular), nor claims Hellman–Raviv; no forced-error decoder or
    probe is left in the module."""
    import inspect

    from tl_thinktok.reproduce.experiments import theorem_bounds as tb

    src = inspect.getsource(tb)
    for gone in ("bound_row", "fano_check", "probe_cv", "forced_error", "fano_lower_bound"):
        assert gone not in src, gone


def test_mixed_model_decoder_ce_is_held_out_and_tames_confident_mistakes():
    import numpy as np

    from tl_thinktok.reproduce.experiments import theorem_bounds as tb

    bits = np.array([0.01] * 15 + [40.0] * 5)  # 5 confident mistakes: raw CE = 10 bits
    ce = tb.mixed_ce_cv(bits, 100, seed=0)
    assert ce < 0.5 * bits.mean()
    best = min(float(-np.log2((1 - e) * np.exp2(-bits) + e / 100).mean()) for e in tb.MIX_GRID)
    assert ce >= best - 1e-12  # held out: never better than the in-sample optimum
    assert tb.mixed_ce_cv(np.full(10, 1e-6), 100) < 0.01  # a right, confident decoder stays ~0
