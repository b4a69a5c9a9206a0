"""Checkpoint features a host would silently get wrong: refused, or equal to HF.

Random-weight HF checkpoints with the real architectures' features (no hub):

* RoPE whose tables HF recomputes from the sequence length — ``longrope`` (short factors up to
  ``original_max_position_embeddings``, long ones past it) and ``dynamic`` NTK (grows the base once
  the sequence passes ``max_position_embeddings``). HF's batched (left-padded) ``generate`` itself
  differs from each prompt generated alone there (the tables follow the longest row), so no host
  reproduces them: both refuse at load, naming the kind. With the fixed-table kinds (``linear``,
  ``llama3``) the bridge's greedy tokens on every engine (``tl``, ``hf``), with generation
  crossing ``original_max_position_embeddings``, equal HF ``generate`` of each prompt alone, and
  the chunked teacher-forced residuals equal HF's hidden states; the hooked host refuses
  ``linear`` (TransformerLens has no such scaling).
* Qwen2 / Qwen3 with a sliding window that a layer uses, and Qwen3 with attention biases: the hooked
  host's conversion drops them, so ``load_model(host="hooked")`` refuses, naming the feature; the
  bridge (HF's own modules) equals HF.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tl_thinktok import generation, hosts
from tl_thinktok.engines import get_engine
from tl_thinktok.loading import load_model
from tl_thinktok.probe import step_residuals_batch
from tl_thinktok.testing.models import make_random_hf_model

N_NEW = 20
TEXTS = ["Once upon a time there was", "So, the answer is", "The quick brown fox"]
HEAD_DIM = 16  # d_model 64 / 4 heads


def _longrope() -> dict:
    half = HEAD_DIM // 2
    return {
        "max_position_embeddings": 64,
        "rope_parameters": {
            "rope_type": "longrope",
            "rope_theta": 10000.0,
            "original_max_position_embeddings": 16,  # prompts are ~6–10 tokens: crossed mid-way
            "short_factor": [1.0 + 0.1 * i for i in range(half)],
            "long_factor": [2.0 + 0.7 * i for i in range(half)],
        },
    }


#: name → (arch, extra HF config fields)
CASES = {
    "linear": (
        "llama",
        {"rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 3.0}},
    ),  # fmt: skip
    "llama3": (
        "llama",
        {
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 10000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            }
        },
    ),  # fmt: skip
    "qwen2-sliding": (
        "qwen2",
        {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 0},
    ),
    "qwen3-sliding": (
        "qwen3",
        {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 0},
    ),
    "qwen3-attention-bias": ("qwen3", {"attention_bias": True, "random_biases": True}),
}
#: RoPE kinds no host reproduces: refused at load on every host
LENGTH_DEPENDENT = {
    "longrope": ("llama", _longrope()),
    "dynamic": (
        "llama",
        {
            "max_position_embeddings": 16,
            "rope_parameters": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 4.0},
        },
    ),  # fmt: skip
}
#: features the hooked host must refuse at load, with the words its error must contain
HOOKED_REFUSES = {
    "linear": "linear",
    "qwen2-sliding": "use_sliding_window",
    "qwen3-sliding": "use_sliding_window",
    "qwen3-attention-bias": "attention_bias",
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    out = {}
    every = CASES | LENGTH_DEPENDENT
    for name, (arch, extra) in every.items():
        path = tmp_path_factory.mktemp(name)
        out[name] = make_random_hf_model(path, arch, seed=1, **extra)
    return out


def _hf_alone(hf, ids: list[int], eos: int | None, pad: int) -> list[int]:
    x = torch.tensor([ids])
    with torch.no_grad():
        out = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=N_NEW,
                          do_sample=False, eos_token_id=eos, pad_token_id=pad)  # fmt: skip
    row = out[0, len(ids) :].tolist()
    return row[: row.index(eos) + 1] if eos is not None and eos in row else row


@pytest.mark.parametrize("engine", ["tl", "hf"])
@pytest.mark.parametrize("name", list(CASES))
def test_bridge_engines_and_residuals_equal_hf(checkpoints, name, engine):
    """Greedy tokens of each engine equal HF ``generate`` of each prompt alone (past
    ``original_max_position_embeddings`` / the sliding window); the chunked teacher-forced
    residuals equal HF's hidden states of block 0."""
    if "bridge" not in hosts.supported_hosts():
        pytest.fail("every supported TransformerLens version offers the bridge")
    path = checkpoints[name]
    bridge = load_model(str(path), host="bridge")
    hf = AutoModelForCausalLM.from_pretrained(str(path), attn_implementation="eager").eval()
    prompts = [generation.encode(bridge, t) for t in TEXTS]
    eos, pad = generation.eos_id(bridge), generation.pad_id(bridge)
    new = get_engine(bridge, engine).generate(prompts, N_NEW)
    assert new == [_hf_alone(hf, p, eos, pad) for p in prompts]
    assert any(len(p) + len(g) > 16 for p, g in zip(prompts, new, strict=True))  # crossed
    full = [p + g for p, g in zip(prompts, new, strict=True)]
    got = step_residuals_batch(bridge, full, [len(p) for p in prompts], 0, chunk=5)
    for f, p, h in zip(full, prompts, got, strict=True):
        with torch.no_grad():
            ref = hf(torch.tensor([f[:-1]]), output_hidden_states=True).hidden_states[1][0]
        torch.testing.assert_close(h, ref[len(p) - 1 :], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(HOOKED_REFUSES))
def test_hooked_host_refuses_what_its_conversion_drops(checkpoints, name):
    if "hooked" not in hosts.supported_hosts():
        pytest.skip("TransformerLens 4.x has no HookedTransformer (the bridge case runs)")
    with pytest.raises(ValueError, match=HOOKED_REFUSES[name]) as err:
        load_model(str(checkpoints[name]), host="hooked")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", list(LENGTH_DEPENDENT))
@pytest.mark.parametrize("host", ["bridge", "hooked"])
def test_length_dependent_rope_is_refused_on_every_host(checkpoints, name, host):
    if host not in hosts.supported_hosts():
        pytest.skip(f"the installed TransformerLens has no {host} host")
    with pytest.raises(ValueError, match=name) as err:
        load_model(str(checkpoints[name]), host=host)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["qwen3-attention-bias", "qwen2-sliding"])
def test_load_time_check_catches_what_the_hooked_conversion_drops(checkpoints, name, monkeypatch):
    """Without the feature refusal, the logits check alone refuses these checkpoints on the hooked
    host (``hooked_dropped_feature`` disabled), with the max difference in one line; the bridge
    passes it, and ``verify=False`` records nothing."""
    if "hooked" not in hosts.supported_hosts():
        pytest.skip("TransformerLens 4.x has no HookedTransformer")
    from tl_thinktok.loading import models

    monkeypatch.setattr(models, "hooked_dropped_feature", lambda *a, **k: None)
    with pytest.raises(ValueError, match=r"max \|logit difference\| [0-9.e+-]+ > ") as err:
        load_model(str(checkpoints[name]), host="hooked")
    assert "\n" not in str(err.value)
    monkeypatch.undo()
    info = load_model(str(checkpoints[name]), host="bridge").thinktok_info
    assert info.verified["max_abs_diff"] <= info.verified["tolerance"]
    assert info.verified["tokens"] >= 4 + 16  # past the sliding window of 4
    unchecked = load_model(str(checkpoints[name]), host="bridge", verify=False)
    assert unchecked.thinktok_info.verified is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_load_time_check_passes_on_faithful_hosts(dtype):
    """The bundled organism on every host: the check ran, and its difference is round-off."""
    for host in hosts.supported_hosts():
        info = load_model("organism", host=host, dtype=dtype).thinktok_info
        assert info.verified is not None and info.verified["tokens"] == 32
        assert info.verified["max_abs_diff"] <= info.verified["tolerance"] / 4
