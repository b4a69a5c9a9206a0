"""reproduce on Ray (local cluster, num_cpus=2): same results as serial, a killed worker or driver
loses and repeats nothing, grading right inside workers, unreachable addresses fail fast.

Skipped when ray is not importable, unless ``TL_THINKTOK_REQUIRE_RAY`` is set (CI sets it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from runcompare import assert_same, results_of  # tests/integration/runcompare.py

from tl_thinktok.datasets import grade, load_dataset
from tl_thinktok.reproduce.cli import reproduce_main
from tl_thinktok.runs import RunDir

try:
    import ray
except ImportError:  # pragma: no cover - depends on the environment
    ray = None
    if os.environ.get("TL_THINKTOK_REQUIRE_RAY") == "1":
        raise
    pytestmark = pytest.mark.skip(
        reason='ray is not installed (pip install "tl-thinktok[distributed]"); '
        "set TL_THINKTOK_REQUIRE_RAY=1 to make this an error"
    )

SMALL = ["--quick", "--no-progress", "--set", "n_traces=4", "--set", "batch_size=2",
         "--set", "n_eval=2", "--set", "k_values=[0,4]", "--set", "k_random=[4]",
         "--set", "n_rr=2", "--set", "n_ttts=2", "--set", "budgets=[32]"]  # fmt: skip


def tagged_pids(tag: str) -> list[int]:
    """Live processes whose environment carries ``tag`` (the Ray processes a test started)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            if tag.encode() not in (p / "environ").read_bytes():
                continue
            state = (p / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":  # zombies hold nothing
            out.append(int(p.name))
    return out


def kill_tagged(tag: str) -> None:
    for pid in tagged_pids(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


# ------------------------------------------------------------------ driver killed (own cluster)


def run_cli(args: list[str], tag: str) -> subprocess.Popen:
    env = {**os.environ, "TL_THINKTOK_TEST_TAG": tag}
    cmd = [sys.executable, "-m", "tl_thinktok", "reproduce", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_driver_killed_then_resumed_recomputes_nothing(tmp_path):
    """kill -9 of the driver mid-run; the rerun computes exactly the missing items."""
    assert ray is not None and not ray.is_initialized()
    args = ["--quick", "--no-progress", "--only", "table1", "--set", "n_traces=8",
            "--set", "batch_size=1", "--workers", "2", "--out", str(tmp_path / "out"),
            "--run-dir", str(tmp_path / "runs")]  # fmt: skip
    tag = f"tlttest-{uuid.uuid4().hex}"
    try:
        proc = run_cli(args, tag)
        deadline = time.time() + 240
        results = None
        while time.time() < deadline and proc.poll() is None:
            found = list((tmp_path / "runs").glob("organism/traces-*/results.jsonl"))
            if found and len(found[0].read_bytes().splitlines()) >= 2:
                results = found[0]
                break
            time.sleep(0.2)
        assert results is not None, proc.communicate()[1][-3000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        time.sleep(2)
        kill_tagged(tag)  # what Ray leaves behind when its driver is killed
        before = results.read_bytes()
        done_lines = [x for x in before.split(b"\n")[:-1]]  # complete lines only
        done = len(done_lines)
        assert 2 <= done < 8
        proc = run_cli(args, tag)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        assert f"{8 - done} pending of 8 items" in err, err[-3000:]
        after = results.read_bytes()
        assert after.startswith(b"\n".join(done_lines) + b"\n")  # nothing rewritten
        assert len(after.splitlines()) == 8
        key = f"{results.parent.parent.name}/{results.parent.name}"
        assert len(results_of(tmp_path / "runs")[key]) == 8
        assert len(list(results.parent.glob("resid/*.safetensors"))) == 8
        deadline = time.time() + 30
        while tagged_pids(tag) and time.time() < deadline:  # a clean exit takes Ray down
            time.sleep(0.5)
        assert not tagged_pids(tag), "Ray processes left behind after a clean exit"
    finally:
        kill_tagged(tag)


# ------------------------------------------------------------------ shared local cluster


@pytest.mark.slow
def test_workers_give_the_serial_results(tmp_path, ray_cluster):
    """table1 (traces), fig5, fig6, fig7 with --workers 2 == serial: tokens, grades, MI 1e-9."""
    only = ["--only", "table1,fig5,fig6,fig7"]
    for mode, extra in (("serial", []), ("ray", ["--workers", "2"])):
        argv = [*SMALL, *only, "--out", str(tmp_path / mode / "out"), "--run-dir",
                str(tmp_path / mode / "runs"), *extra]  # fmt: skip
        assert reproduce_main(argv) == 0
    serial, par = results_of(tmp_path / "serial" / "runs"), results_of(tmp_path / "ray" / "runs")
    assert serial.keys() == par.keys() and len(serial) >= 4
    for name in serial:
        assert_same(serial[name], par[name], name)
    traces = [n for n in serial if "/traces-" in n]
    assert len(traces) == 2  # organism and organism-base
    for name in traces:
        files = sorted((tmp_path / "serial" / "runs" / name / "resid").iterdir())
        assert len(files) == 4
        for f in files:  # residuals travelled as safetensors bytes
            assert (
                tmp_path / "ray" / "runs" / name / "resid" / f.name
            ).read_bytes() == f.read_bytes()
    for name in ("fig5", "fig6", "fig7", "table1"):
        a = json.loads((tmp_path / "serial" / "out" / f"{name}.json").read_text())
        b = json.loads((tmp_path / "ray" / "out" / f"{name}.json").read_text())
        assert_same(a, b, name)


def test_killed_worker_loses_and_repeats_nothing(tmp_path, ray_cluster):
    from tl_thinktok.generation import decode, encode, greedy
    from tl_thinktok.reproduce.context import ExpContext
    from tl_thinktok.reproduce.distributed import RayExecutor

    ctx = ExpContext(model="organism", run_dir=tmp_path, progress=False)
    model = ctx.load("organism")
    items = load_dataset("organism", n=8, seed=1)

    def answer(item):
        ids = encode(model, item.question)
        return {"text": decode(model, greedy(model, ids, 48)), "pid": os.getpid()}

    serial = RunDir.open(tmp_path / "serial", {"n": 8}).map(items, lambda it: it.id, answer)
    killed = []

    def kill_first(ex, key):
        if not killed:
            killed.append(ray.get(ex.actors[0].pid.remote()))
            ray.kill(ex.actors[0])

    run = RunDir.open(tmp_path / "ray", {"n": 8})
    with RayExecutor(ctx, workers=2, on_result=kill_first, verbose=False) as ex:
        run.executor = ex
        got = run.map(items, lambda it: it.id, answer)
        stats = dict(ex.stats)
    assert killed and stats["actor_deaths"] == 1 and stats["resubmitted"] >= 1
    assert [g["text"] for g in got] == [s["text"] for s in serial]
    assert os.getpid() not in {g["pid"] for g in got}  # computed in the workers
    lines = run.results_file.read_text().splitlines()
    assert len(lines) == 8 and len({json.loads(x)["key"] for x in lines}) == 8


def test_grading_inside_ray_workers(ray_cluster):
    cases = []
    for name, n in (("aime24", 10), ("math500", 10), ("gsm8k", 10)):
        its = load_dataset(name, n=n, seed=5)
        for i, it in enumerate(its):
            other = next(o for o in its[i + 1 :] + its[:i] if o.answer != it.answer)
            text = f"so the answer is \\boxed{{{it.answer}}}"
            cases += [(name, text, it.answer), (name, text, other.answer)]
    main = [grade(*c) for c in cases]
    assert sum(main[0::2]) >= 0.9 * len(cases) / 2 and not any(main[1::2])

    @ray.remote(num_cpus=0)
    def in_task(cs):
        return [grade(*c) for c in cs]

    @ray.remote(num_cpus=0, max_concurrency=4)
    class Threaded:  # methods run on a thread pool, off the main thread
        def run(self, cs):
            import threading

            return threading.current_thread() is threading.main_thread(), [grade(*c) for c in cs]

    assert ray.get(in_task.remote(cases)) == main
    actor = Threaded.remote()
    on_main, got = ray.get(actor.run.remote(cases))
    ray.kill(actor)
    assert not on_main and got == main


@pytest.mark.parametrize("address", ["127.0.0.1:1", "10.255.255.1:6379"])
def test_unreachable_address_fails_fast(address, capsys):
    t0 = time.perf_counter()
    assert reproduce_main(["--quick", "--workers", "2", "--ray-address", address]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"the Ray cluster at {address}" in err[0], err
    assert time.perf_counter() - t0 < 15  # ray.init alone retries for minutes


def test_reachable_address_passes_the_check(ray_cluster):
    from tl_thinktok.reproduce.distributed.ray_exec import check_address

    check_address(ray.get_runtime_context().gcs_address)  # no error
