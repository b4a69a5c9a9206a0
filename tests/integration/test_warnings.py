"""No warnings from tl-thinktok's own use of TransformerLens, on every host of the installed TL.

The README's workflow (load, MIProbe + SuppressTokens + RepresentationRecycling through
``attach_all`` in one cached ``generate``, ``step_residuals``, ``answer_representation``,
``MITrace``, ``PeakTokenLens``, TTTS budget forcing) runs in a fresh interpreter with every warning
an error, so deprecated TL names (hook aliases such as ``hook_resid_post`` on the bridge, removed
modules), "once" warnings and import-time warnings all count. One warning is allowed, by message,
around the user's own ``model.generate`` call only, because it is not ours:

* transformers 5.x ``FutureWarning: `past_key_values` is deprecated ... Use `cache` instead``: TL's
  own cached ``generate`` loop on the bridge passes ``past_key_values=`` to the HF model on every
  step (checked on TL 4.3 + transformers 5.24; uncached generation and plain forwards don't emit
  it). It is reported at ``torch/nn/modules/module.py``, so no ``module=`` filter can single it out.
  tl-thinktok's own calls of ``generate`` (``greedy_batch``, ``MITrace.from_model``, TTTS) ignore
  it by message (:func:`tl_thinktok.hosts.versions.quiet_cache_rename`), so outside that one call
  it is an error like any other.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import transformers

from tl_thinktok.hosts import supported_hosts

WORKFLOW = textwrap.dedent(
    """
    import sys
    import warnings

    warnings.simplefilter("error")
    ALLOWED_ALWAYS = sys.argv[2] == "check-filter"

    import matplotlib
    matplotlib.use("Agg")
    import torch
    torch.set_num_threads(1)

    from tl_thinktok import (MIProbe, MITrace, PeakTokenLens, RepresentationRecycling,
                             SuppressTokens, ThinkingTokens, answer_representation, attach_all,
                             budget_forcing, load_model, step_residuals)
    from tl_thinktok import hosts, organism

    model = load_model("organism", host=sys.argv[1])
    assert hosts.adapter(model).name == sys.argv[1]
    prob = organism.problems("test", 1, seed=0)[0]
    prompt = organism.prompt(prob.question)

    trace = MITrace.from_model(model, prompt, prob.solution, layer=-1, max_new_tokens=24)
    trace.stats(); trace.peak_tokens(model); trace.plot()

    tt = ThinkingTokens.from_words(model.tokenizer, ["So", "Wait", "Now", "Then"])
    ban = SuppressTokens(tt.token_ids(k=2))
    rr = RepresentationRecycling(layer=-2, trigger_token_ids=tt.token_ids(), p=0.5, seed=0)
    probe = MIProbe(layer=-1)
    ids = hosts.to_tokens(model, prompt)
    with attach_all(model, probe, ban, rr), warnings.catch_warnings():
        # the user's own generate call: not ours (see the module docstring)
        warnings.filterwarnings(
            "ignore", message=r"`past_key_values` is deprecated", category=FutureWarning
        )
        out = model.generate(ids, max_new_tokens=24, do_sample=False, verbose=False)
    assert len(probe) > 0

    h = step_residuals(model, out[0], ids.shape[-1], layer=-1)
    answer = answer_representation(model, prob.solution, layer=-1)
    live = MITrace.from_probe(probe, answer, out[0], ids.shape[-1])
    lens = PeakTokenLens(layer=-1, k=3).decode(model, probe, steps=live.peaks or [0])
    res = budget_forcing(model, prompt, max_thinking_tokens=16, max_answer_tokens=4)
    if ALLOWED_ALWAYS:  # the allowed warning really is emitted (the filter is not dead code)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            model.generate(ids, max_new_tokens=3, do_sample=False, verbose=False)
        print("ALLOWED", sum("past_key_values" in str(w.message) for w in seen))
    print("OK", h.shape[0], len(lens.tokens), len(res.text) >= 0)
    """
)


def _run(host: str, mode: str = "plain") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONWARNINGS")}
    env.update(TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-c", WORKFLOW, host, mode],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip


@pytest.mark.parametrize("host", list(supported_hosts()))
def test_readme_workflow_raises_no_warning(host):
    proc = _run(host, "check-filter" if host == "bridge" else "plain")
    assert proc.returncode == 0, (
        f"a warning (as error) or failure on {host}:\n{proc.stderr[-4000:]}"
    )
    assert "OK" in proc.stdout
    if host == "bridge" and int(transformers.__version__.split(".")[0]) == 5:
        # the one allowed warning is real here (transformers 5.x's rename shim): not a dead filter
        assert int(proc.stdout.split("ALLOWED", 1)[1].split()[0]) > 0


def test_the_check_catches_a_warning_from_our_code():
    """Sanity: the same filters turn a tl_thinktok warning (a clipped budget) into a failure."""
    code = WORKFLOW.split("import matplotlib", 1)[0] + textwrap.dedent(
        """
        from types import SimpleNamespace
        from tl_thinktok.generation import greedy_batch
        greedy_batch(SimpleNamespace(cfg=SimpleNamespace(n_ctx=3)), [[1, 2]], 5)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "bridge", "plain"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert "UserWarning: max_new_tokens=5 does not fit" in proc.stderr


def _cache_rename_warnings(fn) -> int:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fn()
    return sum("past_key_values" in str(w.message) for w in seen)


def test_our_generate_calls_emit_no_cache_rename_warning():
    """greedy_batch and TTTS call TL's generate (which passes ``past_key_values=`` on the bridge)
    inside :func:`quiet_cache_rename`; the same generate called directly does warn (transformers
    5.x), so the check is live."""
    import torch

    from tl_thinktok import budget_forcing, load_model, organism
    from tl_thinktok.generation import encode, greedy_batch

    torch.set_num_threads(1)
    model = load_model("organism", host="bridge")
    prompt = organism.prompt(organism.problems("test", 1, seed=0)[0].question)
    ids = encode(model, prompt)
    assert _cache_rename_warnings(lambda: greedy_batch(model, [ids, ids[:-1]], 4)) == 0
    forced = _cache_rename_warnings(
        lambda: budget_forcing(model, prompt, max_thinking_tokens=4, max_answer_tokens=2)
    )
    assert forced == 0
    direct = _cache_rename_warnings(
        lambda: model.generate(torch.tensor([ids]), max_new_tokens=3, verbose=False)
    )
    if int(transformers.__version__.split(".")[0]) == 5:
        assert direct > 0


def test_quiet_cache_rename_keeps_other_warnings():
    from tl_thinktok.hosts.versions import quiet_cache_rename

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_cache_rename():
            for msg, cat in (
                ("`past_key_values` is deprecated; use `cache`", FutureWarning),
                ("`past_key_values` is deprecated (not a FutureWarning)", UserWarning),
                ("something else", FutureWarning),
            ):
                warnings.warn(msg, cat, stacklevel=1)
        warnings.warn(
            "`past_key_values` is deprecated after the block", FutureWarning, stacklevel=1
        )
    assert [str(w.message) for w in seen] == [
        "`past_key_values` is deprecated (not a FutureWarning)",
        "something else",
        "`past_key_values` is deprecated after the block",
    ]
