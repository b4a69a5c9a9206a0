"""Comparing two ``reproduce`` runs: every run directory's results (serial vs distributed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def results_of(root: Path) -> dict[str, dict]:
    """Every run directory under ``root``: name → {key: result}."""
    out = {}
    for f in sorted(root.glob("*/*/results.jsonl")):
        recs = [json.loads(x) for x in f.read_text().splitlines()]
        keys = [r["key"] for r in recs]
        assert len(keys) == len(set(keys)), f"duplicate keys in {f}"
        out[f"{f.parent.parent.name}/{f.parent.name}"] = {r["key"]: r["result"] for r in recs}
    return out


def assert_same(a, b, path=""):
    """Equal JSON values; float lists (MI trajectories) to 1e-9."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and a and all(isinstance(x, float) for x in a):
        np.testing.assert_allclose(np.asarray(b, float), np.asarray(a, float), rtol=0, atol=1e-9,
                                   err_msg=path)  # fmt: skip
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float) and np.isnan(a):
        assert np.isnan(b), path
    else:
        assert a == b, path
