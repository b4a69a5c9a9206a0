"""Tests for tl_thinktok.runs: resumable JSONL run directories."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tl_thinktok.runs import ConfigMismatchError, RunDir, config_hash, finite


def test_fresh_run_writes_config_and_results(tmp_path):
    cfg = {"model": "m", "n": 3, "seed": 1, "layers": (1, 2)}
    run = RunDir.open(tmp_path / "r", cfg)
    out = run.map(range(3), key=str, fn=lambda i: {"sq": i * i}, progress=False)
    assert out == [{"sq": 0}, {"sq": 1}, {"sq": 4}]
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    assert stored["config"] == {"model": "m", "n": 3, "seed": 1, "layers": [1, 2]}
    assert "torch" in stored["versions"] and "python" in stored["versions"]
    lines = (tmp_path / "r" / "results.jsonl").read_text().splitlines()
    assert [json.loads(s) for s in lines] == [
        {"key": "0", "result": {"sq": 0}},
        {"key": "1", "result": {"sq": 1}},
        {"key": "2", "result": {"sq": 4}},
    ]


def test_resume_skips_finished(tmp_path):
    cfg = {"a": 1}
    calls = []

    def fn(i):
        calls.append(i)
        return i + 10

    RunDir.open(tmp_path, cfg).map([1, 2], key=str, fn=fn, progress=False)
    out = RunDir.open(tmp_path, cfg).map([1, 2, 3], key=str, fn=fn, progress=False)
    assert out == [11, 12, 13]
    assert calls == [1, 2, 3]


def test_config_mismatch_refused(tmp_path):
    RunDir.open(tmp_path, {"a": 1, "seed": 0})
    with pytest.raises(ConfigMismatchError, match="seed: 0 != 1"):
        RunDir.open(tmp_path, {"a": 1, "seed": 1})
    with pytest.raises(ValueError, match="different config"):
        RunDir.open(tmp_path, {"a": 2, "seed": 0})


@pytest.mark.parametrize("tail", [b'{"key": "2", "res', b'{"key": "2", "result": 3}'])
def test_truncated_last_line_repaired(tmp_path, tail):
    run = RunDir.open(tmp_path, {"a": 1})
    run.append("0", 0)
    run.append("1", [1.5, "x"])
    f = tmp_path / "results.jsonl"
    good = f.read_bytes()
    f.write_bytes(good + tail)  # killed mid-write: no terminating newline
    with pytest.warns(UserWarning, match="truncated"):
        run2 = RunDir.open(tmp_path, {"a": 1})
    assert run2.results == {"0": 0, "1": [1.5, "x"]}
    assert f.read_bytes() == good
    run2.append("2", 2)
    assert RunDir.open(tmp_path, {"a": 1}).results == {"0": 0, "1": [1.5, "x"], "2": 2}


def test_corrupt_middle_line_is_an_error(tmp_path):
    RunDir.open(tmp_path, {"a": 1})
    (tmp_path / "results.jsonl").write_text(
        '{"key": "0", "result": 0}\nGARBAGE\n{"key": "2", "result": 2}\n'
    )
    with pytest.raises(ValueError, match="line 2"):
        RunDir.open(tmp_path, {"a": 1})


def test_bad_inputs(tmp_path):
    with pytest.raises(TypeError):
        RunDir.open(tmp_path / "x", [1])
    with pytest.raises(ValueError, match="JSON"):
        RunDir.open(tmp_path / "y", {"f": object()})
    run = RunDir.open(tmp_path / "z", {})
    run.append("k", 1)
    with pytest.raises(ValueError, match="already stored"):
        run.append("k", 2)
    with pytest.raises(ValueError, match="not JSON"):
        run.append("j", {1, 2})
    with pytest.raises(ValueError, match="duplicate"):
        run.map([1, 1], key=str, fn=lambda i: i, progress=False)


def test_config_hash_and_finite():
    assert config_hash({"a": 1, "b": (1,)}) == config_hash({"b": [1], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert finite({"x": [1, 2.0, {"y": -3}], "s": "nan"})
    assert not finite({"x": [1, math.inf]})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=10,
)


@settings(max_examples=30, deadline=None)
@given(values=st.lists(json_values, max_size=5))
def test_results_roundtrip_losslessly(tmp_path_factory, values):
    d = tmp_path_factory.mktemp("rt")
    run = RunDir.open(d, {"k": 0})
    for i, v in enumerate(values):
        run.append(str(i), v)
    again = RunDir.open(d, {"k": 0}).results
    assert list(again) == [str(i) for i in range(len(values))]
    assert list(again.values()) == values


def test_map_batched_resumes_and_keeps_order(tmp_path):
    batches = []

    def fn(batch):
        batches.append(list(batch))
        return [{"v": i * 3} for i in batch]

    run = RunDir.open(tmp_path, {"b": 1})
    run.append("2", {"v": 6})  # finished earlier
    out = run.map_batched(range(6), key=str, fn=fn, batch_size=2, progress=False)
    assert out == [{"v": i * 3} for i in range(6)]
    assert batches == [[0, 1], [3, 4], [5]]
    with pytest.raises(ValueError, match="batch_size"):
        run.map_batched([1], key=str, fn=fn, batch_size=0)
    with pytest.raises(ValueError, match="returned 1 results for 2"):
        RunDir.open(tmp_path / "x", {}).map_batched(
            [7, 8], key=str, fn=lambda b: [0], batch_size=2, progress=False
        )
