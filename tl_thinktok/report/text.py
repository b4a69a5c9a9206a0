"""Token strings for display: each token's share of the decoded text, spaces included.

Decoding tokens one by one loses the spaces that word-level and SentencePiece tokenizers put
between them; :func:`token_strings` gives each token the text it adds to the decoded sequence, so
that the pieces concatenate to ``tokenizer.decode(ids)``.

Example:
    >>> from tl_thinktok.report.text import token_strings
    >>> pieces = token_strings(model.tokenizer, ids)   # doctest: +SKIP
    >>> "".join(pieces) == model.tokenizer.decode(ids)  # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tl_thinktok._validate import as_token_ids

__all__ = ["token_strings"]


def token_strings(tokenizer: Any, ids: Sequence[int], context: Sequence[int] = ()) -> list[str]:
    """The text each of ``ids`` adds when decoded after ``context`` and the ids before it.

    Where a token does not extend the decoded prefix (a byte-level token ending inside a UTF-8
    character), it is decoded alone instead.

    Args:
        tokenizer: an HF tokenizer, or a model that has one.
        ids: token ids to split the text of.
        context: ids decoded before them (e.g. the prompt), not returned.
    """
    tok = getattr(tokenizer, "tokenizer", None) or tokenizer
    ids = as_token_ids(ids, name="ids")
    seq = as_token_ids(context, name="context")
    prev = tok.decode(seq) if seq else ""
    out = []
    for i in ids:
        seq.append(i)
        text = tok.decode(seq)
        if text.startswith(prev) and len(text) > len(prev):
            out.append(text[len(prev) :])
        else:
            out.append(tok.decode([i]))
        prev = text
    return out
