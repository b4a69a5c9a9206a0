"""Load models offline onto a TransformerLens host: HF dirs, llama2.c checkpoints, bundled models.

Example:
    >>> from tl_thinktok.loading import load_model
    >>> model = load_model("organism")  # doctest: +SKIP
"""

from tl_thinktok.loading.models import *  # noqa: F403
from tl_thinktok.loading.models import __all__ as __all__
