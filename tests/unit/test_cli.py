"""The tl-thinktok CLI: `info` output, lazy dispatch of `reproduce` / `train-organism`, and bad
input answered with one line on stderr and exit status 2 (no traceback)."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from tl_thinktok.cli import main
from tl_thinktok.hosts import default_host
from tl_thinktok.reproduce.cli import reproduce_main, script_main


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
    assert lines["host"] == default_host()
    assert lines["dtype"] == "float32"
    assert "fold_ln=False" in lines["processing"]
    assert lines["path"].endswith("stories260k")


def test_info_bad_host_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["info", "stories260k", "--host", "tpu"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'tpu'" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("command", "module", "func"),
    [
        ("reproduce", "tl_thinktok.reproduce.cli", "reproduce_main"),
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


def one_line_error(capsys, *needles: str) -> str:
    """stderr holds exactly one line, an error naming every needle, and no traceback."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "error:" in lines[0] and "Traceback" not in captured.err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--dataset", "/nonexistent.jsonl"], ["/nonexistent.jsonl"]),
        (["--eval-datasets", "organism,nope"], ["'nope'"]),
        (["--model", "/nonexistent/model-dir"], ["/nonexistent/model-dir"]),
        (["--model", "organism", "--base-model", "/no/such/base"], ["/no/such/base"]),
        (["--only", "fig2,fig99"], ["fig99", "fig2"]),
        (["--skip", "nothing"], ["nothing"]),
        (["--set", "n_traces"], ["KEY=VALUE", "n_traces"]),
        (["--set", "n_tracez=3"], ["n_tracez", "n_traces"]),
        (["--layer", "last"], ["--layer", "last"]),
        (["--bogus"], ["--bogus"]),
    ],
)
def test_reproduce_bad_input_is_one_line_and_exit_2(capsys, tmp_path, args, needles):
    argv = ["--quick", "--no-progress", "--out", str(tmp_path / "o"),
            "--run-dir", str(tmp_path / "r"), *args]  # fmt: skip
    try:
        rc = reproduce_main(argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    assert rc == 2
    one_line_error(capsys, *needles)
    assert not (tmp_path / "o").exists()  # nothing ran


def test_reproduce_binary_dataset_is_one_line_naming_the_file(capsys, tmp_path):
    data = tmp_path / "binary.jsonl"
    data.write_bytes(b"\x89PNG\r\n\x1a\n\xff\x00")
    argv = ["--quick", "--no-progress", "--dataset", str(data), "--out", str(tmp_path / "o"),
            "--run-dir", str(tmp_path / "r")]  # fmt: skip
    assert reproduce_main(argv) == 2
    one_line_error(capsys, str(data), "not UTF-8")


def test_script_bad_input_is_one_line_and_exit_2(capsys, tmp_path):
    rc = script_main("fig2", ["--dataset", "nope", "--out", str(tmp_path / "o")])
    assert rc == 2
    one_line_error(capsys, "'nope'")


def test_info_missing_model_is_one_line_and_exit_2(capsys, tmp_path):
    assert main(["info", str(tmp_path / "missing")]) == 2
    one_line_error(capsys, str(tmp_path / "missing"))
    assert main(["info", "not-a-model-name"]) == 2
    one_line_error(capsys, "not-a-model-name")


def test_unknown_command_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["reproduse"])
    assert exc.value.code == 2
    one_line_error(capsys, "reproduse")


def test_reproduce_bad_dataset_in_a_subprocess_has_no_traceback(tmp_path):
    cmd = [sys.executable, "-m", "tl_thinktok", "reproduce", "--dataset", "/nonexistent.jsonl",
           "--out", str(tmp_path / "o"), "--run-dir", str(tmp_path / "r")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2
    err = [s for s in proc.stderr.splitlines() if s.strip()]
    assert len(err) == 1, proc.stderr
    assert err[0].startswith("tl-thinktok reproduce: error:") and "/nonexistent.jsonl" in err[0]


def _expected_runtime_line(host: str) -> str:
    """Built from the package metadata here, independently of ``runtime_line``."""
    from importlib.metadata import version

    return (
        f"tl-thinktok: TransformerLens {version('transformer-lens')}, host {host}, "
        f"transformers {version('transformers')}, torch {version('torch')}"
    )


def test_reproduce_help_shows_the_run_dir_and_out_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        reproduce_main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--run-dir RUN_DIR resumable run directories" in text
    assert "(default: runs, relative to the current folder)" in text
    assert "(default: figures)" in text


def test_reproduce_prints_versions_first_and_where_results_went_last(tmp_path, monkeypatch, capsys):
    """A stand-in experiment (no model work): the version line opens the console output and is
    in timings.json and the README; the last line names the output and run folders."""
    import json
    from importlib.metadata import version

    from tl_thinktok.reproduce import cli as rcli
    from tl_thinktok.reproduce.outputs import Summary, save_json, write_readme

    def fake_run_one(ctx, name, mod=None):
        s = Summary(name, "stand-in", ctx.model, ctx.dataset, {"x": 1.0},
                    files=[save_json(ctx.out, name, {"x": 1.0})])  # fmt: skip
        s.save(ctx.out)
        write_readme(ctx.out, ctx)
        return s

    monkeypatch.setattr(rcli, "run_one", fake_run_one)
    monkeypatch.chdir(tmp_path)
    rc = reproduce_main(["--quick", "--no-progress", "--base-model", "none", "--only", "fig2",
                         "--out", "figs"])  # fmt: skip
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected = _expected_runtime_line(default_host())
    assert lines[0] == expected
    assert str(tmp_path / "figs") in lines[-1] and str(tmp_path / "runs") in lines[-1]
    timings = json.loads((tmp_path / "figs" / "timings.json").read_text())
    assert timings["runtime"] == expected
    assert timings["versions"]["transformer-lens"] == version("transformer-lens")
    assert timings["versions"]["host"] == default_host()
    readme = (tmp_path / "figs" / "README.md").read_text()
    assert expected.removeprefix("tl-thinktok: ") in readme
