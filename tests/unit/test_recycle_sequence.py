"""RR's sequence buffer: appends in amortised O(1), always equal to concatenating the inputs."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tl_thinktok.interventions.recycle import _Sequence


@settings(max_examples=50, deadline=None)
@given(first=st.integers(1, 20), chunks=st.lists(st.integers(1, 5), max_size=40))
def test_sequence_equals_concatenation(first, chunks):
    gen = torch.Generator().manual_seed(first + len(chunks))
    parts = [torch.randn(1, first, 3, generator=gen)]
    seq = _Sequence(parts[0])
    for k in chunks:
        parts.append(torch.randn(1, k, 3, generator=gen))
        seq.append(parts[-1])
        assert seq.n == sum(p.shape[1] for p in parts)
    assert torch.equal(seq.value, torch.cat(parts, dim=1))


def test_sequence_copies_its_input_and_grows_geometrically():
    x = torch.zeros(1, 4, 2)
    seq = _Sequence(x)
    x += 1  # the caller's tensor changing later must not change the stored history
    assert torch.equal(seq.value, torch.zeros(1, 4, 2))
    reallocations, cap = 0, seq._buf.shape[1]
    for _ in range(1000):
        seq.append(torch.ones(1, 1, 2))
        if seq._buf.shape[1] != cap:
            reallocations, cap = reallocations + 1, seq._buf.shape[1]
    assert seq.n == 1004 and reallocations <= 8  # doubling: log2(1004 / 16) + 1
