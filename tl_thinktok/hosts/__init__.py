"""Host adapters: one object per TransformerLens host, behind one functional API.

:func:`adapter` returns the :class:`HostAdapter` of a model (:class:`HookedAdapter` for
``HookedTransformer`` and sae-lens's ``HookedSAETransformer``, :class:`BridgeAdapter` for
``TransformerBridge``); the functions (``resid_post_name``, ``unembed_resid``, ``to_tokens`` …)
delegate to it. A new host is one new adapter class passed to :func:`register_adapter`.

:func:`supported_hosts` / :func:`default_host` follow the installed TransformerLens: both hosts on
3.x (default ``"hooked"``), only ``"bridge"`` on 4.x (which removed ``HookedTransformer``).

Example:
    >>> from tl_thinktok import hosts
    >>> hosts.adapter(model).name, hosts.logits_name(model)   # doctest: +SKIP
    ('hooked', 'unembed.hook_out')
"""

from tl_thinktok.hosts.base import HostAdapter
from tl_thinktok.hosts.bridge import BridgeAdapter
from tl_thinktok.hosts.functional import *  # noqa: F403
from tl_thinktok.hosts.functional import __all__ as _functional_all
from tl_thinktok.hosts.hooked import HookedAdapter
from tl_thinktok.hosts.registry import ADAPTERS, adapter, register_adapter
from tl_thinktok.hosts.versions import (
    ALL_HOSTS,
    HostUnavailableError,
    check_host_available,
    default_host,
    supported_hosts,
    tl_version,
)

__all__ = [
    "ADAPTERS",
    "ALL_HOSTS",
    "HostUnavailableError",
    "check_host_available",
    "default_host",
    "supported_hosts",
    "tl_version",
    "BridgeAdapter",
    "HookedAdapter",
    "HostAdapter",
    "adapter",
    "register_adapter",
    *_functional_all,
]
