"""Intervene during generation: suppression, Representation Recycling, thinking-token TTS.

Example:
    >>> from tl_thinktok.interventions import SuppressTokens
    >>> ban = SuppressTokens([3, 5])
"""

from tl_thinktok.interventions.recycle import RepresentationRecycling
from tl_thinktok.interventions.suppress import SuppressTokens, random_control
from tl_thinktok.interventions.ttts import TTTSResult, budget_forcing, reference_ttts

__all__ = [
    "RepresentationRecycling",
    "SuppressTokens",
    "TTTSResult",
    "budget_forcing",
    "random_control",
    "reference_ttts",
]
