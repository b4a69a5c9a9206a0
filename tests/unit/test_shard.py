"""Sharding without Ray: --shard parsing, cost-interleaved deal, shards + merge, CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tl_thinktok.reproduce.distributed import (
    MergeConflictError,
    ShardExecutor,
    ShardPending,
    ShardSpecError,
    interleave,
    merge_runs,
    parse_shard,
    shard_dir,
)
from tl_thinktok.runs import RunDir, WithFiles

CONFIG = {"kind": "demo", "n": 9, "seed": 0}


def square_batch(batch: list[int]) -> list[WithFiles]:
    return [WithFiles({"sq": i * i}, {f"side/{i}.bin": bytes([i]) * (i + 1)}) for i in batch]


@pytest.mark.parametrize("spec,want", [("0/1", (0, 1)), ("3/4", (3, 4)), (" 1 / 2 ", (1, 2))])
def test_parse_shard(spec, want):
    assert parse_shard(spec) == want


@pytest.mark.parametrize("spec", ["", "1", "2/2", "-1/3", "a/b", "1/0", "1/2/3", "0.5/2"])
def test_parse_shard_rejects(spec):
    with pytest.raises(ShardSpecError, match="--shard"):
        parse_shard(spec)


@given(st.lists(st.floats(0, 1e4), max_size=60), st.integers(1, 7))
def test_interleave_laws(costs, n):
    """Every item dealt once; counts differ by at most 1; totals by at most the largest cost."""
    deal = interleave(costs, n)
    assert len(deal) == len(costs) and all(0 <= s < n for s in deal)
    counts = [deal.count(s) for s in range(n)]
    assert max(counts) - min(counts) <= 1
    totals = [sum(c for c, s in zip(costs, deal, strict=True) if s == k) for k in range(n)]
    assert max(totals) - min(totals) <= (max(costs) if costs else 0) + 1e-6


def test_interleave_is_not_contiguous():
    """Sorted work is dealt longest-first in snake order, not in blocks."""
    assert interleave([8, 7, 6, 5, 4, 3, 2, 1], 2) == [0, 1, 1, 0, 0, 1, 1, 0]


def test_shards_cover_and_merge(tmp_path):
    n_shards = 3
    items = list(range(9))
    serial = RunDir.open(tmp_path / "serial", CONFIG)
    want = serial.map_batched(items, str, square_batch, batch_size=2)
    calls = []

    def counted(batch):
        calls.extend(batch)
        return square_batch(batch)

    for i in range(n_shards):
        run = RunDir.open(shard_dir(tmp_path / "runs", i, n_shards) / "m" / "demo", CONFIG)
        run.executor = ShardExecutor(i, n_shards, verbose=False)
        with pytest.raises(ShardPending, match="belong to other shards"):
            run.map_batched(items, str, counted, batch_size=2, cost=float)
        # resume of the same shard computes nothing
        before = len(calls)
        with pytest.raises(ShardPending):
            run.map_batched(items, str, counted, batch_size=2, cost=float)
        assert len(calls) == before
    assert sorted(calls) == items  # disjoint and complete
    srcs = sorted((tmp_path / "runs").glob("shard-*"))
    rep = merge_runs(srcs, tmp_path / "runs")
    assert rep.added == 9 and rep.files == 9 and rep.already == 0
    merged = RunDir.open(tmp_path / "runs" / "m" / "demo", CONFIG)
    assert merged.map_batched(items, str, lambda b: pytest.fail("recomputed"), 2) == want
    for i in items:
        assert (merged.path / f"side/{i}.bin").read_bytes() == bytes([i]) * (i + 1)
    lines = merged.results_file.read_text().splitlines()
    assert len(lines) == 9 and len({json.loads(x)["key"] for x in lines}) == 9
    # merging again adds nothing
    assert merge_runs(srcs, tmp_path / "runs").added == 0


def test_merge_conflict(tmp_path):
    a = RunDir.open(tmp_path / "a" / "m" / "r", CONFIG)
    b = RunDir.open(tmp_path / "b" / "m" / "r", CONFIG)
    a.append("1", {"sq": 1})
    b.append("1", {"sq": 2})
    merge_runs([tmp_path / "a"], tmp_path / "dest")
    with pytest.raises(MergeConflictError, match="key '1'"):
        merge_runs([tmp_path / "b"], tmp_path / "dest")


def test_store_writes_side_file_before_record(tmp_path):
    run = RunDir.open(tmp_path / "r", CONFIG)
    with pytest.raises(ValueError, match="outside the run directory"):
        run.store("x", WithFiles(1, {"../evil.bin": b"x"}))
    assert not run.results_file.exists()
    run.store("y", WithFiles(2, {"a/b.bin": b"abc"}))
    assert (run.path / "a/b.bin").read_bytes() == b"abc" and run.results == {"y": 2}


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tl_thinktok", "reproduce", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--shard", "2/2"], "0 <= i < N"),
        (["--shard", "x"], "--shard expects i/N"),
        (["--shard", "0/2", "--workers", "2"], "--shard and --workers exclude each other"),
        (["--ray-address", "127.0.0.1:1"], "--ray-address needs --workers"),
        (["--gpus-per-worker", "1"], "--gpus-per-worker needs --workers"),
    ],
)
def test_cli_bad_scale_out_input(args, msg, capsys):
    from tl_thinktok.reproduce.cli import reproduce_main

    assert reproduce_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0], err


def test_workers_without_ray_says_how_to_install(tmp_path):
    """A ``ray`` that cannot be imported (a blocking module first on the path)."""
    (tmp_path / "ray.py").write_text("raise ImportError('No module named ray')\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    r = cli("--workers", "2", env=env)
    assert r.returncode == 2
    assert 'pip install "tl-thinktok[distributed]"' in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_shard_cli_then_merge_then_render(tmp_path):
    """Two job-array shards of the trace pass, merged, then a plain run recomputes nothing."""
    base = ["--quick", "--only", "table1", "--out", str(tmp_path / "out"), "--run-dir",
            str(tmp_path / "runs"), "--no-progress", "--set", "n_traces=4",
            "--set", "batch_size=1"]  # fmt: skip
    for i in range(2):
        r = cli(*base, "--shard", f"{i}/2")
        assert r.returncode == 0, r.stderr
        assert "2 of 4 pending items are this shard's" in r.stderr
    r = cli(*base, "--merge")
    assert r.returncode == 0 and "4 results added" in r.stdout, r.stdout + r.stderr
    t0 = time.time()
    r = cli(*base)
    assert r.returncode == 0, r.stderr
    (results,) = (tmp_path / "runs").glob("organism/traces-*/results.jsonl")
    assert len(results.read_text().splitlines()) == 4
    assert len(list(results.parent.glob("resid/*.safetensors"))) == 4
    assert (tmp_path / "out" / "table1.json").exists() and time.time() - t0 < 120
