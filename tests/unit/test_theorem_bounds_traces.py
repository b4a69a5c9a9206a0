"""theorem_bounds' trace part: the packed (KV-cache, 4-D mask) scoring of every cut equals one
plain forward per cut; peak/jump and cumulative-MI statistics against direct definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tl_thinktok.reproduce.experiments import theorem_bounds as tb


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      attn_implementation="eager")  # fmt: skip
    return LlamaForCausalLM(cfg).eval().to(torch.float64)


def _direct_bits(hf, seq: list[int], target: list[int]) -> float:
    """−log2 q(target | everything before it), one forward of the whole sequence."""
    with torch.no_grad():
        logp = torch.log_softmax(hf(torch.tensor([seq])).logits[0].double(), -1)
    m = len(target)
    pos = range(len(seq) - m - 1, len(seq) - 1)
    return -sum(float(logp[p, t]) for p, t in zip(pos, target, strict=True)) / math.log(2)


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_packed_and_plain_cut_scoring_equal_one_forward_per_cut(tiny_llama, chunk):
    rng = np.random.default_rng(1)
    prefix, gen = rng.integers(0, 50, 7).tolist(), rng.integers(0, 50, 11).tolist()
    suffix, target = [3, 4, 5], [9, 1]
    cuts = list(range(len(gen) + 1))
    want = [_direct_bits(tiny_llama, prefix + gen[:t] + suffix + target, target) for t in cuts]
    packed = tb.packed_cut_bits(tiny_llama, prefix, gen, suffix, target, cuts, chunk=chunk)
    plain = tb.plain_cut_bits(lambda ids: tiny_llama(ids).logits, prefix, gen, suffix, target,
                              cuts, batch=chunk)  # fmt: skip
    # HF's eager attention takes its softmax in float32: agreement to float32 round-off
    np.testing.assert_allclose(packed, want, rtol=1e-6)
    np.testing.assert_allclose(plain, want, rtol=1e-6)
    assert np.ptp(want) > 1e-3  # the cut matters far beyond the tolerance: the test could fail


def test_peak_drops_split_and_drop_difference():
    bits = np.array([6.0, 5.0, 5.0, 2.0, 2.5, 0.0])  # drops 1, 0, 3, -0.5, 2.5
    p = tb.peak_drops(bits, [2, 4, 9])  # 9 lies after the thinking part
    np.testing.assert_array_equal(p["drop"], [1.0, 0.0, 3.0, -0.5, 2.5])
    assert p["is_peak"].tolist() == [False, False, True, False, True] and p["n_peaks_outside"] == 1
    q = tb.peak_drops(np.array([3.0, 3.0, 1.0]), [0])  # drops 0, 2: peak 0 vs non-peak 2
    d = tb.drop_difference([p, q], np.arange(2))
    assert d == pytest.approx(((3.0 + 2.5) / 2 - (1.0 + 0.0 - 0.5) / 3 + (0.0 - 2.0)) / 2)
    none = tb.peak_drops(np.array([1.0, 0.0]), [])
    assert math.isnan(tb.drop_difference([none], np.arange(1)))  # undefined: NaN, never 0


def test_token_matched_difference_subtracts_the_same_tokens_non_peak_mean():
    p = tb.peak_drops(np.array([4.0, 3.0, 1.0, 1.0]), [1])  # drops 1, 2, 0; peak at s=1
    q = tb.peak_drops(np.array([2.0, 1.0, 1.0]), [])  # drops 1, 0
    gens = [[7, 8, 8], [8, 7]]  # token 8 at non-peaks: drops 0 (p, s=2) and 1 (q, s=0)
    assert tb.token_matched_difference([p, q], gens, np.arange(2)) == pytest.approx(2.0 - 0.5)
    assert math.isnan(tb.token_matched_difference([p], [[7, 9, 8]], np.arange(1)))


def spearmanr_no_ties(a, b) -> float:
    """Pearson correlation of the ranks (continuous data: no ties)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_cumulative_rho_uses_only_traces_long_enough_and_fixed_t():
    rng = np.random.default_rng(3)
    lens = [5, 6, 3, 8, 7, 9]
    cum = [np.cumsum(rng.random(n)) for n in lens]
    bits = [rng.random(n + 1) * 5 for n in lens]
    got = tb.cumulative_rho(cum, bits, [4], np.arange(len(lens)))
    sel = [i for i, n in enumerate(lens) if n >= 4]
    want = spearmanr_no_ties([cum[i][3] for i in sel], [-bits[i][4] for i in sel])
    assert got == pytest.approx(want)
    both = tb.cumulative_rho(cum, bits, [4, 6], np.arange(len(lens)))
    sel6 = [i for i, n in enumerate(lens) if n >= 6]
    want6 = spearmanr_no_ties([cum[i][5] for i in sel6], [-bits[i][6] for i in sel6])
    assert both == pytest.approx((want + want6) / 2)
    assert math.isnan(tb.cumulative_rho(cum, bits, [9], np.arange(len(lens))))  # one trace


def test_spearman_nan_when_undefined():
    assert math.isnan(tb.spearman(np.ones(5), np.arange(5)))
    assert math.isnan(tb.spearman(np.arange(2), np.arange(2)))
    assert tb.spearman(np.arange(5), -(np.arange(5) ** 3)) == pytest.approx(-1.0)
