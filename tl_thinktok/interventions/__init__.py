"""Intervene during generation: suppression, Representation Recycling, thinking-token TTS.

Every component derives from :class:`Component` (``fwd_hooks``, ``reset``, ``attach``);
:func:`attach_all` attaches several in the right order (RR innermost).

Example:
    >>> from tl_thinktok.interventions import SuppressTokens, attach_all
    >>> ban = SuppressTokens([3, 5])
    >>> with attach_all(model, ban):                       # doctest: +SKIP
    ...     model.generate(tokens, max_new_tokens=8, do_sample=False)
"""

from tl_thinktok.interventions.base import Component, ModuleHook, attach_all
from tl_thinktok.interventions.recycle import RepresentationRecycling
from tl_thinktok.interventions.suppress import SuppressTokens, random_control
from tl_thinktok.interventions.ttts import TTTSResult, budget_forcing, reference_ttts

__all__ = [
    "Component",
    "ModuleHook",
    "RepresentationRecycling",
    "SuppressTokens",
    "TTTSResult",
    "attach_all",
    "budget_forcing",
    "random_control",
    "reference_ttts",
]
