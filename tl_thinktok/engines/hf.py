"""``HFEngine``: the HF model's own ``generate`` (greedy, left padding with an attention mask)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tl_thinktok import generation, hosts
from tl_thinktok.engines.base import Engine, EngineUnavailable

__all__ = ["HFEngine", "source_dir"]


def source_dir(model: Any) -> Path | None:
    """The HF checkpoint directory ``model`` was loaded from (``LoadInfo.source_dir``), if any."""
    info = getattr(model, "thinktok_info", None)
    d = getattr(info, "source_dir", None)
    return Path(d) if d and (Path(d) / "config.json").is_file() else None


def _hf_model(model: Any) -> torch.nn.Module:
    """A plain HF model with ``model``'s weights: reloaded from its checkpoint directory (no
    bridge wiring, no TL hooks), else the bridge's wrapped model."""
    dtype = next(model.parameters()).dtype
    d = source_dir(model)
    if d is not None:
        from transformers import AutoModelForCausalLM

        hf = AutoModelForCausalLM.from_pretrained(
            str(d), dtype=dtype, local_files_only=True, attn_implementation="eager"
        )
        return hf.to(hosts.model_device(model)).eval()
    try:
        om = model.original_model
    except AttributeError:
        om = None
    if isinstance(om, torch.nn.Module) and callable(getattr(om, "generate", None)):
        hosts.adapter(model).fix_kv_cache()
        return om
    raise EngineUnavailable(
        "the hf engine needs the model's HF checkpoint directory (load_model of a local HF dir, "
        "a bundled model or a .gguf file) or a TransformerBridge; this model has neither"
    )


class HFEngine(Engine):
    """``transformers`` ``generate`` on the model's HF checkpoint (greedy, blank generation config).

    The checkpoint's own generation config (repetition penalty, suppressed ids, ...) is set aside:
    plain argmax, as every engine. Bans: HF ``suppress_tokens``. float64 with prompts of unequal
    length is decoded in one unpadded batch per length (HF eager attention takes its softmax in
    float32, where a fully masked pad query is NaN).

    Example:
        >>> HFEngine(model).generate([[1, 5, 7]], 8)   # doctest: +SKIP
    """

    name = "hf"

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.hf = _hf_model(model)

    @torch.no_grad()
    def _generate(self, prompts, max_new_tokens, banned, stops, stop_at_eos):  # noqa: D102
        from transformers import GenerationConfig

        eos = generation.eos_id(self.model) if stop_at_eos else None
        ends = sorted(set(stops) | ({eos} if eos is not None else set()))
        pad = generation.pad_id(self.model)
        cfg = GenerationConfig(
            max_new_tokens=int(max_new_tokens), do_sample=False, num_beams=1, use_cache=True,
            eos_token_id=ends or None, pad_token_id=pad, suppress_tokens=banned or None,
        )  # fmt: skip
        dev = hosts.model_device(self.model)
        if next(self.hf.parameters()).dtype == torch.float64:
            groups = [[i for i, p in enumerate(prompts) if len(p) == n]
                      for n in sorted({len(p) for p in prompts})]  # fmt: skip
        else:
            groups = [list(range(len(prompts)))]
        out: list[list[int]] = [[] for _ in prompts]
        saved = self.hf.generation_config
        try:
            # transformers 5 fills unset fields from the checkpoint's config: set it aside
            self.hf.generation_config = GenerationConfig()
            for rows in groups:
                width = max(len(prompts[i]) for i in rows)
                toks = torch.tensor(
                    [[pad] * (width - len(prompts[i])) + prompts[i] for i in rows], device=dev
                )
                mask = torch.tensor(
                    [[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in rows],
                    device=dev,
                )
                res = self.hf.generate(toks, attention_mask=mask, generation_config=cfg)
                for i, row in zip(rows, res[:, width:].tolist(), strict=True):
                    out[i] = row
        finally:
            self.hf.generation_config = saved
        return out
