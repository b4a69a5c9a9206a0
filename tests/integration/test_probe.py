"""probe.py: step_residuals / answer_representation / MIProbe vs HF and each other, both hosts."""

from __future__ import annotations

import pytest
import torch

from tl_thinktok import hosts
from tl_thinktok import probe as probe_module
from tl_thinktok.probe import (
    MIProbe,
    answer_representation,
    last_residuals_batch,
    step_residuals,
    step_residuals_batch,
)

PROMPT = [1, 40, 41, 42, 43, 44, 45]


def _hf_block_outputs(hf, tokens: torch.Tensor, layer: int) -> torch.Tensor:
    """Output of HF decoder layer ``layer`` (before the final norm), via a torch forward hook."""
    out = {}

    def grab(mod, args, output):
        out["h"] = (output[0] if isinstance(output, tuple) else output).detach()

    handle = hf.model.layers[layer].register_forward_hook(grab)
    try:
        with torch.no_grad():
            hf(tokens[None])
    finally:
        handle.remove()
    return out["h"][0]


def _generate(model, n, kv=True, prompt=PROMPT):
    toks = torch.tensor([prompt])
    with torch.no_grad():
        return model.generate(
            toks,
            max_new_tokens=n,
            do_sample=False,
            use_past_kv_cache=kv,
            stop_at_eos=False,
            verbose=False,
        )


@pytest.mark.parametrize("layer", [0, -1])
def test_step_residuals_match_hf_block_output(model, hf, layer):
    tokens = torch.tensor(PROMPT + [50, 51, 52, 53, 54])
    h = step_residuals(model, tokens, len(PROMPT), layer)
    ref = _hf_block_outputs(hf, tokens, layer)
    assert h.shape == (len(tokens) - len(PROMPT), hosts.d_model(model))
    # row t = position prompt_len - 1 + t; the last token is never used
    torch.testing.assert_close(h, ref[len(PROMPT) - 1 : -1], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("kv", [True, False])
def test_miprobe_equals_step_residuals(model, kv):
    n = 6
    probe = MIProbe(layer=-1)
    before = hosts.hook_counts(model)
    with probe.attach(model):
        out = _generate(model, n, kv=kv)
    assert hosts.hook_counts(model) == before
    assert out.shape[-1] == len(PROMPT) + n
    teacher = step_residuals(model, out[0], len(PROMPT), -1)
    assert probe.residuals.shape == teacher.shape == (n, hosts.d_model(model))
    # float32: different sequence lengths reorder the matmul sums (a few ulp of |h| ~ 30), so the
    # tolerance is 1e-5 relative to the residual scale; a one-step misalignment is O(|h|)
    scale = teacher.abs().max().item()
    assert (probe.residuals - teacher).abs().max().item() <= 1e-5 * scale
    # the lens of row t at the last block predicts generated token t (alignment check)
    pred = hosts.unembed_resid(model, probe.residuals).argmax(-1)
    assert pred.tolist() == out[0, len(PROMPT) :].tolist()


def test_miprobe_middle_layer_and_batch(model):
    prompts = [PROMPT, [1, 60, 61, 62, 63, 64, 65]]
    probe = MIProbe(layer=0)
    with probe.attach(model), torch.no_grad():
        out = model.generate(
            torch.tensor(prompts), max_new_tokens=4, do_sample=False, stop_at_eos=False,
            verbose=False,
        )  # fmt: skip
    rows = probe.batch_residuals
    assert rows.shape == (2, 4, hosts.d_model(model))
    for i in range(2):
        ref = step_residuals(model, out[i], len(PROMPT), 0)
        assert (rows[i] - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()
    with pytest.raises(ValueError, match="batch of 2"):
        _ = probe.residuals


def test_answer_representation_matches_hf(model, hf, qwen2_dir):
    text = "So 12 * 3 = 36, therefore the answer is 36."
    tok = hosts.tokenizer_of(model)
    ids = tok(text, add_special_tokens=False).input_ids
    if model.cfg.default_prepend_bos:
        ids = [tok.bos_token_id] + ids
    ref = _hf_block_outputs(hf, torch.tensor(ids), -1)[-1]
    got = answer_representation(model, text, -1)
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=1e-5)
    with_bos = answer_representation(model, text, -1, prepend_bos=True)
    ids = [tok.bos_token_id] + tok(text, add_special_tokens=False).input_ids
    ref_bos = _hf_block_outputs(hf, torch.tensor(ids), -1)
    torch.testing.assert_close(with_bos, ref_bos[-1], atol=2e-5, rtol=1e-5)


def _nocco_reference(x: torch.Tensor, y: torch.Tensor, sigma=50.0, eps=1e-5) -> float:
    """PAPER.md §1 written out literally in float64: tr(R_x R_y), R = K H (K H + eps m I)^-1."""
    x, y = x.double(), y.double()
    m = x.shape[0]
    h = torch.eye(m, dtype=torch.float64) - 1.0 / m

    def r(v):
        k = torch.exp(-((v[:, None] - v[None, :]) ** 2) / (2 * sigma**2))
        kt = k @ h
        return kt @ torch.linalg.inv(kt + eps * m * torch.eye(m, dtype=torch.float64))

    rx, ry = r(x), r(y)
    return float((rx * ry.T).sum())


def test_trajectory_matches_reference_formula(model):
    probe = MIProbe(-1)
    with probe.attach(model):
        _generate(model, 3)
    # scale up so that sigma = 50 is not degenerate on this tiny random model
    y = answer_representation(model, "the answer is 36", -1)
    probe._rows = [r * 40 for r in probe._rows]
    traj = probe.trajectory(y * 40, sigma=50.0)
    assert traj.dtype == torch.float64 and traj.shape == (3,)
    for t in range(3):
        ref = _nocco_reference(probe.residuals[t], y * 40)
        assert traj[t].item() == pytest.approx(ref, rel=1e-6, abs=1e-9)


def test_errors_and_no_leaks(model):
    tokens = torch.tensor(PROMPT + [50, 51])
    with pytest.raises(ValueError, match="prompt_len=9"):
        step_residuals(model, tokens, 9, -1)
    with pytest.raises(ValueError, match="prompt_len=0"):
        step_residuals(model, tokens, 0, -1)
    with pytest.raises(ValueError, match=r"layer 5 .*n_layers=2"):
        step_residuals(model, tokens, 3, 5)
    with pytest.raises(ValueError, match="one sequence"):
        step_residuals(model, torch.stack([tokens, tokens]), 3, -1)
    with pytest.raises(ValueError, match="out of range"):
        step_residuals(model, torch.tensor([1, 2, 10**6]), 1, -1)
    with pytest.raises(ValueError, match="non-empty"):
        answer_representation(model, "  ", -1)
    probe = MIProbe(-1)
    with pytest.raises(ValueError, match="recorded nothing"):
        _ = probe.residuals
    before = hosts.hook_counts(model)
    with pytest.raises(RuntimeError, match="boom"):
        with probe.attach(model):
            model(torch.tensor([PROMPT]))
            assert hosts.hook_counts(model) != before
            raise RuntimeError("boom")
    assert hosts.hook_counts(model) == before
    assert len(probe) == 1
    with pytest.raises(ValueError, match=r"shape \[64\]"):
        probe.trajectory(torch.zeros(3))


def test_step_residuals_batch_equals_one_by_one_and_hf(model, hf):
    traces = [PROMPT + [50, 51, 52, 53], [1, 60, 61, 62], [1, 70, 71, 72, 73, 74, 75, 76, 77, 78]]
    lens = [len(PROMPT), 2, 5]  # different lengths and prompt lengths: right padding
    got = step_residuals_batch(model, traces, lens, -1)
    for t, p, h in zip(traces, lens, got, strict=True):
        one = step_residuals(model, torch.tensor(t), p, -1)
        ref = _hf_block_outputs(hf, torch.tensor(t), -1)[p - 1 : -1]
        assert h.shape == one.shape == (len(t) - p, hosts.d_model(model))
        scale = ref.abs().max().item()
        assert (h - one).abs().max().item() <= 1e-5 * scale  # a one-position shift is O(scale)
        assert (h - ref).abs().max().item() <= 2e-5 * scale
    answers = [[1, 80, 81], [1, 82, 83, 84, 85, 86], [90]]
    ys = last_residuals_batch(model, answers, 0)
    assert ys.shape == (3, hosts.d_model(model))
    for a, y in zip(answers, ys, strict=True):
        ref = _hf_block_outputs(hf, torch.tensor(a), 0)[-1]
        assert (y - ref).abs().max().item() <= 2e-5 * ref.abs().max().item()
    with pytest.raises(ValueError, match="trace 1: prompt_len=4"):
        step_residuals_batch(model, traces, [3, 4, 3], -1)
    with pytest.raises(ValueError, match="3 traces but 2 prompt lengths"):
        step_residuals_batch(model, traces, [3, 2], -1)
    with pytest.raises(ValueError, match="non-empty"):
        last_residuals_batch(model, [[1, 2], []], -1)


def test_trajectory_streams_in_chunks_with_the_same_values(model, monkeypatch):
    probe = MIProbe(-1)
    with probe.attach(model):
        _generate(model, 7)
    y = answer_representation(model, "the answer is 36", -1) * 40
    probe._rows = [r * 40 for r in probe._rows]
    whole = probe.trajectory(y)
    monkeypatch.setattr(probe_module, "_STREAM_BYTES", 3 * 8 * hosts.d_model(model))  # 3 steps
    chunked = probe.trajectory(y)
    assert chunked.shape == whole.shape == (7,)
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=0)


def test_pop_rows_moves_rows_out_in_chunks(model, monkeypatch):
    prompts = [PROMPT, [1, 60, 61, 62, 63, 64, 65]]
    probe = MIProbe(layer=-1)
    with probe.attach(model), torch.no_grad():
        model.generate(torch.tensor(prompts), max_new_tokens=7, do_sample=False,
                       stop_at_eos=False, verbose=False)  # fmt: skip
    want = [probe.row_residuals(0, 7), probe.row_residuals(1, 4)]
    monkeypatch.setattr(probe_module, "_STREAM_BYTES", 3 * 2 * 4 * hosts.d_model(model))
    with pytest.raises(ValueError, match="1 step counts for a batch of 2"):
        probe.pop_rows([7])
    with pytest.raises(ValueError, match="n_steps=8"):
        probe.pop_rows([8, 1])
    got = probe.pop_rows([7, 4])
    assert [g.shape[0] for g in got] == [7, 4]
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)
    assert len(probe) == 0
