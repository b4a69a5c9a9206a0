"""``load_model(device_map=..., n_devices=..., max_memory=...)``: placement passed through.

The bridge boots from an HF model dispatched by ``from_pretrained(device_map=...)`` (TL's boot
refuses ``device_map`` together with ``hf_model=``). On CPU the dispatch path, its numerics against
HF and every refusal are checked; the split over several GPUs needs at least two GPUs (a test below
runs where they exist).
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tl_thinktok import hosts
from tl_thinktok.loading import load_model
from tl_thinktok.loading import models as loading

IDS = torch.tensor([[1, 40, 41, 42, 43, 44, 45]])


@pytest.fixture(scope="module")
def hf(qwen2_dir):
    return AutoModelForCausalLM.from_pretrained(str(qwen2_dir), attn_implementation="eager").eval()


@pytest.mark.parametrize(
    "placement",
    [{"device_map": "cpu"}, {"device_map": {"": "cpu"}}, {"max_memory": {"cpu": "2GiB"}}],
)
def test_dispatched_bridge_equals_hf(qwen2_dir, hf, placement, monkeypatch):
    seen = {}
    real = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    model = load_model(str(qwen2_dir), host="bridge", **placement)
    # passed through to HF's dispatcher (max_memory alone means device_map="auto")
    assert seen["device_map"] == placement.get("device_map", "auto")
    assert seen.get("max_memory") == placement.get("max_memory")
    assert hosts.adapter(model).device == torch.device("cpu")
    with torch.no_grad():
        assert torch.allclose(model(IDS), hf(IDS).logits, atol=1e-5, rtol=1e-5)
        got = model.generate(IDS, max_new_tokens=12, do_sample=False, verbose=False)
        ref = hf.generate(IDS, max_new_tokens=12, min_new_tokens=12, do_sample=False)
    assert got.tolist() == ref.tolist()  # cached generation: the KV-cache fix is in place


def test_placement_resolution_without_loading():
    # bridge: single device → no HF kwargs; device_map → kwargs and no device
    dev, kw, n = loading._placement("bridge", "cpu", None, None, None)
    assert (dev, kw, n) == ("cpu", {}, 1)
    dev, kw, n = loading._placement("bridge", None, "auto", None, {0: "10GiB"})
    assert dev is None and kw == {"device_map": "auto", "max_memory": {0: "10GiB"}}
    assert loading._placement("bridge", None, None, 1, None)[1] == {}  # n_devices=1: one device


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"device": "cpu", "device_map": "auto"}, ValueError, "mutually exclusive"),
        ({"n_devices": 0}, ValueError, "n_devices must be >= 1"),
        ({"n_devices": 1.5}, TypeError, "n_devices must be an int"),
        ({"device_map": 3}, TypeError, "device_map must be a str"),
        ({"max_memory": "1GB"}, TypeError, "max_memory must be a dict"),
    ],
)
def test_bad_placement_is_refused(qwen2_dir, kwargs, err, match):
    with pytest.raises(err, match=match):
        load_model(str(qwen2_dir), host="bridge", **kwargs)


@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="several GPUs: the split really loads")
def test_n_devices_beyond_the_gpus_is_refused(qwen2_dir):
    with pytest.raises(ValueError, match="n_devices=2"):
        load_model(str(qwen2_dir), host="bridge", n_devices=2)


def test_llama2c_checkpoints_load_on_one_device():
    with pytest.raises(ValueError, match="llama2.c checkpoint .* loads on one device"):
        load_model("stories260k", host="bridge", device_map="cpu")


@pytest.mark.skipif("hooked" not in hosts.supported_hosts(), reason="hooked host: TL 3.x only")
def test_hooked_host_refuses_device_map(qwen2_dir):
    with pytest.raises(ValueError, match="device_map / max_memory need host='bridge'"):
        load_model(str(qwen2_dir), host="hooked", device_map="auto")
    with pytest.raises(ValueError, match="device_map / max_memory need host='bridge'"):
        load_model(str(qwen2_dir), host="hooked", max_memory={0: "1GiB"})


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs at least two GPUs")
def test_two_gpu_split_generates_like_hf(qwen2_dir, hf):  # pragma: no cover - multi-GPU only
    model = load_model(str(qwen2_dir), host="bridge", n_devices=2)
    assert {p.device.index for p in model.parameters()} == {0, 1}
    with torch.no_grad():
        got = model.generate(IDS.cuda(), max_new_tokens=12, do_sample=False, verbose=False)
        ref = hf.generate(IDS, max_new_tokens=12, min_new_tokens=12, do_sample=False)
    assert got.cpu().tolist() == ref.tolist()
