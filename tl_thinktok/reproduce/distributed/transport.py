"""Shipping work functions to workers: pickles whose models and context stay behind.

A work function of an experiment is usually a closure over the driver's
:class:`~tl_thinktok.reproduce.context.ExpContext` and its loaded models. :func:`dumps` pickles it
(with cloudpickle, which Ray bundles) but writes the context, every model loaded by it and their
tokenizers as *references*; :func:`loads` in a worker resolves them to the worker's own context
and models (loaded once per worker). So nothing as large as a model crosses the wire, and the
experiment code needs no change to run elsewhere.

Example:
    >>> blob = dumps(lambda item: ctx.load(ctx.model)(item), ctx)      # doctest: +SKIP
    >>> fn = loads(blob, worker_ctx)                                    # doctest: +SKIP
"""

from __future__ import annotations

import io
import pickle
from typing import Any

__all__ = ["dumps", "loads"]


def _refs(ctx: Any) -> dict[int, tuple[str, ...]]:
    """``id(obj)`` → reference of the context, its models and their tokenizers."""
    refs: dict[int, tuple[str, ...]] = {id(ctx): ("ctx",)}
    for name, model in getattr(ctx, "_models", {}).items():
        refs[id(model)] = ("model", name)
        tok = getattr(model, "tokenizer", None)
        if tok is not None:
            refs[id(tok)] = ("tokenizer", name)
    return refs


def dumps(obj: Any, ctx: Any) -> bytes:
    """Pickle ``obj``; ``ctx``, its loaded models and their tokenizers become references.

    Raises:
        ImportError: cloudpickle (bundled with ray) is not installed.
    """
    try:
        from ray.cloudpickle import CloudPickler
    except ImportError:  # pragma: no cover - ray installs it
        from cloudpickle import CloudPickler

    refs = _refs(ctx)

    class _Pickler(CloudPickler):
        def persistent_id(self, o: Any) -> tuple[str, ...] | None:
            return refs.get(id(o))

    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


def loads(data: bytes, ctx: Any) -> Any:
    """Unpickle what :func:`dumps` wrote; references resolve to ``ctx`` and ``ctx.load(name)``."""

    class _Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            kind = pid[0]
            if kind == "ctx":
                return ctx
            if kind == "model":
                return ctx.load(pid[1])
            if kind == "tokenizer":
                return ctx.load(pid[1]).tokenizer
            raise pickle.UnpicklingError(f"unknown reference {pid!r}")

    return _Unpickler(io.BytesIO(data)).load()
