"""Integration fixtures: the tiny random Qwen2 on every host the installed TransformerLens offers
(hooked and bridge on TL 3.x, bridge on TL 4.x), and HF's own copy."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM

from tl_thinktok.hosts import supported_hosts
from tl_thinktok.loading import load_model


@pytest.fixture(scope="module", params=list(supported_hosts()))
def model(request, qwen2_dir):
    """The random Qwen2 stand-in loaded with ``load_model`` on each available host (per module)."""
    return load_model(str(qwen2_dir), host=request.param)


@pytest.fixture(scope="module")
def hf(qwen2_dir):
    """The same checkpoint as a plain HF model: the outside reference."""
    return AutoModelForCausalLM.from_pretrained(str(qwen2_dir)).eval()
