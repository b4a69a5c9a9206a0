"""The tl-thinktok CLI: `info` output and lazy dispatch of `reproduce` / `train-organism`."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from tl_thinktok.cli import main


def test_info_prints_model_shape(capsys):
    assert main(["info", "stories260k"]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    # stories260K header (llama2.c): dim 64, 5 layers, 8 heads, 4 kv heads, vocab 512
    assert lines["n_layers"] == "5"
    assert lines["d_model"] == "64"
    assert lines["n_heads"] == "8"
    assert lines["n_key_value_heads"] == "4"
    assert lines["d_vocab"] == "512"
    assert lines["host"] == "hooked"
    assert lines["dtype"] == "float32"
    assert "fold_ln=False" in lines["processing"]
    assert lines["path"].endswith("stories260k")


def test_info_bad_host_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["info", "stories260k", "--host", "tpu"])
    assert exc.value.code == 2
    assert "invalid choice: 'tpu'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "module", "func"),
    [
        ("reproduce", "tl_thinktok.reproduce.core", "reproduce_main"),
        ("train-organism", "tl_thinktok.organism.train", "main"),
    ],
)
def test_subcommands_dispatch_lazily(monkeypatch, command, module, func):
    seen = []
    fake = types.ModuleType(module)
    setattr(fake, func, lambda argv: seen.append(argv) or 0)
    monkeypatch.setitem(sys.modules, module, fake)
    assert main([command, "--quick", "--out", "x"]) == 0
    assert seen == [["--quick", "--out", "x"]]


def test_python_dash_m_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "tl_thinktok", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    for command in ("info", "reproduce", "train-organism"):
        assert command in proc.stdout
