"""The model organism: a tiny synthetic reasoning task (``task``) and its trainer (``train``).

Example:
    >>> from tl_thinktok import organism
    >>> p = organism.problems("test", 1, seed=0)[0]
    >>> organism.grade(organism.base_trace(p), p.answer)
    True
"""

from tl_thinktok.organism.task import *  # noqa: F403
from tl_thinktok.organism.task import __all__ as __all__
