"""Reproduce every figure and table of the paper (``tl-thinktok reproduce``)."""
