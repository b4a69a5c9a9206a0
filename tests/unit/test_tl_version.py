"""TransformerLens 3.x and 4.x: hosts per version, the hooked-on-TL-4 error, no removed imports.

TL 4.0 removed ``HookedTransformer``, ``HookedTransformerConfig``, ``transformer_lens.components``,
``transformer_lens.utils`` and the ``pretrained`` weight converters. tl-thinktok may use them only
on the hooked path (inside functions), never at import time; on TL 4 the hooked host is a clear
error naming the fix. The TL 4 paths are also exercised on TL 3 by faking the version.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from importlib import metadata
from pathlib import Path

import pytest

import tl_thinktok
from tl_thinktok import hosts
from tl_thinktok.hosts import versions
from tl_thinktok.loading import hf_config_to_tl_config, load_model

PKG = Path(tl_thinktok.__file__).parent
REMOVED_MODULES = (
    "transformer_lens.components",
    "transformer_lens.utils",
    "transformer_lens.pretrained",
    "transformer_lens.loading_from_pretrained",
    "transformer_lens.HookedTransformer",
    "transformer_lens.HookedTransformerConfig",
)
REMOVED_NAMES = {"HookedTransformer", "HookedTransformerConfig", "components", "utils"}
# where a TL-3-only import may appear (inside a function on the hooked path)
HOOKED_PATH_FILES = {"hosts/hooked.py", "loading/models.py"}


def _hooked_importable() -> bool:
    try:
        from transformer_lens import HookedTransformer  # noqa: F401
    except ImportError:
        return False
    return True


def test_version_and_hosts_follow_the_installed_transformer_lens():
    raw = metadata.version("transformer-lens")
    assert versions.tl_version()[:2] == tuple(int(x) for x in raw.split(".")[:2])
    major = versions.tl_version()[0]
    assert major in (3, 4)
    # independent of the version number: what the installed TL really offers
    assert ("hooked" in hosts.supported_hosts()) == _hooked_importable()
    assert hosts.supported_hosts() == (("hooked", "bridge") if major == 3 else ("bridge",))
    assert hosts.default_host() == ("hooked" if major == 3 else "bridge")


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [("4.3.0", (4, 3, 0)), ("3.9", (3, 9, 0)), ("4.0.0rc1", (4, 0, 0)), ("3.9.0+local", (3, 9, 0))],
)
def test_version_parsing(raw, parsed):
    assert versions._parse_version(raw) == parsed
    with pytest.raises(ValueError, match="cannot parse"):
        versions._parse_version("dev")


def test_unknown_host_is_refused():
    for bad in ("tpu", None, 3):
        with pytest.raises(ValueError, match="unknown host.*hooked, bridge"):
            hosts.check_host_available(bad)
    assert hosts.check_host_available("bridge") == "bridge"


@pytest.fixture
def tl4(monkeypatch):
    """Pretend TransformerLens 4.3.0 is installed (the real TL 4 leg checks the same for real)."""
    monkeypatch.setattr(versions, "tl_version", lambda: (4, 3, 0))


def _check_hooked_error(err: pytest.ExceptionInfo) -> None:
    msg = str(err.value)
    assert "host='hooked'" in msg and "HookedTransformer" in msg and "4.3.0" in msg
    assert "host='bridge'" in msg  # the fix, either one
    assert "transformer-lens>=3.0,<4" in msg
    assert isinstance(err.value, ValueError)


def test_hooked_on_tl4_is_a_clear_error_naming_the_fix(tl4, qwen2_dir):
    assert hosts.supported_hosts() == ("bridge",) and hosts.default_host() == "bridge"
    with pytest.raises(hosts.HostUnavailableError) as err:
        hosts.check_host_available("hooked")
    _check_hooked_error(err)
    with pytest.raises(hosts.HostUnavailableError) as err:
        load_model(str(qwen2_dir), host="hooked")
    _check_hooked_error(err)
    import transformers

    with pytest.raises(hosts.HostUnavailableError):
        hf_config_to_tl_config(transformers.Qwen2Config(architectures=["Qwen2ForCausalLM"]))


def test_default_host_on_tl4_is_the_bridge(tl4, qwen2_dir):
    model = load_model(str(qwen2_dir))
    assert hosts.adapter(model).name == "bridge" and model.thinktok_info.host == "bridge"
    assert not hosts.HookedAdapter.matches(model)


@pytest.mark.skipif(versions.tl_version()[0] < 4, reason="the real TransformerLens 4 error")
def test_real_tl4_refuses_hooked(qwen2_dir):
    with pytest.raises(hosts.HostUnavailableError) as err:
        load_model(str(qwen2_dir), host="hooked")
    _check_hooked_error(err)


def _removed_imports(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, what, at module level) for every import of something TL 4 removed."""
    out = []
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node

    def top_level(node: ast.AST) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                return False
        return True

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith(REMOVED_MODULES):
                    out.append((node.lineno, a.name, top_level(node)))
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {a.name for a in node.names}
            if node.module.startswith(REMOVED_MODULES) or (
                node.module == "transformer_lens" and names & REMOVED_NAMES
            ):
                out.append((node.lineno, f"{node.module}: {sorted(names)}", top_level(node)))
    return out


def test_removed_tl4_modules_only_inside_hooked_path_functions():
    offenders, seen = [], []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        for line, what, top in _removed_imports(ast.parse(path.read_text(encoding="utf-8"))):
            seen.append(rel)
            if top or rel not in HOOKED_PATH_FILES:
                offenders.append(f"{rel}:{line}: {what}{' (module level)' if top else ''}")
    assert not offenders, "TL-3-only imports outside the hooked path:\n" + "\n".join(offenders)
    assert set(seen) == HOOKED_PATH_FILES  # the scan finds the known hooked-path imports


def test_the_scan_catches_module_level_imports():
    src = "from transformer_lens import HookedTransformer\nimport transformer_lens.utils\n"
    src += "def f():\n    from transformer_lens.components import RMSNorm\n"
    assert [top for _, _, top in _removed_imports(ast.parse(src))] == [True, True, False]
    assert not _removed_imports(ast.parse("from transformer_lens import ActivationCache"))


def test_every_module_imports():
    """Every tl_thinktok module imports on the installed TL (on TL 4: without the removed API)."""
    failed = []
    for info in pkgutil.walk_packages([str(PKG)], prefix="tl_thinktok."):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception as err:  # noqa: BLE001 - report every failure at once
            failed.append(f"{info.name}: {type(err).__name__}: {err}")
    assert not failed, "\n".join(failed)


def test_official_names_resolve_on_either_layout():
    """TL 4 moved get_official_model_name to supported_models; aliases still resolve (offline)."""
    from tl_thinktok.loading import models as loading

    assert loading._official_tl_name("gpt2-small") == "gpt2"
    assert loading._official_tl_name("not-a-model/anywhere") is None
