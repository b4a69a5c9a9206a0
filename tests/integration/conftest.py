"""Integration fixtures: the tiny random Qwen2 on both TransformerLens hosts, and HF's own copy."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM

from tl_thinktok.loading import load_model


@pytest.fixture(scope="module", params=["hooked", "bridge"])
def model(request, qwen2_dir):
    """The random Qwen2 stand-in loaded with ``load_model`` on each host (one per test module)."""
    return load_model(str(qwen2_dir), host=request.param)


@pytest.fixture(scope="module")
def hf(qwen2_dir):
    """The same checkpoint as a plain HF model: the outside reference."""
    return AutoModelForCausalLM.from_pretrained(str(qwen2_dir)).eval()
