"""``hosts.fast_decoder.device_problem``: the fast decoder runs on one device only."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from tl_thinktok.hosts.fast_decoder import device_problem


class _Params:
    def __init__(self, *devices: str) -> None:
        self._p = [SimpleNamespace(device=torch.device(d)) for d in devices]

    def parameters(self):
        return iter(self._p)


def test_one_device_is_fine():
    assert device_problem(torch.nn.Linear(2, 2)) is None


def test_offloaded_and_split_models_are_named():
    meta = torch.nn.Linear(2, 2, device="meta")
    assert "offloaded" in device_problem(meta)
    why = device_problem(_Params("cuda:0", "cuda:1", "cuda:0"))
    assert why is not None and "cuda:0, cuda:1" in why and "device_map" in why
