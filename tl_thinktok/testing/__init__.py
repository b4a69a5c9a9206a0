"""Test helpers shipped with the package: random-weight HF stand-ins and reference formulas.

Example:
    >>> from tl_thinktok.testing import make_random_hf_model
    >>> path = make_random_hf_model("/tmp/qwen2-random", "qwen2")  # doctest: +SKIP
"""

from tl_thinktok.testing.models import make_random_hf_model, make_tokenizer

__all__ = ["make_random_hf_model", "make_tokenizer"]
