"""Component base and attach_all on both hosts: order (RR innermost), resets, no leaked hooks,
validation before install, components in TTTS, and the host adapters on real models."""

from __future__ import annotations

import pytest
import torch
from leaks import all_hooks  # tests/integration/leaks.py

from tl_thinktok import hosts
from tl_thinktok.interventions import (
    Component,
    RepresentationRecycling,
    SuppressTokens,
    attach_all,
    budget_forcing,
    reference_ttts,
)
from tl_thinktok.lens import PeakTokenLens
from tl_thinktok.probe import MIProbe

PROMPT = [1, 40, 41, 42, 43, 44, 45]
N_NEW = 6


def _generate(model, n=N_NEW):
    with torch.no_grad():
        out = model.generate(
            torch.tensor([PROMPT]), max_new_tokens=n, do_sample=False, stop_at_eos=False,
            verbose=False,
        )  # fmt: skip
    return out[0, len(PROMPT) :].tolist()


def test_rr_is_innermost_whatever_the_order_given(model):
    first = _generate(model, 1)[0]  # what the model says first
    # RR triggers only on `first`; the ban forbids it. Correct order: RR sees the banned logits,
    # its candidate is never `first`, so it never fires at step 0.
    rr, ban = RepresentationRecycling(-1, [first]), SuppressTokens([first])
    with attach_all(model, rr, ban):
        _generate(model, 1)
    assert rr.fired == 0 and ban.hits == 1
    # the wrong order by hand (RR's logits hook before the ban) does fire: the order matters
    rr_wrong = RepresentationRecycling(-1, [first])
    with rr_wrong.attach(model), SuppressTokens([first]).attach(model):
        _generate(model, 1)
    assert rr_wrong.fired == 1


def test_attach_all_equals_nested_attach_in_the_right_order(model):
    plain = _generate(model)
    trig = sorted(set(plain))
    ban = SuppressTokens([plain[1]])
    rr, probe = RepresentationRecycling(-1, trig), MIProbe(-1)
    with attach_all(model, rr, probe, ban) as got_parts:
        got = _generate(model)
    assert got_parts == (rr, probe, ban)
    rr2 = RepresentationRecycling(-1, trig)
    with SuppressTokens([plain[1]]).attach(model), rr2.attach(model):
        ref = _generate(model)
    assert got == ref and rr.fired == rr2.fired > 0 and plain[1] not in got
    assert probe.residuals.shape == (N_NEW, hosts.d_model(model))


def test_every_hook_removed_when_generate_raises(model):
    before_tl, before_all = hosts.hook_counts(model), all_hooks(model)
    parts = [
        MIProbe(-1),
        SuppressTokens([3]),
        PeakTokenLens(0),
        RepresentationRecycling(-1, list(range(hosts.d_vocab(model)))),
    ]
    calls = []

    def boom(x, hook):
        calls.append(1)
        if len(calls) == 3:  # mid-generate, after two steps ran with every hook
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with attach_all(model, *parts):
            assert all_hooks(model) != before_all
            with model.hooks(fwd_hooks=[(hosts.resid_post_name(model, 0), boom)]):
                _generate(model)
    assert hosts.hook_counts(model) == before_tl
    assert all_hooks(model) == before_all
    assert parts[3].fired >= 1  # RR really ran before the error
    with attach_all(model, *parts):  # detached: they attach again
        pass
    assert all_hooks(model) == before_all


def test_validation_happens_before_anything_is_installed(model):
    probe = MIProbe(-1)
    with probe.attach(model):
        _generate(model, 2)
    before = all_hooks(model)
    with pytest.raises(ValueError, match=r"out of range \[0, 384\)"):
        with attach_all(model, probe, SuppressTokens([10**6])):
            pass
    assert all_hooks(model) == before and len(probe) == 2  # not reset, nothing installed
    with pytest.raises(ValueError, match="twice"):
        with attach_all(model, probe, probe):
            pass
    with pytest.raises(TypeError, match="Component instances"):
        with attach_all(model, probe, "ban"):
            pass
    with pytest.raises(TypeError, match="expected a transformer_lens"):
        with attach_all(torch.nn.Linear(2, 2), probe):
            pass
    with probe.attach(model):
        with pytest.raises(RuntimeError, match="already attached"):
            with attach_all(model, probe):
                pass
    assert all_hooks(model) == before


def test_requires_attach_refuses_fwd_hooks_up_front(model):
    rr = RepresentationRecycling(-1, [5])
    assert rr.requires_attach and not SuppressTokens.requires_attach
    with pytest.raises(RuntimeError, match="use `with component.attach"):
        rr.fwd_hooks(model)
    ban = SuppressTokens([5])
    assert ban.fwd_hooks(model) == [(hosts.logits_name(model), ban._hook)]
    assert all(isinstance(c, Component) for c in (rr, ban, MIProbe(), PeakTokenLens()))


def test_attach_resets_by_default(model):
    plain = _generate(model, 3)
    ban = SuppressTokens([plain[0]])
    with ban.attach(model):
        _generate(model, 3)
    assert ban.hits == 1
    with ban.attach(model):  # reset on attach: the count starts again
        _generate(model, 3)
    assert ban.hits == 1
    with ban.attach(model, reset=False):
        _generate(model, 3)
    assert ban.hits == 2
    rr = RepresentationRecycling(-1, sorted(set(plain)))
    with rr.attach(model):
        _generate(model, 3)
    n = rr.fired
    assert n > 0
    with rr.attach(model):
        _generate(model, 3)
    assert rr.fired == n
    with pytest.raises(TypeError, match="reset must be a bool"):
        with ban.attach(model, reset=1):
            pass


def test_lens_reads_a_probe_or_its_own_recording(model):
    probe, lens = MIProbe(-1), PeakTokenLens(-1, k=2)
    with attach_all(model, probe, lens):
        gen = _generate(model)
    a = lens.decode(model, probe, steps=[0, 3])
    b = lens.decode(model, probe.residuals, steps=[0, 3])
    c = lens.decode(model, steps=[0, 3])  # the lens's own recorder
    assert a.token_ids.tolist() == b.token_ids.tolist() == c.token_ids.tolist()
    assert a.token_ids[:, 0].tolist() == [gen[0], gen[3]]
    assert lens.probe.layer == lens.layer


def test_budget_forcing_with_components(model):
    prompt = "User: What is 12 times 3?\nAssistant: <think>"
    kw = dict(min_thinking_tokens=4, max_thinking_tokens=10, max_answer_tokens=3)
    plain = budget_forcing(model, prompt, **kw)
    first = hosts.to_tokens(model, plain.thinking_text, prepend_bos=False)[0, :1].tolist()
    ban = SuppressTokens(first)
    via_hooks = budget_forcing(model, prompt, fwd_hooks=ban.fwd_hooks(model), **kw)
    before = all_hooks(model)
    via_components = budget_forcing(model, prompt, components=[ban], **kw)
    assert via_components == via_hooks != plain
    assert ban.hits >= 1 and all_hooks(model) == before
    # RR across the run's generate calls: same as one attach around the whole call
    trig = sorted(set(hosts.to_tokens(model, plain.text, prepend_bos=False)[0].tolist()))
    rr = RepresentationRecycling(-1, trig, p=0.5, seed=1)
    got = budget_forcing(model, prompt, components=[rr, ban], **kw)
    fired = rr.fired
    rr2, ban2 = RepresentationRecycling(-1, trig, p=0.5, seed=1), SuppressTokens(first)
    with attach_all(model, rr2, ban2):
        ref = budget_forcing(model, prompt, **kw)
    assert got == ref and fired == rr2.fired > 0
    assert all_hooks(model) == before
    r = reference_ttts(model, "Q: 2+2?", " So", word="Wait", token_budget=4, components=[ban])
    assert r.thinking_tokens_used <= 4 and all_hooks(model) == before


def test_adapter_on_real_hosts(model):
    ad = hosts.adapter(model)
    assert hosts.adapter(model) is ad
    assert ad.name == ("bridge" if "Bridge" in type(model).__name__ else "hooked")
    for name in (ad.resid_pre_name(0), ad.resid_post_name(-1), ad.logits_name()):
        assert name in model.hook_dict
    assert ad.final_norm_name() in model.hook_dict
    assert hosts.fix_bridge_kv_cache(model) == 0  # idempotent (load_model already patched)
    # unembed_with_hooks fires a ban, unembed_resid does not
    h = torch.randn(1, 2, hosts.d_model(model))
    ban = SuppressTokens([0])
    with ban.attach(model), torch.no_grad():
        assert torch.isinf(ad.unembed_with_hooks(h)[..., 0]).all()
        assert torch.isfinite(ad.unembed_resid(h)).all()
