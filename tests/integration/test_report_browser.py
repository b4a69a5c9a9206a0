"""`tl-thinktok trace` end to end, and the pages in a real browser.

* ``peak_readout`` against references written here: the model's own logits from a plain forward
  pass (rank and log-probability of the generated token) and a float64 logit lens from
  ``run_with_cache`` at another layer;
* the report of an organism problem opens in headless Chromium with the network off: the tokens
  are on screen, the console has no errors, nothing but the file itself is requested;
* the circuitsvis views render offline in the same browser (their bundle is inline).

The browser tests fail (not skip) in CI when chromium is missing; elsewhere they skip, saying why.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from browser import open_page  # tests/integration/browser.py (rootdir-relative import)

from tl_thinktok import organism
from tl_thinktok.generation import encode
from tl_thinktok.loading import load_model
from tl_thinktok.report import peak_readout, token_strings
from tl_thinktok.report.cli import main
from tl_thinktok.trace import MITrace


@pytest.fixture(scope="module")
def model():
    return load_model("organism")  # the installed TransformerLens's default host


@pytest.fixture(scope="module")
def trace(model):
    prob = organism.problems("test", 1, seed=0)[0]
    return MITrace.from_model(
        model,
        encode(model, organism.prompt(prob.question)),
        prob.solution,
        max_new_tokens=160,
        keep_residuals=True,
        id="organism-0",
        answer=str(prob.answer),
    )


def test_readout_matches_the_models_own_logits(model, trace):
    assert trace.peaks, "the organism trace should have MI peaks"
    ro = peak_readout(trace, model, k=4)
    tokens = torch.tensor(trace.tokens)
    with torch.no_grad():
        logits = model(tokens[None, :-1])[0].double()
    rows = [trace.prompt_len - 1 + s for s in ro.steps]
    logp = torch.log_softmax(logits[rows], dim=-1)
    gen = trace.gen_ids
    for i, s in enumerate(ro.steps):
        assert ro.token_ids[i] == gen[s]
        # greedy decoding at the last block: the lens's top-1 is the generated token
        assert ro.rank[i] == 0 and ro.topk_ids[i][0] == gen[s]
        assert ro.logprob[i] == pytest.approx(float(logp[i, gen[s]]), abs=1e-4)
        assert ro.topk_probs[i] == pytest.approx(logp[i].exp().topk(4).values.tolist(), abs=1e-5)
        assert ro.mi[i] == trace.mi[s]


def test_readout_at_another_layer_is_the_logit_lens(model, trace):
    ro = peak_readout(trace, model, k=3, layer=1)
    tokens = torch.tensor(trace.tokens)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens[None, :-1], names_filter="blocks.1.hook_resid_post")
    h = cache["blocks.1.hook_resid_post"][0].double()
    with torch.no_grad():  # RMSNorm and unembedding written out in float64
        # the final RMSNorm's scale: `w` on HookedTransformer, the HF weight on the bridge
        w = next(
            p for n, p in model.ln_final.named_parameters() if n.split(".")[-1] in ("w", "weight")
        )
        w = w.double()
        x = h / (h.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt() * w
        ref = torch.log_softmax(x @ model.W_U.double() + model.b_U.double(), dim=-1)
    for i, s in enumerate(ro.steps):
        row = ref[trace.prompt_len - 1 + s]
        tok = trace.gen_ids[s]
        assert ro.rank[i] == int((row > row[tok]).sum())
        assert ro.logprob[i] == pytest.approx(float(row[tok]), abs=1e-4)
        assert ro.topk_ids[i] == row.topk(3).indices.tolist()
    with pytest.raises(ValueError, match="outside the trace"):
        peak_readout(trace, model, steps=[trace.n_steps])


def test_trace_command_report_opens_in_chromium(tmp_path, capsys, model):
    out = tmp_path / "report.html"
    rc = main(["--model", "organism", "--dataset", "organism", "--index", "0",
               "--max-new-tokens", "160", "--out", str(out)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    page = open_page(out, expect_visible=("Gold answer", "Statistics"))
    assert page.errors == [], page.errors
    assert page.requests == [out.resolve().as_uri()], page.requests  # nothing else fetched
    # the generated tokens are on screen (as the report shows them: one span per token)
    item_prob = organism.problems("test", 1, seed=0)[0]
    gen = MITrace.from_model(model, encode(model, organism.prompt(item_prob.question)),
                             item_prob.solution, max_new_tokens=160).gen_ids  # fmt: skip
    pieces = [p.strip() for p in token_strings(model, gen) if p.strip()]
    words = [p for p in pieces if p.isalpha()][:8]
    assert len(words) >= 5
    visible = open_page(out, expect_visible=tuple(words)).visible
    assert all(visible.values()), visible
    text = " ".join(page.text.split())
    assert " ".join(pieces[:6]) in text
    assert f"Gold answer: {item_prob.answer}" in text
    assert "lens top-5" in text


@pytest.mark.skipif(importlib.util.find_spec("circuitsvis") is None, reason="needs circuitsvis")
def test_circuitsvis_views_render_offline_in_chromium(tmp_path, model, trace):
    from tl_thinktok import viz

    tokens = viz.mi_tokens(trace, model).save(tmp_path / "tokens.html")
    lens = viz.peak_lens_topk(trace, model, k=5).save(tmp_path / "lens.html")
    words = [w.strip() for w in trace.peak_tokens(model)]
    first = [p.strip() for p in token_strings(model, trace.gen_ids) if p.strip().isalpha()][:4]
    for path, expect in ((tokens, first), (lens, words[:2])):
        page = open_page(path, expect_visible=tuple(expect), settle_s=1.5)
        assert page.errors == [], page.errors
        assert page.requests == [path.resolve().as_uri()], page.requests
        assert all(page.visible.values()), (path.name, page.visible)
    assert viz.PEAK_MARK in open_page(tokens).text  # peaks are marked on screen


def test_the_page_checker_sees_errors_and_requests(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><p>visible words</p><p style='display:none'>hidden</p>"
        "<img src='https://example.invalid/x.png'>"
        "<script>console.error('boom'); undefinedFunction();</script></body></html>",
        encoding="utf-8",
    )
    page = open_page(bad, expect_visible=("visible words", "hidden", "absent"))
    assert page.visible == {"visible words": True, "hidden": False, "absent": False}
    assert any("boom" in e for e in page.errors)
    assert any("undefinedFunction" in e for e in page.errors)
    assert "https://example.invalid/x.png" in page.requests
