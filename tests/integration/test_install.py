"""A normal (non-editable) install runs ``tl-thinktok reproduce`` with nothing from the checkout.

The package is built from a copy of the sources and installed into a fresh virtual environment
whose only other path is the current environment's ``site-packages`` (for the dependencies, added
by a plain ``.pth`` line, so the checkout's editable-install hook there is never run). The CLI then
runs from a directory outside the checkout. Offline: ``--no-index --no-build-isolation`` uses the
setuptools already installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _site_packages(env_dir: Path) -> Path:
    rel = Path(sysconfig.get_path("purelib")).relative_to(sysconfig.get_paths()["data"])
    return env_dir / rel


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with tl-thinktok installed from a wheel built out of a copy of the sources."""
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    shutil.copytree(ROOT / "tl_thinktok", src / "tl_thinktok", ignore=ignore)
    for f in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / f).exists():
            shutil.copy2(ROOT / f, src / f)
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    site = _site_packages(env_dir)
    site.mkdir(parents=True, exist_ok=True)
    deps = Path(sysconfig.get_path("purelib"))
    (site / "deps.pth").write_text(f"{deps}\n")
    py = env_dir / "bin" / "python"
    cmd = [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
           "--no-build-isolation", "--no-index", "--no-compile", "-q", str(src)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (site / "tl_thinktok" / "reproduce" / "experiments" / "fig2.py").exists()
    return env_dir


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return {**env, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def test_installed_package_is_used_and_the_checkout_is_not_on_the_path(installed, tmp_path):
    py = installed / "bin" / "python"
    code = (
        "import json, sys, tl_thinktok, tl_thinktok.reproduce.registry as r\n"
        "mods = [r.load_experiment(n) for n in r.EXPERIMENTS]\n"
        "print(json.dumps({'init': tl_thinktok.__file__, 'path': sys.path,\n"
        "  'files': [m.__file__ for m in mods] + [m.__file__ for n, m in sys.modules.items()\n"
        "            if n.startswith('tl_thinktok') and getattr(m, '__file__', None)]}))\n"
    )
    proc = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=clean_env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    site = _site_packages(installed).resolve()
    assert Path(info["init"]).resolve().is_relative_to(site)
    assert all(Path(f).resolve().is_relative_to(site) for f in info["files"]), info["files"]
    assert not any(Path(p).resolve() == ROOT for p in info["path"] if p), info["path"]


def test_reproduce_quick_runs_outside_the_checkout(installed, tmp_path):
    exe = installed / "bin" / "tl-thinktok"
    assert exe.exists()
    out, runs = tmp_path / "figs", tmp_path / "runs"
    cmd = [str(exe), "reproduce", "--quick", "--only", "fig2,table1", "--no-progress",
           "--out", str(out), "--run-dir", str(runs)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env=clean_env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    for name in ("fig2", "table1"):
        assert (out / f"{name}.png").stat().st_size > 0
        summary = json.loads((out / f"{name}.summary.json").read_text())
        assert summary["name"] == name
        for f in summary["files"]:
            assert (out / f).stat().st_size > 0
    fig2 = json.loads((out / "fig2.json").read_text())
    assert fig2["reasoning"]["model"] == "organism" and fig2["reasoning"]["mi"]
    assert "## table1:" in (out / "README.md").read_text()
    assert list(runs.glob("organism/traces-*/resid/*.safetensors"))
