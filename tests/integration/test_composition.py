"""Components composed in one generate (MIProbe, SuppressTokens, RR, a user's hook, an SAE).

References are outside the package: HF generate with ``suppress_tokens`` and a torch forward hook
that applies the same steering vector; sae-lens's own activation cache for the SAE case.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from leaks import all_hooks  # tests/integration/leaks.py

from tl_thinktok import hosts
from tl_thinktok.interventions.recycle import RepresentationRecycling
from tl_thinktok.interventions.suppress import SuppressTokens
from tl_thinktok.lens import PeakTokenLens
from tl_thinktok.loading import load_model
from tl_thinktok.probe import MIProbe, step_residuals

PROMPT = [1, 40, 41, 42, 43, 44, 45]
N_NEW = 8


def _generate(model, n=N_NEW):
    with torch.no_grad():
        out = model.generate(
            torch.tensor([PROMPT]), max_new_tokens=n, do_sample=False, stop_at_eos=False,
            verbose=False,
        )  # fmt: skip
    return out


def _steer(d: int) -> torch.Tensor:
    return torch.randn(d, generator=torch.Generator().manual_seed(1)) * 3.0


def test_probe_suppress_and_user_hook_equal_hf(model, hf):
    d = hosts.d_model(model)
    v = _steer(d)
    plain = _generate(model)[0, len(PROMPT) :].tolist()
    banned = sorted(set(plain[:2]) | {hf.config.eos_token_id})
    user_calls = []

    def user_steer(x, hook):  # a user's own hook: steer the stream after block 0
        user_calls.append(x.shape[1])
        return x + v

    probe, ban = MIProbe(-1), SuppressTokens(banned)
    before = all_hooks(model)
    with model.hooks(fwd_hooks=[(hosts.resid_post_name(model, 0), user_steer)]):
        with probe.attach(model), ban.attach(model):
            out = _generate(model)
        assert len(user_calls) == N_NEW  # the user's hook ran at every step
        teacher = step_residuals(model, out[0], len(PROMPT), -1)  # same user hook in place
    assert all_hooks(model) == before
    got = out[0, len(PROMPT) :].tolist()

    # outside reference: HF with the same steering as a torch hook + HF's own suppression
    handle = hf.model.layers[0].register_forward_hook(
        lambda mod, args, output: (
            (output[0] + v,) + tuple(output[1:]) if isinstance(output, tuple) else output + v
        )
    )
    try:
        with torch.no_grad():
            ref = hf.generate(
                torch.tensor([PROMPT]), max_new_tokens=N_NEW, do_sample=False,
                suppress_tokens=banned,
            )  # fmt: skip
    finally:
        handle.remove()
    assert got == ref[0, len(PROMPT) :].tolist()
    assert not set(got) & set(banned)

    rows = probe.residuals
    assert rows.shape == (N_NEW, d)
    assert (rows - teacher).abs().max().item() <= 1e-5 * teacher.abs().max().item()
    logits = hosts.unembed_resid(model, rows)
    logits[:, banned] = float("-inf")  # the probe state + the ban gives the emitted token
    assert logits.argmax(-1).tolist() == got


def test_probe_suppress_recycling_in_one_generate(model):
    n_layers = hosts.n_layers(model)
    plain = _generate(model)[0, len(PROMPT) :].tolist()
    banned = [plain[0]]
    triggers = sorted(set(range(hosts.d_vocab(model))) - set(banned))  # always trigger
    lens = PeakTokenLens(layer=-1)
    probe0 = MIProbe(0)  # below the recycled block: unaffected by the rerun
    rr = RepresentationRecycling(layer=n_layers - 1, trigger_token_ids=triggers, p=1.0)
    ban = SuppressTokens(banned)
    before = all_hooks(model)
    with ban.attach(model), rr.attach(model), lens.attach(model), probe0.attach(model):
        out = _generate(model)
    assert all_hooks(model) == before
    got = out[0, len(PROMPT) :].tolist()
    assert rr.fired == N_NEW
    assert banned[0] not in got
    # one row per step, holding the RECYCLED state: ban-masked lens argmax == emitted token
    rows = lens.residuals
    assert rows.shape[0] == N_NEW
    logits = hosts.unembed_resid(model, rows)
    logits[:, banned] = float("-inf")
    assert logits.argmax(-1).tolist() == got
    # the same generation without the observers: observers do not perturb the intervention
    rr2 = RepresentationRecycling(layer=n_layers - 1, trigger_token_ids=triggers, p=1.0)
    with ban.attach(model), rr2.attach(model):
        assert _generate(model)[0, len(PROMPT) :].tolist() == got
    # below the recycled block the probe equals the teacher-forced pass
    teacher = step_residuals(model, out[0], len(PROMPT), 0)
    assert (probe0.residuals - teacher).abs().max().item() <= 1e-5 * teacher.abs().max().item()


@pytest.mark.parametrize("where", ["attach", "hook"])
def test_exception_leaves_no_hooks(model, where):
    def user(x, hook):
        return x

    model.add_hook(hosts.logits_name(model), user)  # a user's own persistent hook
    try:
        before = all_hooks(model)
        assert before  # the user's hook is there
        rr = RepresentationRecycling(layer=-1, trigger_token_ids=[5, 6])

        def boom(x, hook):
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            with contextlib.ExitStack() as stack:
                stack.enter_context(MIProbe(-1).attach(model))
                stack.enter_context(SuppressTokens([3]).attach(model))
                stack.enter_context(PeakTokenLens(0).attach(model))
                stack.enter_context(rr.attach(model))
                assert all_hooks(model) != before
                if where == "attach":
                    raise RuntimeError("boom")
                stack.enter_context(
                    model.hooks(fwd_hooks=[(hosts.resid_post_name(model, 0), boom)])
                )
                _generate(model, 2)
        assert all_hooks(model) == before
        # building hooks for a bad model raises before anything is added
        with pytest.raises(ValueError, match="out of range"):
            with SuppressTokens([10**6]).attach(model):
                pass
        with pytest.raises(ValueError, match="layer 7"):
            with MIProbe(7).attach(model):
                pass
        assert all_hooks(model) == before
    finally:
        model.reset_hooks()


@pytest.fixture(scope="module")
def sae_model(qwen2_dir, sae_lens):
    HookedSAETransformer, StandardSAE = sae_lens.HookedSAETransformer, sae_lens.StandardSAE
    StandardSAEConfig = sae_lens.StandardSAEConfig

    base = load_model(str(qwen2_dir), host="hooked")
    m = HookedSAETransformer(base.cfg, tokenizer=base.tokenizer)
    m.load_state_dict(base.state_dict(), strict=False)
    m.eval()
    last = hosts.n_layers(m) - 1
    cfg = StandardSAEConfig(d_in=hosts.d_model(m), d_sae=2 * hosts.d_model(m))
    cfg.metadata.hook_name = f"blocks.{last}.hook_resid_post"
    sae = StandardSAE(cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    m.add_sae(sae)
    return m


def test_sae_lens_model_with_probe_and_suppress(sae_model):
    m = sae_model
    name = hosts.resid_post_name(m, -1)
    assert name.endswith(".hook_sae_output")  # the stream the model actually reads downstream
    probe, ban = MIProbe(-1), SuppressTokens([PROMPT[-1]])
    with probe.attach(m), ban.attach(m):
        out = _generate(m)
    got = out[0, len(PROMPT) :].tolist()
    with torch.no_grad():
        _, cache = m.run_with_cache(out[:, :-1])
    ref = cache[name][0, len(PROMPT) - 1 :]
    assert (probe.residuals - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()
    logits = hosts.unembed_resid(m, probe.residuals)
    logits[:, ban.token_ids] = float("-inf")
    assert logits.argmax(-1).tolist() == got
    assert hosts.hook_counts(m) == {}
