"""Local stand-ins for real models: random-weight HF checkpoints saved to a directory.

No hub access is needed: the tokenizer is a small byte-level BPE trained on a fixed text, and the
weights come from a seeded random initialisation of the HF architecture. These directories load
through exactly the same path as real Qwen2 / Qwen3 / Llama checkpoints (``load_model(path)``).

Example:
    >>> from tl_thinktok.testing.models import make_random_hf_model
    >>> path = make_random_hf_model("/tmp/rq", arch="qwen2", n_layers=2, d_model=64)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

_CORPUS = [
    "Once upon a time there was a little model that liked to think before it answered.",
    "So, let me compute this step by step. First, 3 + 4 = 7. Wait, let me check: 7 is right.",
    "Hmm, therefore the answer is \\boxed{42}. Okay, now I am sure. But maybe I should verify.",
    "The quick brown fox jumps over the lazy dog 0123456789 times, then it rests.",
    "User: What is 12 times 3?\nAssistant: <think> So 12 * 3 = 36. </think> \\boxed{36}",
]

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]


def make_tokenizer(path: str | Path, vocab_size: int = 384):
    """Train (deterministically) and save a small byte-level BPE ``PreTrainedTokenizerFast``.

    Args:
        path: directory to write ``tokenizer.json`` and the HF tokenizer config into.
        vocab_size: target vocabulary size (>= 256 + specials).

    Returns:
        The loaded ``PreTrainedTokenizerFast`` (re-read from ``path``, as a user would load it).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )
    fast.save_pretrained(str(path))
    return PreTrainedTokenizerFast.from_pretrained(str(path))


def make_random_hf_model(
    path: str | Path,
    arch: str = "qwen2",
    *,
    n_layers: int = 2,
    d_model: int = 64,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    d_mlp: int | None = None,
    seed: int = 0,
    init_std: float = 0.2,
    tie_word_embeddings: bool = False,
    random_biases: bool = False,
    **config: Any,
) -> Path:
    """Save a random-weight HF causal LM (qwen2, qwen3 or llama) and its tokenizer to ``path``.

    ``init_std`` is larger than HF's default so that greedy generation is not degenerate (a model
    with tiny weights repeats one token forever, which makes parity tests weak).

    ``random_biases``: draw every bias from N(0, init_std²) too (HF initialises them to 0, which
    would hide a host that drops them). ``config``: further HF config fields (e.g.
    ``rope_parameters``, ``use_sliding_window``, ``attention_bias``, ``max_position_embeddings``),
    passed to the config class.

    Returns:
        ``path`` as a ``Path``; it holds config.json, model.safetensors and tokenizer files.
    """
    import transformers

    path = Path(path)
    tokenizer = make_tokenizer(path)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=d_model,
        intermediate_size=d_mlp or 4 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads,
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tie_word_embeddings,
        initializer_range=init_std,
    )
    common.update(config)
    arch = arch.lower()
    if arch == "qwen2":
        cfg = transformers.Qwen2Config(**{"rope_theta": 10000.0, **common})
        cls = transformers.Qwen2ForCausalLM
    elif arch == "qwen3":
        cfg = transformers.Qwen3Config(head_dim=d_model // n_heads, **common)
        cls = transformers.Qwen3ForCausalLM
    elif arch == "llama":
        cfg = transformers.LlamaConfig(**common)
        cls = transformers.LlamaForCausalLM
    else:
        raise ValueError(f"unknown arch {arch!r}; expected one of 'qwen2', 'qwen3', 'llama'")
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    if random_biases:
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if pname.endswith(".bias"):
                    p.normal_(0.0, init_std)
    model.save_pretrained(str(path))
    (path / "STANDIN.json").write_text(json.dumps({"random_weights": True, "seed": seed}))
    return path
