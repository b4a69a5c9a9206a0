"""End-to-end tests of ``python -m tl_thinktok reproduce`` (organism and a random HF Qwen2),
kill -9 resume, and the batched greedy decoder against HF ``generate``."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tl_thinktok.hosts import supported_hosts
from tl_thinktok.reproduce.cli import reproduce_main
from tl_thinktok.reproduce.outputs import Summary, check_outputs
from tl_thinktok.reproduce.registry import EXPERIMENTS
from tl_thinktok.runs import RunDir

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}


def reproduce(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tl_thinktok", "reproduce", "--no-progress", *args]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def reproduce_inproc(*args: str) -> int:
    """``reproduce_main`` in this process (saves the CLI start-up); torch threads restored."""
    threads = torch.get_num_threads()
    try:
        return reproduce_main(["--no-progress", *args])
    finally:
        torch.set_num_threads(threads)


def all_numbers_finite(x) -> bool:
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return True
    if isinstance(x, (int, float)):
        return math.isfinite(x)
    if isinstance(x, dict):
        return all(all_numbers_finite(v) for v in x.values())
    if isinstance(x, list):
        return all(all_numbers_finite(v) for v in x)
    raise AssertionError(f"unexpected JSON value {x!r}")


def check_all_outputs(out: Path, names) -> None:
    """Every experiment wrote a summary, a png, data files with finite numbers, a README entry."""
    readme = (out / "README.md").read_text()
    for name in names:
        s = Summary.load(out / f"{name}.summary.json")
        pngs = [f for f in s.files if f.endswith(".png")]
        data = [f for f in s.files if f.endswith((".json", ".csv", ".jsonl"))]
        assert pngs and data, (name, s.files)
        for f in s.files:
            p = out / f
            assert p.exists() and p.stat().st_size > 0, (name, f)
            if f.endswith(".png"):
                assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            elif f.endswith(".json"):
                assert all_numbers_finite(json.loads(p.read_text())), (name, f)
            elif f.endswith(".csv"):
                lines = p.read_text().splitlines()
                assert len(lines) >= 2, (name, f)
                for cell in ",".join(lines[1:]).split(","):
                    try:
                        assert math.isfinite(float(cell)), (name, f, cell)
                    except ValueError:
                        pass  # text cell
        assert all_numbers_finite(s.numbers), name
        assert f"## {name}:" in readme
    assert check_outputs(out, list(names)) == []


def test_reproduce_quick_organism(tmp_path):
    out, runs = tmp_path / "figs", tmp_path / "runs"
    t0 = time.perf_counter()
    res = reproduce("--quick", "--out", str(out), "--run-dir", str(runs))
    wall = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr[-4000:]
    check_all_outputs(out, EXPERIMENTS)
    readme = (out / "README.md").read_text()
    assert "about the organism" in readme
    # the trace pass ran once per model and was reused by every trace-based script
    # (table3 adds one trace pass per extra dataset)
    trace_dirs = sorted(p.name for p in (runs / "organism").glob("traces-organism-*"))
    assert len(trace_dirs) == 1, trace_dirs
    assert len(list((runs / "organism").glob("traces-gsm8k-*"))) == 1
    assert len(list((runs / "organism-base").glob("traces-*"))) == 1
    fig4 = json.loads((out / "fig4.json").read_text())
    # last block + greedy decoding: the lens token at a peak is the generated token
    assert fig4["reasoning"]["lens_equals_generated"] == 1.0
    # the trained organism solves its task (a wrong tokenizer or prompt would give ~0)
    table2 = {r["role"]: r for r in json.loads((out / "fig3_table2.json").read_text())["table2"]}
    assert table2["reasoning"]["accuracy"] >= 0.5
    timings = json.loads((out / "timings.json").read_text())
    assert timings["mode"] == "quick"
    check_controls(out)
    print(f"reproduce --quick (organism): {wall:.1f} s wall, {timings['total_s']} s inside")


def check_controls(out: Path) -> None:
    """The issue-14 controls are in the data: answer control, baselines, fig5's two random
    controls and the found-word chain in fig5/fig6/fig7, table3 with counts."""
    ac = json.loads((out / "answer_control.json").read_text())["summary"]
    assert ac["n_traces"] >= 2 and 0 <= ac["pooled_specific_peak_rate"] <= 1
    assert 0 <= ac["null_specific_peak_rate"] <= 1 and ac["null_n_peaks"] > 0
    cf = ac["counterfactual"]  # the own solution with its numbers changed
    assert cf["n_traces"] >= 2 and 0 <= cf["step_rate_own_above"] <= 1
    lo, hi = cf["peaks_minus_null_ci"]
    assert lo <= cf["peaks_minus_null"] <= hi
    pr = json.loads((out / "peaks_robustness.json").read_text())["means"]
    for k in ("auroc_token_identity", "auroc_position", "top_jaccard_chance"):
        assert k in pr and f"{k}_n" in pr
    fig5 = json.loads((out / "fig5.json").read_text())
    for ds in fig5.values():
        last = [x for x in ds["curve"] if x["matched_acc_mean"] is not None][-1]
        assert last["random_acc_mean"] is not None and last["banned_mass_matched"] is not None
        assert ds["found_words"], "fig4 ran first: fig5 also bans the words found at peaks"
        assert any(x["found_acc"] is not None for x in ds["curve"][1:])
        # evaluation disjoint from discovery; every matched draw within ±10% of the hand share
        assert ds["item_ids"] and ds["discovery_ids"]
        assert not set(ds["item_ids"]) & set(ds["discovery_ids"])
        for x in ds["curve"]:
            for share in x["banned_mass_matched_draws"] or []:
                assert abs(share - x["banned_mass_hand"]) <= 0.1 * x["banned_mass_hand"] + 1e-12
            assert x["hand"]["n"] == len(ds["item_ids"]) and x["hand"]["lo"] <= x["hand"]["acc"]
            if x["k"] > 0:
                assert 0 < x["hand"]["mcnemar_vs_k0"]["p"] <= 1
                # generation length against k = 0, paired: the difference of the two means
                d, k0 = x["new_tokens_minus_k0"], ds["curve"][0]["hand"]["mean_new_tokens"]
                assert d["diff"] == pytest.approx(x["hand"]["mean_new_tokens"] - k0)
                assert d["lo"] <= d["diff"] <= d["hi"] and d["n"] == len(ds["item_ids"])
            if x["matched_draws"]:  # hand / found minus the matched draws' mean, paired
                m = np.mean([r["acc"] for r in x["matched_draws"]])
                hm = x["minus_matched"]["hand"]
                assert hm["diff"] == pytest.approx(x["hand"]["acc"] - m)
                assert hm["lo"] <= hm["diff"] <= hm["hi"]
                if x["found"] is not None:
                    fm = x["minus_matched"]["found"]
                    assert fm["diff"] == pytest.approx(x["found"]["acc"] - m)
    fig6 = json.loads((out / "fig6.json").read_text())
    assert set(fig6["trigger_lists"]) == {"hand", "found"}
    assert not set(fig6["item_ids"]) & set(fig6["discovery_ids"])
    assert all("mcnemar_vs_original" in t for t in fig6["trigger_lists"].values())
    fig7 = Summary.load(out / "fig7.summary.json").numbers
    assert fig7["TTTS word found at MI peaks (fig4)"] != "-"
    rows = json.loads((out / "table3.json").read_text())["rows"]
    assert len(rows) >= 2 and all("aom_n" in r for r in rows)


def test_reproduce_random_qwen2_all_experiments(tmp_path, qwen2_dir, random_model_dir):
    base = random_model_dir("qwen2", seed=1)
    out, runs = tmp_path / "figs", tmp_path / "runs"
    rc = reproduce_inproc(
        "--model", str(qwen2_dir), "--base-model", str(base), "--quick",
        "--eval-datasets", "gsm8k", "--out", str(out), "--run-dir", str(runs),
    )  # fmt: skip
    assert rc == 0
    check_all_outputs(out, EXPERIMENTS)
    fig2 = json.loads((out / "fig2.json").read_text())
    assert fig2["reasoning"]["model"] == str(qwen2_dir)
    fig6 = json.loads((out / "fig6.json").read_text())
    assert fig6["dataset"] == "aime24" and fig6["layer"] == 1  # int(0.72 * 2 layers)
    # B3: fig6 runs the RR budget of this run and says so (not the paper's 16k)
    s6 = Summary.load(out / "fig6.summary.json")
    assert fig6["budget"] == s6.numbers["generation budget (tokens)"] < 16000
    assert f"this run: {fig6['budget']} tokens" in s6.paper
    assert all(r["original_new_tokens"] <= fig6["budget"] for r in fig6["per_item"])


def _trace_results(run_root: Path) -> dict:
    (d,) = [p for p in run_root.rglob("traces-*") if p.is_dir()]
    lines = (d / "results.jsonl").read_text().splitlines()
    recs = [json.loads(s) for s in lines]
    return {r["key"]: r["result"] for r in recs}


def test_kill9_resume_equals_uninterrupted(tmp_path, qwen2_dir):
    args = ["--model", str(qwen2_dir), "--quick", "--only", "fig2", "--set", "n_traces=6",
            "--set", "batch_size=1", "--set", "max_new_tokens=24"]  # fmt: skip
    ref = reproduce_inproc(*args, "--out", str(tmp_path / "o1"), "--run-dir", str(tmp_path / "r1"))
    assert ref == 0
    reference = _trace_results(tmp_path / "r1")
    assert len(reference) == 6

    runs = tmp_path / "r2"
    cmd = [sys.executable, "-m", "tl_thinktok", "reproduce", "--no-progress", *args,
           "--out", str(tmp_path / "o2"), "--run-dir", str(runs)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    killed_after = None
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            files = list(runs.rglob("results.jsonl"))
            if files:
                n = len(files[0].read_text().splitlines())
                if 2 <= n < 6:
                    os.kill(proc.pid, signal.SIGKILL)
                    killed_after = n
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None and killed_after is None:
            proc.kill()
        proc.wait()
    assert killed_after is not None, "the run finished before it could be killed mid-run"
    partial = _trace_results(runs)
    assert 2 <= len(partial) < 6
    again = reproduce_inproc(*args, "--out", str(tmp_path / "o2"), "--run-dir", str(runs))
    assert again == 0
    resumed = _trace_results(runs)
    assert list(resumed) == list(reference)
    assert resumed == reference
    # finished items were not recomputed: their lines are unchanged and first in the file
    assert {k: resumed[k] for k in partial} == partial


def test_config_change_uses_new_run_dir_and_rundir_refuses(tmp_path, qwen2_dir):
    base = ["--model", str(qwen2_dir), "--quick", "--only", "fig2", "--run-dir",
            str(tmp_path / "r"), "--out", str(tmp_path / "o"), "--set", "n_traces=2",
            "--set", "max_new_tokens=4"]  # fmt: skip
    assert reproduce_inproc(*base) == 0
    assert reproduce_inproc(*base, "--set", "max_new_tokens=5") == 0
    dirs = sorted(p for p in (tmp_path / "r").rglob("traces-*") if p.is_dir())
    assert len(dirs) == 2
    cfg = json.loads((dirs[0] / "config.json").read_text())["config"]
    with pytest.raises(ValueError, match="different config"):
        RunDir.open(dirs[0], {**cfg, "max_new_tokens": 99})


@pytest.mark.parametrize("host", list(supported_hosts()))
def test_greedy_batch_matches_hf_generate(qwen2_dir, host):
    from transformers import AutoModelForCausalLM

    from tl_thinktok.generation import encode, greedy, greedy_batch
    from tl_thinktok.loading import load_model

    model = load_model(str(qwen2_dir), host=host)
    hf = AutoModelForCausalLM.from_pretrained(str(qwen2_dir)).eval()
    texts = ["So, let me compute", "The quick brown fox jumps over the lazy", "Hmm 12"]
    prompts = [encode(model, t) for t in texts]
    assert len({len(p) for p in prompts}) == 3  # different lengths: left padding is exercised
    eos = model.tokenizer.eos_token_id
    batched = greedy_batch(model, prompts, 10)
    for p, got in zip(prompts, batched, strict=True):
        with torch.no_grad():
            ref = hf.generate(
                torch.tensor([p]),
                max_new_tokens=10,
                do_sample=False,
                pad_token_id=model.tokenizer.pad_token_id,
            )
        ref = ref[0, len(p) :].tolist()
        if eos in ref:
            ref = ref[: ref.index(eos) + 1]
        assert got == ref
        assert greedy(model, p, 10) == got


def test_spearman_and_jaccard_against_closed_forms():
    from tl_thinktok.reproduce.experiments import peaks_robustness as pr

    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.permutation(12).astype(float), rng.permutation(12).astype(float)
        d = a - b  # ranks are the values themselves (0..11, no ties)
        expected = 1 - 6 * (d**2).sum() / (12 * (12**2 - 1))
        assert pr.spearman(a, b) == pytest.approx(expected, abs=1e-12)
    assert pr.spearman(np.array([1.0, 2, 2, 3]), np.array([1.0, 2, 2, 3])) == pytest.approx(1.0)
    assert math.isnan(pr.spearman(np.ones(4), np.arange(4.0)))
    assert pr.jaccard([1, 2, 3], [2, 3, 4]) == 0.5
    assert pr.jaccard([], []) == 1.0
