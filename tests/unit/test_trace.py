"""MITrace: from_probe equals from_model on the organism, JSON + safetensors round trip (property),
stats / peak tokens / plot, and clear errors on bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tl_thinktok.generation import encode, greedy
from tl_thinktok.mi import hsic_nocco
from tl_thinktok.peaks import find_peaks, trace_stats
from tl_thinktok.probe import MIProbe, answer_representation, step_residuals
from tl_thinktok.trace import MITrace, residual_file

QUESTION = "Q: Ann has 7 apples and buys 5 more. How many apples does she have?"
SOLUTION = "7 + 5 = 12. The answer is 12."


@pytest.fixture(scope="module")
def organism():
    from tl_thinktok.loading import load_model

    return load_model("organism").eval()


@pytest.fixture(scope="module")
def organism64():
    from tl_thinktok.loading import load_model

    return load_model("organism", dtype="float64").eval()


@pytest.fixture(scope="module")
def trace(organism):
    from tl_thinktok.datasets import prompt_for

    return MITrace.from_model(
        organism, prompt_for("organism", QUESTION), SOLUTION, max_new_tokens=48,
        keep_residuals=True, id="demo", answer="12", model="organism",
    )  # fmt: skip


def test_from_model_against_the_library_pieces(organism, trace):
    """from_model = greedy + step_residuals + answer_representation + hsic_nocco + find_peaks."""
    from tl_thinktok.datasets import prompt_for

    ids = encode(organism, prompt_for("organism", QUESTION))
    new = greedy(organism, ids, 48)
    eos = organism.tokenizer.eos_token_id
    gen = new[: new.index(eos) + 1] if eos in new else new  # the EOS step is kept (reference)
    assert trace.tokens == ids + gen and trace.prompt_len == len(ids)
    assert trace.n_steps == len(gen) == len(trace.mi) == len(trace.resid_norm) > 5
    h = step_residuals(organism, torch.tensor(ids + gen), len(ids), -1).float()
    y = answer_representation(organism, SOLUTION, -1).float()
    ref = hsic_nocco(h, y, sigma=50.0).numpy()
    np.testing.assert_array_equal(trace.mi, ref)
    assert trace.mi.dtype == np.float64
    assert trace.peaks == find_peaks(ref)
    np.testing.assert_allclose(trace.resid_norm, h.double().norm(dim=-1).numpy(), rtol=1e-12)
    assert trace.text and trace.id == "demo" and trace.model == "organism"


def probe_trace(model, prompt_ids: list[int], max_new: int) -> MITrace:
    probe = MIProbe(layer=-1)
    eos = model.tokenizer.eos_token_id
    with probe.attach(model), torch.no_grad():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=max_new, do_sample=False,
                             verbose=False, stop_at_eos=True, eos_token_id=eos)  # fmt: skip
    h_y = answer_representation(model, SOLUTION, -1)
    return MITrace.from_probe(probe, h_y, out[0], len(prompt_ids), eos=eos)


def test_from_probe_equals_from_model_float64(organism64):
    """The KV-cached generate (probe) and the teacher-forced pass agree to float64 rounding."""
    from tl_thinktok.datasets import prompt_for

    ids = encode(organism64, prompt_for("organism", QUESTION))
    ref = MITrace.from_model(organism64, ids, SOLUTION, max_new_tokens=48)
    tr = probe_trace(organism64, ids, 48)
    assert tr.tokens == ref.tokens and tr.n_steps > 5
    np.testing.assert_allclose(tr.mi, ref.mi, rtol=1e-9, atol=0)
    assert tr.peaks == ref.peaks


def test_from_probe_matches_from_model_float32(organism, trace):
    """In float32 the KV cache changes activations in the last bits: MI agrees to ~1e-5."""
    tr = probe_trace(organism, trace.tokens[: trace.prompt_len], 48)
    assert tr.tokens == trace.tokens
    np.testing.assert_allclose(tr.mi, trace.mi, rtol=1e-4, atol=1e-9)


def test_stats_and_peak_tokens(organism, trace):
    st_ = trace.stats()
    ref = trace_stats(trace.mi)
    for f in ("n_peaks", "n_steps", "ratio", "mean", "std", "aom", "avg_interval"):
        a, b = getattr(st_, f), getattr(ref, f)
        assert a == b or (math.isnan(a) and math.isnan(b)), f
    words = trace.peak_tokens(organism)
    gen = trace.gen_ids
    assert words == [organism.tokenizer.decode([gen[p]]).strip() for p in trace.peaks]
    assert trace.peak_tokens(organism.tokenizer) == words


def test_plot_marks_the_peaks(organism, trace):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = trace.plot(tokenizer=organism, title="t")
    (line,) = ax.lines
    np.testing.assert_array_equal(line.get_ydata(), trace.mi)
    offsets = ax.collections[0].get_offsets()
    np.testing.assert_array_equal(np.asarray(offsets)[:, 0], trace.peaks)
    assert [t.get_text() for t in ax.texts] == trace.peak_tokens(organism)
    plt.close(ax.figure)


def test_save_load_keeps_residuals_as_safetensors(tmp_path, trace):
    p = trace.save(tmp_path / "sub" / "trace.json")
    assert residual_file(p).exists() and residual_file(p).suffix == ".safetensors"
    back = MITrace.load(p)
    assert back.to_dict() == trace.to_dict()
    assert torch.equal(back.residuals, trace.residuals)
    assert torch.equal(back.answer_rep, trace.answer_rep)


@st.composite
def traces(draw):
    prompt_len = draw(st.integers(1, 6))
    n = draw(st.integers(1, 12))
    tokens = draw(
        st.lists(st.integers(0, 50_000), min_size=prompt_len + n, max_size=prompt_len + n)
    )
    floats = st.floats(allow_nan=True, allow_infinity=False, width=64)
    mi = draw(st.lists(floats, min_size=n, max_size=n))
    norms = draw(st.lists(st.floats(0, 1e6), min_size=n, max_size=n))
    peaks = sorted(draw(st.sets(st.integers(0, n - 1))))
    text = st.none() | st.text(max_size=20)
    return MITrace(
        tokens=tokens, prompt_len=prompt_len, layer=draw(st.integers(-8, 8)), mi=mi,
        peaks=peaks, resid_norm=norms, sigma=draw(st.floats(0.1, 100.0)), id=draw(text),
        question=draw(text), answer=draw(text), text=draw(text),
        correct=draw(st.none() | st.booleans()), model=draw(text),
    )  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(tr=traces())
def test_json_round_trip_is_exact(tmp_path_factory, tr):
    path = tmp_path_factory.mktemp("rt") / "t.json"
    back = MITrace.load(tr.save(path))
    assert back.to_dict() == tr.to_dict()
    np.testing.assert_array_equal(back.mi, tr.mi)  # bit-exact, NaN where NaN
    np.testing.assert_array_equal(back.resid_norm, tr.resid_norm)
    assert back.gen_ids == tr.gen_ids and back.residuals is None
    assert MITrace.from_dict(tr.to_dict()).to_dict() == tr.to_dict()


def make(**kw):
    base = dict(tokens=[1, 2, 3, 4], prompt_len=2, layer=-1, mi=[0.1, 0.2], peaks=[1],
                resid_norm=[1.0, 2.0])  # fmt: skip
    return MITrace(**{**base, **kw})


@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        (dict(prompt_len=4), ValueError, "prompt_len=4 must be < len"),
        (dict(prompt_len=0), ValueError, "prompt_len must be >= 1"),
        (dict(mi=[0.1]), ValueError, "mi has 1 steps but the trace has 2"),
        (dict(resid_norm=[1.0, 2.0, 3.0]), ValueError, "resid_norm has 3 steps"),
        (dict(mi=[[0.1, 0.2]]), ValueError, "mi must be 1-D"),
        (dict(peaks=[2]), ValueError, r"peak indices \[2\] out of range"),
        (dict(peaks=[1, 0]), ValueError, "ascending"),
        (dict(tokens=[1, -2, 3, 4]), ValueError, "non-negative"),
        (dict(tokens="abcd"), TypeError, "not a string"),
        (dict(layer=True), TypeError, "layer must be an int"),
        (dict(residuals=torch.zeros(3, 4)), ValueError, r"expected \[2, d_model\]"),
    ],
)
def test_bad_fields_are_named(kw, err, match):
    with pytest.raises(err, match=match):
        make(**kw)


def test_bad_builder_input(organism, trace, tmp_path):
    with pytest.raises(ValueError, match="unknown MITrace fields"):
        MITrace.from_dict({**trace.to_dict(), "gen_ids": [1]})
    with pytest.raises(ValueError, match="answer_text must be a non-empty string"):
        MITrace.from_model(organism, "Q: 1 + 1 = ?", "  ")
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        MITrace.from_model(organism, "Q: 1 + 1 = ?", SOLUTION, max_new_tokens=0)
    long_prompt = list(range(10, 10 + organism.cfg.n_ctx + 5))
    with pytest.raises(
        ValueError, match=rf"{organism.cfg.n_ctx + 5} tokens .* is {organism.cfg.n_ctx}"
    ):
        MITrace.from_model(organism, long_prompt, SOLUTION, max_new_tokens=4)
    with pytest.raises(ValueError, match="exactly one of answer_text"):
        MITrace.from_tokens(organism, trace.tokens, trace.prompt_len)
    with pytest.raises(TypeError, match="unknown MITrace metadata"):
        MITrace.from_tokens(organism, trace.tokens, trace.prompt_len, SOLUTION, colour="red")
    with pytest.raises(ValueError, match="answer_rep has 3 dims"):
        MITrace.from_tokens(organism, trace.tokens, trace.prompt_len, answer_rep=torch.ones(3))
    probe = MIProbe(layer=-1)
    with probe.attach(organism), torch.no_grad():
        organism(torch.tensor([trace.tokens[:5]]))  # one pass = one recorded row
    with pytest.raises(ValueError, match="recorded 1 steps but tokens hold 3 generated"):
        MITrace.from_probe(probe, trace.answer_rep, trace.tokens[:8], 5)
    with pytest.raises(TypeError, match="probe must be an MIProbe"):
        MITrace.from_probe(object(), trace.answer_rep, trace.tokens, trace.prompt_len)
    bare = make()
    with pytest.raises(ValueError, match="keeps no residuals"):
        bare.save_residuals(tmp_path / "r.safetensors")


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_plot_keeps_peak_labels_inside_and_the_legend_off_the_data():
    """fig2's layout: the highest peak is the last step (``</s>``); its label must sit inside the
    axes, and the legend must cover neither the trajectory nor a label."""
    import matplotlib

    matplotlib.use("Agg")
    from types import SimpleNamespace

    import matplotlib.pyplot as plt

    n = 120
    mi = 0.02 + 0.01 * np.sin(np.arange(n))
    mi[[30, 70, n - 1]] = [0.1, 0.09, 0.3]
    trace = MITrace(tokens=list(range(n + 1)), prompt_len=1, layer=-1, mi=mi,
                    peaks=[30, 70, n - 1], resid_norm=np.ones(n))  # fmt: skip
    tok = SimpleNamespace(decode=lambda ids: "</s>" if ids[0] == n else f"w{ids[0]}")
    fig, ax = plt.subplots(figsize=(9, 2.8))
    trace.plot(ax, tokenizer=tok, title="t")
    fig.tight_layout()
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    box = ax.get_window_extent(r)
    labels = [t.get_window_extent(r) for t in ax.texts]
    assert [t.get_text() for t in ax.texts] == ["w31", "w71", "</s>"]
    for lab in labels:
        assert box.y0 <= lab.y0 and lab.y1 <= box.y1 and box.x0 <= lab.x0 and lab.x1 <= box.x1
    legend = ax.get_legend().get_window_extent(r)
    assert not _overlap(legend, box) and not any(_overlap(legend, lab) for lab in labels)
    plt.close(fig)
