"""hosts: no host branches outside hosts/, token-id checks, a new host = one adapter class."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tl_thinktok
from tl_thinktok import hosts
from tl_thinktok._validate import as_token_ids
from tl_thinktok.hosts import HostAdapter

PKG = Path(tl_thinktok.__file__).parent
BRANCH = re.compile(
    r"\bis_(bridge|hooked)\s*\(|isinstance\([^)]*\b(TransformerBridge|HookedTransformer)\b"
)


def test_no_host_branches_outside_hosts():
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if rel.parts[0] == "hosts":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if BRANCH.search(line):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "host branches belong in tl_thinktok/hosts/:\n" + "\n".join(offenders)


def test_branch_pattern_catches_what_it_should():
    assert BRANCH.search("if hosts.is_bridge(model):")
    assert BRANCH.search("elif is_hooked (m)")
    assert BRANCH.search("isinstance(model, TransformerBridge)")
    assert not BRANCH.search("is_bridged = True")


@settings(max_examples=80, deadline=None)
@given(ids=st.lists(st.integers(-5, 40), max_size=12), vocab=st.integers(1, 40))
def test_check_token_ids_is_the_shared_normaliser(ids, vocab):
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        with pytest.raises(ValueError, match=re.escape(f"out of range [0, {vocab}): {bad[:10]}")):
            hosts.check_token_ids(vocab, ids)
    else:
        assert hosts.check_token_ids(vocab, ids) == ids == as_token_ids(ids, vocab=vocab)
        assert hosts.check_token_ids(vocab, torch.tensor(ids, dtype=torch.long)) == ids


def test_check_token_ids_errors():
    with pytest.raises(TypeError, match="integer tensor"):
        hosts.check_token_ids(10, torch.tensor([1.0]))
    with pytest.raises(TypeError, match="must be ints"):
        hosts.check_token_ids(10, [1, True])
    with pytest.raises(TypeError, match="model_or_vocab"):
        hosts.check_token_ids(True, [1])
    assert hosts.check_token_ids(10, 3) == [3]


@pytest.mark.parametrize("thing", [3, "gpt2", torch.nn.Linear(2, 2), None])
def test_non_hosts_are_refused_clearly(thing):
    with pytest.raises(TypeError, match="expected a transformer_lens HookedTransformer or "):
        hosts.adapter(thing)
    with pytest.raises(TypeError, match=type(thing).__name__):
        hosts.n_layers(thing)


class _ToyModel(torch.nn.Module):
    """A made-up host: two 'blocks' with a dict KV cache, named hooks, a linear unembedding."""

    class _Cfg:
        n_layers, d_model, d_vocab, default_prepend_bos = 2, 4, 7, False

    def __init__(self) -> None:
        super().__init__()
        self.cfg = self._Cfg()
        self.blocks = torch.nn.ModuleList(torch.nn.Identity() for _ in range(2))
        self.W = torch.nn.Parameter(torch.arange(28.0).reshape(4, 7))
        self.hook_dict = {f"layers.{i}.{io}": object() for i in range(2) for io in ("i", "o")}


class _ToyAdapter(HostAdapter):
    name = "toy"

    @classmethod
    def matches(cls, model):
        return isinstance(model, _ToyModel)

    def _resid_post(self, i):
        return f"layers.{i}.o"

    def _resid_pre(self, i):
        return f"layers.{i}.i"

    def _unembed_no_hooks(self, resid):
        return resid @ self.model.W

    def block_input(self, args, kwargs):
        return args[0]

    def kv_cache(self, kwargs):
        return kwargs.get("kv")

    def cache_len(self, i, kwargs):
        return len(self.kv_cache(kwargs)[i])

    def rollback(self, i, kwargs):
        self.kv_cache(kwargs)[i].pop()

    def slice_block_kwargs(self, kwargs, sl, *, keep_cache):
        return dict(kwargs) if keep_cache else {k: v for k, v in kwargs.items() if k != "kv"}


def test_a_new_host_is_one_adapter_class():
    toy = _ToyModel()
    with pytest.raises(TypeError):
        hosts.adapter(toy)
    saved = list(hosts.ADAPTERS)
    try:
        assert hosts.register_adapter(_ToyAdapter) is _ToyAdapter
        ad = hosts.adapter(toy)
        assert isinstance(ad, _ToyAdapter) and hosts.adapter(toy) is ad  # cached per model
        # the functional API works unchanged on the new host
        assert hosts.n_layers(toy) == 2 and hosts.d_vocab(toy) == 7
        assert hosts.resid_post_name(toy, -1) == "layers.1.o"
        assert hosts.resid_pre_name(toy, 0) == "layers.0.i"
        x = torch.ones(3, 4)
        assert torch.equal(hosts.unembed_resid(toy, x), x @ toy.W)
        with pytest.raises(ValueError, match="layer 2 is out of range"):
            hosts.check_layer(toy, 2)
        with pytest.raises(ValueError, match=r"\[0, 7\)"):
            hosts.check_token_ids(toy, [7])
        kw = {"kv": [[1, 2], [1, 2, 3]]}
        assert ad.cache_len(1, kw) == 3
        ad.rollback(1, kw)
        assert ad.cache_len(1, kw) == 2
        assert hosts.fix_bridge_kv_cache(toy) == 0
        with pytest.raises(TypeError, match="HostAdapter subclass"):
            hosts.register_adapter(int)
    finally:
        hosts.ADAPTERS[:] = saved
        hosts.registry._cache.clear()
    with pytest.raises(TypeError):
        hosts.adapter(toy)
