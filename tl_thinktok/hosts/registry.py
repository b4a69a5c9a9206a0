"""Which adapter handles a model: an ordered list of adapter classes, first match wins.

Example:
    >>> from tl_thinktok.hosts import adapter
    >>> adapter(model).name                    # doctest: +SKIP
    'hooked'
"""

from __future__ import annotations

import weakref
from typing import Any

from tl_thinktok.hosts.base import HostAdapter
from tl_thinktok.hosts.bridge import BridgeAdapter
from tl_thinktok.hosts.hooked import HookedAdapter

__all__ = ["ADAPTERS", "adapter", "register_adapter"]

#: Adapter classes tried in order by :func:`adapter`.
ADAPTERS: list[type[HostAdapter]] = [HookedAdapter, BridgeAdapter]

_cache: weakref.WeakKeyDictionary[Any, HostAdapter] = weakref.WeakKeyDictionary()


def register_adapter(cls: type[HostAdapter], *, first: bool = False) -> type[HostAdapter]:
    """Add an adapter class for a new host (usable as a class decorator); returns ``cls``.

    Example:
        >>> @register_adapter                                       # doctest: +SKIP
        ... class MyHostAdapter(HostAdapter): ...
    """
    if not (isinstance(cls, type) and issubclass(cls, HostAdapter)):
        raise TypeError(f"expected a HostAdapter subclass, got {cls!r}")
    if cls not in ADAPTERS:
        ADAPTERS.insert(0, cls) if first else ADAPTERS.append(cls)
    _cache.clear()
    return cls


def adapter(model: Any) -> HostAdapter:
    """The adapter of ``model``'s host (cached per model).

    Raises:
        TypeError: no registered adapter handles ``model`` (the message lists the hosts).
    """
    try:
        return _cache[model]
    except (KeyError, TypeError):  # TypeError: not weak-referenceable / unhashable
        pass
    for cls in ADAPTERS:
        if cls.matches(model):
            ad = cls(model)
            try:
                _cache[model] = ad
            except TypeError:  # pragma: no cover - not weak-referenceable
                pass
            return ad
    raise TypeError(
        "expected a transformer_lens HookedTransformer or TransformerBridge, got "
        f"{type(model).__name__} (supported hosts: {', '.join(c.name for c in ADAPTERS)})"
    )
