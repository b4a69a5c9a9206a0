"""llama2.c checkpoints and tokenizers, converted to their HF Llama equivalents.

Reads Karpathy's llama2.c "legacy" checkpoint format (a 7-int32 header followed by float32 arrays)
into an HF ``LlamaForCausalLM`` and provides :class:`Llama2cTokenizer`, a ``transformers``
tokenizer that encodes and decodes exactly like llama2.c's ``run.c``.

llama2.c rotates *adjacent* pairs of query/key dimensions (2i, 2i+1) while HF Llama rotates the
two halves of each head; the query/key rows are permuted per head on conversion (as llama2.c's own
``export.py`` does), so the resulting HF model computes the same function.

Example:
    >>> from tl_thinktok.loading.llama2c import Llama2cTokenizer, load_llama2c_hf_model
    >>> tok = Llama2cTokenizer("tokenizer.bin")  # doctest: +SKIP
    >>> tok.encode("Once upon a time")  # doctest: +SKIP
    [1, 403, 407, 261, 378]
    >>> hf_model = load_llama2c_hf_model("checkpoint_legacy.bin")  # doctest: +SKIP
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

BOS_ID = 1
EOS_ID = 2
UNK_ID = 0
_BYTE_PIECE = re.compile(rb"^<0x([0-9A-Fa-f]{2})>$")
_HEADER = struct.Struct("<7i")


@dataclass(frozen=True)
class Llama2cConfig:
    """The llama2.c checkpoint header.

    Attributes:
        dim: residual width (d_model).
        hidden_dim: SwiGLU hidden width (d_mlp).
        n_layers: number of decoder blocks.
        n_heads: number of query heads.
        n_kv_heads: number of key/value heads (GQA when < n_heads).
        vocab_size: vocabulary size (absolute value of the header field).
        seq_len: maximum context length.
        shared_classifier: True when the output projection is tied to the token embedding.
    """

    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool

    @property
    def head_size(self) -> int:
        """Per-head width."""
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        """Total key/value width."""
        return self.dim * self.n_kv_heads // self.n_heads


def read_llama2c_checkpoint(path: str | Path) -> tuple[Llama2cConfig, dict[str, torch.Tensor]]:
    """Read a llama2.c legacy checkpoint into its config and raw llama2.c-named float32 tensors.

    Args:
        path: the ``.bin`` checkpoint (llama2.c "legacy"/version-0 format).

    Returns:
        ``(config, weights)``; weights keys: token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1,
        w2, w3, rms_final and (if unshared) wcls. Matrices are ``[out, in]`` per layer.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the header is implausible or the file size does not match it.

    Example:
        >>> cfg, w = read_llama2c_checkpoint("checkpoint_legacy.bin")  # doctest: +SKIP
        >>> cfg.dim, w["wq"].shape  # doctest: +SKIP
        (64, torch.Size([5, 64, 64]))
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"llama2.c checkpoint file not found: {path}")
    raw = path.read_bytes()
    if len(raw) < _HEADER.size:
        raise ValueError(f"llama2.c checkpoint {path} is too short for its 28-byte header")
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = _HEADER.unpack_from(raw, 0)
    if min(dim, hidden, n_layers, n_heads, n_kv, seq_len) <= 0 or vocab == 0 or dim % n_heads:
        raise ValueError(
            f"{path} does not look like a llama2.c legacy checkpoint (header dim={dim}, "
            f"hidden_dim={hidden}, n_layers={n_layers}, n_heads={n_heads}, n_kv_heads={n_kv}, "
            f"vocab_size={vocab}, seq_len={seq_len})"
        )
    cfg = Llama2cConfig(dim, hidden, n_layers, n_heads, n_kv, abs(vocab), seq_len, vocab > 0)
    hs, kv, L, V = cfg.head_size, cfg.kv_dim, n_layers, cfg.vocab_size
    shapes = [
        ("token_embedding", (V, dim)),
        ("rms_att", (L, dim)),
        ("wq", (L, dim, dim)),
        ("wk", (L, kv, dim)),
        ("wv", (L, kv, dim)),
        ("wo", (L, dim, dim)),
        ("rms_ffn", (L, dim)),
        ("w1", (L, hidden, dim)),
        ("w2", (L, dim, hidden)),
        ("w3", (L, hidden, dim)),
        ("rms_final", (dim,)),
        ("freq_cis_real", (seq_len, hs // 2)),
        ("freq_cis_imag", (seq_len, hs // 2)),
    ]
    if not cfg.shared_classifier:
        shapes.append(("wcls", (V, dim)))
    n_floats = sum(int(np.prod(s)) for _, s in shapes)
    expected = _HEADER.size + 4 * n_floats
    if len(raw) != expected:
        raise ValueError(
            f"llama2.c checkpoint {path} has {len(raw)} bytes but its header implies {expected}"
        )
    flat = np.frombuffer(raw, dtype="<f4", offset=_HEADER.size)
    weights: dict[str, torch.Tensor] = {}
    offset = 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        weights[name] = torch.from_numpy(flat[offset : offset + n].reshape(shape).copy())
        offset += n
    return cfg, weights


def _adjacent_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Permute q/k rows per head from adjacent-pair RoPE order to HF's rotate-half order."""
    out_dim, in_dim = w.shape
    return (
        w.reshape(n_heads, out_dim // n_heads // 2, 2, in_dim)
        .transpose(1, 2)
        .reshape(out_dim, in_dim)
    )


def llama2c_to_hf_config(cfg: Llama2cConfig) -> Any:
    """The ``transformers.LlamaConfig`` matching a llama2.c header (RoPE base 10000, eps 1e-5)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.dim,
        intermediate_size=cfg.hidden_dim,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads,
        max_position_embeddings=cfg.seq_len,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        hidden_act="silu",
        tie_word_embeddings=cfg.shared_classifier,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=None,
        attention_bias=False,
        mlp_bias=False,
        architectures=["LlamaForCausalLM"],
    )


def load_llama2c_hf_model(path: str | Path, dtype: torch.dtype = torch.float32) -> Any:
    """Load a llama2.c legacy checkpoint as an HF ``LlamaForCausalLM`` (eval mode, in memory).

    Args:
        path: the llama2.c ``.bin`` checkpoint.
        dtype: parameter dtype of the returned model.

    Returns:
        A ``transformers.LlamaForCausalLM`` computing the same function as llama2.c's ``run.c``.

    Example:
        >>> model = load_llama2c_hf_model("checkpoint_legacy.bin")  # doctest: +SKIP
        >>> model.config.num_hidden_layers  # doctest: +SKIP
        5
    """
    from transformers import LlamaForCausalLM

    cfg, w = read_llama2c_checkpoint(path)
    hf_cfg = llama2c_to_hf_config(cfg)
    sd: dict[str, torch.Tensor] = {"model.embed_tokens.weight": w["token_embedding"]}
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = w["rms_att"][i]
        sd[p + "self_attn.q_proj.weight"] = _adjacent_to_half(w["wq"][i], cfg.n_heads)
        sd[p + "self_attn.k_proj.weight"] = _adjacent_to_half(w["wk"][i], cfg.n_kv_heads)
        sd[p + "self_attn.v_proj.weight"] = w["wv"][i]
        sd[p + "self_attn.o_proj.weight"] = w["wo"][i]
        sd[p + "post_attention_layernorm.weight"] = w["rms_ffn"][i]
        sd[p + "mlp.gate_proj.weight"] = w["w1"][i]
        sd[p + "mlp.down_proj.weight"] = w["w2"][i]
        sd[p + "mlp.up_proj.weight"] = w["w3"][i]
    sd["model.norm.weight"] = w["rms_final"]
    sd["lm_head.weight"] = w["token_embedding"] if cfg.shared_classifier else w["wcls"]
    with torch.device("cpu"):
        model = LlamaForCausalLM(hf_cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if "rotary_emb" not in k]
    if missing or unexpected:
        raise ValueError(
            f"llama2.c → HF conversion mismatch: missing={missing} unexpected={unexpected}"
        )
    if cfg.shared_classifier:
        model.tie_weights()
    return model.to(dtype).eval()


def read_llama2c_vocab(path: str | Path) -> tuple[list[bytes], list[float], int]:
    """Read a llama2.c ``tokenizer.bin``.

    Args:
        path: the tokenizer file.

    Returns:
        ``(pieces, scores, max_token_length)``: one byte string and one float score per id.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the file is truncated or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"llama2.c tokenizer file not found: {path}")
    raw = path.read_bytes()
    try:
        (max_len,) = struct.unpack_from("<i", raw, 0)
        offset = 4
        pieces: list[bytes] = []
        scores: list[float] = []
        while offset < len(raw):
            score, length = struct.unpack_from("<fi", raw, offset)
            offset += 8
            if length < 0 or offset + length > len(raw):
                raise struct.error("bad piece length")
            pieces.append(raw[offset : offset + length])
            scores.append(score)
            offset += length
    except struct.error as err:
        raise ValueError(f"malformed llama2.c tokenizer file {path}: {err}") from err
    if len(pieces) < 259:
        raise ValueError(
            f"llama2.c tokenizer {path} has {len(pieces)} pieces; need >= 259 (3 specials + 256 "
            "byte-fallback tokens)"
        )
    return pieces, scores, max_len


def llama2c_encode(
    text: str, pieces: list[bytes], scores: list[float], lookup: dict[bytes, int] | None = None
) -> list[int]:
    """Encode ``text`` exactly like llama2.c ``run.c`` ``encode(t, text, bos=0, eos=0)``.

    A dummy " " token is prepended when ``text`` is non-empty; each UTF-8 character (at most 4
    bytes) is looked up, unknown ones fall back to one token per byte (id = byte + 3); then the
    adjacent pair whose concatenated piece has the highest score is merged, leftmost on ties, until
    no pair merges.

    Args:
        text: the text to encode.
        pieces: vocabulary pieces (byte strings) by id.
        scores: merge scores by id.
        lookup: optional precomputed ``{piece: id}``.

    Returns:
        Token ids (no BOS/EOS).
    """
    if lookup is None:
        lookup = {p: i for i, p in enumerate(pieces)}
    data = text.encode("utf-8")
    if not data:
        return []
    tokens = [lookup[b" "]]
    buf = bytearray()
    for k, byte in enumerate(data):
        if (byte & 0xC0) != 0x80:
            buf = bytearray()
        buf.append(byte)
        nxt = data[k + 1] if k + 1 < len(data) else 0
        if (nxt & 0xC0) == 0x80 and len(buf) < 4:
            continue
        tid = lookup.get(bytes(buf), -1)
        if tid != -1:
            tokens.append(tid)
        else:
            tokens.extend(b + 3 for b in buf)
        buf = bytearray()
    while True:
        best_score, best_id, best_idx = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            tid = lookup.get(pieces[tokens[i]] + pieces[tokens[i + 1]], -1)
            if tid != -1 and scores[tid] > best_score:
                best_score, best_id, best_idx = scores[tid], tid, i
        if best_idx == -1:
            break
        tokens[best_idx : best_idx + 2] = [best_id]
    return tokens


def llama2c_piece_bytes(prev_id: int | None, token_id: int, pieces: list[bytes]) -> bytes:
    """The bytes ``run.c``'s ``decode(prev_token, token)`` yields for one token.

    The leading space of a piece that follows BOS is stripped, and ``<0xXX>`` pieces become the raw
    byte.
    """
    piece = pieces[token_id]
    if prev_id == BOS_ID and piece[:1] == b" ":
        piece = piece[1:]
    m = _BYTE_PIECE.match(piece)
    if m:
        return bytes([int(m.group(1), 16)])
    return piece


def _piece_to_str(piece: bytes) -> str:
    return piece.decode("utf-8", errors="surrogateescape")


def _str_to_piece(token: str) -> bytes:
    return token.encode("utf-8", errors="surrogateescape")


def _tokenizer_base() -> type:
    from transformers import PreTrainedTokenizer

    return PreTrainedTokenizer


class Llama2cTokenizer(_tokenizer_base()):  # type: ignore[misc]
    """An HF (slow, python) tokenizer that encodes and decodes exactly like llama2.c ``run.c``.

    ``encode(text)`` returns ``[BOS] + llama2c_encode(text)`` (run.c with ``bos=1, eos=0``);
    ``decode`` concatenates run.c's per-token pieces (leading space stripped after BOS, byte tokens
    as raw bytes) and decodes the bytes as UTF-8. Special tokens are ``<unk>`` (0), ``<s>`` (1, BOS)
    and ``</s>`` (2, EOS); their llama2.c pieces are replaced by these names. Note: like every HF
    slow tokenizer, literal special-token strings in the text (e.g. ``"<s>"``) are split out first.

    Args:
        vocab_file: path to llama2.c ``tokenizer.bin``.
        add_bos_token: prepend BOS in ``encode`` / ``__call__`` (run.c does).

    Example:
        >>> tok = Llama2cTokenizer("tokenizer.bin")  # doctest: +SKIP
        >>> tok.decode(tok.encode("Once upon a time"), skip_special_tokens=True)  # doctest: +SKIP
        'Once upon a time'
    """

    vocab_files_names = {"vocab_file": "tokenizer.bin"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file: str | Path, add_bos_token: bool = True, **kwargs: Any) -> None:
        pieces, scores, max_len = read_llama2c_vocab(vocab_file)
        self.vocab_file = str(vocab_file)
        self.pieces = pieces
        self.scores = scores
        self.max_token_length = max_len
        self._lookup = {p: i for i, p in enumerate(pieces)}
        self._special = {UNK_ID: "<unk>", BOS_ID: "<s>", EOS_ID: "</s>"}
        self._tokens = [self._special.get(i, _piece_to_str(p)) for i, p in enumerate(pieces)]
        self._token_ids = {t: i for i, t in enumerate(self._tokens)}
        self.add_bos_token = add_bos_token
        kwargs.setdefault("bos_token", "<s>")
        kwargs.setdefault("eos_token", "</s>")
        kwargs.setdefault("unk_token", "<unk>")
        kwargs.setdefault("clean_up_tokenization_spaces", False)
        kwargs.setdefault("name_or_path", str(Path(vocab_file).parent))
        super().__init__(add_bos_token=add_bos_token, **kwargs)

    @property
    def vocab_size(self) -> int:
        """Number of ids in the llama2.c vocabulary."""
        return len(self.pieces)

    def get_vocab(self) -> dict[str, int]:
        """Token string → id (pieces decoded as UTF-8; specials by name)."""
        return dict(self._token_ids)

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return [
            self._tokens[i] for i in llama2c_encode(text, self.pieces, self.scores, self._lookup)
        ]

    def _convert_token_to_id(self, token: str) -> int:
        return self._token_ids.get(token, UNK_ID)

    def _convert_id_to_token(self, index: int) -> str:
        return self._tokens[index]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Join tokens as run.c would print them (no BOS context)."""
        ids = [self._convert_token_to_id(t) for t in tokens]
        return self._decode(ids)

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """``[BOS] + ids`` when ``add_bos_token`` (pairs: ``[BOS] a [BOS] b``)."""
        bos = [BOS_ID] if self.add_bos_token else []
        if token_ids_1 is None:
            return bos + list(token_ids_0)
        return bos + list(token_ids_0) + bos + list(token_ids_1)

    def get_special_tokens_mask(
        self,
        token_ids_0: list[int],
        token_ids_1: list[int] | None = None,
        already_has_special_tokens: bool = False,
    ) -> list[int]:
        """1 where a BOS would be added, else 0."""
        if already_has_special_tokens:
            return [1 if t in self._special else 0 for t in token_ids_0]
        bos = [1] if self.add_bos_token else []
        mask = bos + [0] * len(token_ids_0)
        if token_ids_1 is not None:
            mask += bos + [0] * len(token_ids_1)
        return mask

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """Number of BOS tokens added to one sequence (or a pair)."""
        return (2 if pair else 1) if self.add_bos_token else 0

    def _decode(
        self,
        token_ids: int | list[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> str:
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        out = bytearray()
        prev: int | None = None
        for tid in (int(t) for t in token_ids):
            if tid in self._special:
                if not skip_special_tokens:
                    out += self._special[tid].encode()
            else:
                out += llama2c_piece_bytes(prev, tid, self.pieces)
            prev = tid
        return out.decode("utf-8", errors="replace")

    def save_vocabulary(
        self, save_directory: str, filename_prefix: str | None = None
    ) -> tuple[str, ...]:
        """Copy ``tokenizer.bin`` into ``save_directory``."""
        name = (filename_prefix + "-" if filename_prefix else "") + "tokenizer.bin"
        dest = Path(save_directory) / name
        dest.write_bytes(Path(self.vocab_file).read_bytes())
        return (str(dest),)
