"""Host adapters: one API over TransformerLens's ``HookedTransformer`` and ``TransformerBridge``."""

from tl_thinktok.hosts.functional import *  # noqa: F403
from tl_thinktok.hosts.functional import __all__ as __all__
