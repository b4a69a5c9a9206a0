"""Which hosts the installed TransformerLens offers, and the default one.

TransformerLens 3.x ships both hosts (``HookedTransformer`` and ``TransformerBridge``); 4.0
removed ``HookedTransformer`` (with ``HookedTransformerConfig``, ``transformer_lens.components``
and the ``pretrained`` weight converters), leaving ``TransformerBridge``. The default host follows
the installed version: ``"hooked"`` on TL 3, ``"bridge"`` on TL 4. The version is read from the
package metadata, so asking never imports TransformerLens.

Example:
    >>> from tl_thinktok.hosts import default_host, supported_hosts
    >>> default_host() in supported_hosts()
    True
"""

from __future__ import annotations

import contextlib
import functools
import re
import warnings
from collections.abc import Iterator
from importlib import metadata

__all__ = [
    "ALL_HOSTS",
    "HostUnavailableError",
    "tl_version",
    "supported_hosts",
    "default_host",
    "check_host_available",
    "runtime_versions",
    "runtime_line",
    "CACHE_RENAME_WARNING",
    "quiet_cache_rename",
]

#: Every host tl-thinktok knows, whatever TransformerLens is installed.
ALL_HOSTS = ("hooked", "bridge")


class HostUnavailableError(ValueError):
    """The requested host does not exist in the installed TransformerLens (e.g. hooked on TL 4)."""


@functools.cache
def tl_version() -> tuple[int, int, int]:
    """The installed TransformerLens version as ``(major, minor, patch)`` (from its metadata).

    Raises:
        ImportError: TransformerLens is not installed.

    Example:
        >>> tl_version()[0] in (3, 4)
        True
    """
    try:
        raw = metadata.version("transformer-lens")
    except metadata.PackageNotFoundError as err:  # pragma: no cover - a hard dependency
        raise ImportError(
            "transformer-lens is not installed; pip install 'transformer-lens>=3.0,<5'"
        ) from err
    return _parse_version(raw)


def _parse_version(raw: str) -> tuple[int, int, int]:
    """``"4.3.0"`` → ``(4, 3, 0)``; pre-release / local suffixes are dropped."""
    m = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", raw)
    if m is None:
        raise ValueError(f"cannot parse a TransformerLens version from {raw!r}")
    return tuple(int(g) if g is not None else 0 for g in m.groups())  # type: ignore[return-value]


def supported_hosts() -> tuple[str, ...]:
    """Hosts the installed TransformerLens offers: ``("hooked", "bridge")`` on 3.x, ``("bridge",)``
    on 4.x.

    Example:
        >>> "bridge" in supported_hosts()
        True
    """
    return ALL_HOSTS if tl_version()[0] < 4 else ("bridge",)


def default_host() -> str:
    """The host ``load_model`` and the CLIs use when none is given: ``"hooked"`` on TL 3.x,
    ``"bridge"`` on TL 4.x.

    Example:
        >>> default_host() == ("hooked" if tl_version()[0] < 4 else "bridge")
        True
    """
    return supported_hosts()[0]


def check_host_available(host: str) -> str:
    """Return ``host`` if the installed TransformerLens offers it.

    Raises:
        ValueError: ``host`` is not one of :data:`ALL_HOSTS`.
        HostUnavailableError: ``host`` exists but not in this TransformerLens (the message names
            the fix: ``host="bridge"`` or ``pip install "transformer-lens<4"``).

    Example:
        >>> check_host_available("bridge")
        'bridge'
    """
    if not isinstance(host, str) or host not in ALL_HOSTS:
        raise ValueError(f"unknown host {host!r}; expected one of {', '.join(ALL_HOSTS)}")
    if host not in supported_hosts():
        ver = ".".join(map(str, tl_version()))
        raise HostUnavailableError(
            f"host={host!r} needs HookedTransformer, which TransformerLens {ver} no longer has "
            "(removed in 4.0). Use host='bridge' (TransformerBridge, the default on "
            "TransformerLens 4), or install TransformerLens 3 for the hooked host: "
            "pip install 'transformer-lens>=3.0,<4'"
        )
    return host


def _dist_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unavailable"


def runtime_versions(host: str | None = None) -> dict[str, str]:
    """TransformerLens, the host, transformers and torch, as printed by the CLIs (no imports).

    Args:
        host: the host used (``None`` = :func:`default_host`).

    Example:
        >>> sorted(runtime_versions())
        ['host', 'torch', 'transformer-lens', 'transformers']
    """
    return {
        "transformer-lens": _dist_version("transformer-lens"),
        "host": host or default_host(),
        "transformers": _dist_version("transformers"),
        "torch": _dist_version("torch"),
    }


def runtime_line(host: str | None = None) -> str:
    """One line naming TransformerLens, the host, transformers and torch (``reproduce`` and
    ``trace`` print it first; ``reproduce`` also writes it to ``timings.json`` and its README).

    Example:
        >>> runtime_line("bridge")  # doctest: +ELLIPSIS
        'tl-thinktok: TransformerLens ..., host bridge, transformers ..., torch ...'
    """
    v = runtime_versions(host)
    return (
        f"tl-thinktok: TransformerLens {v['transformer-lens']}, host {v['host']}, "
        f"transformers {v['transformers']}, torch {v['torch']}"
    )


#: Message of transformers 5.x's rename shim (``past_key_values=`` → ``cache=``), emitted on every
#: step of TransformerLens' cached ``generate`` on the bridge (TL 3.9 and 4.3 still pass
#: ``past_key_values=`` to the HF model).
CACHE_RENAME_WARNING = r"`past_key_values` is deprecated"


@contextlib.contextmanager
def quiet_cache_rename() -> Iterator[None]:
    """Ignore transformers' ``past_key_values`` rename :class:`FutureWarning` inside the block.

    Wraps tl-thinktok's own calls that trigger it (TL's ``generate``); every other warning stays
    as the caller's filters say.

    Example:
        >>> with quiet_cache_rename():
        ...     pass
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=CACHE_RENAME_WARNING, category=FutureWarning)
        yield
