"""The package's import graph is acyclic: every import of every module counts, at module level or
inside a function (a lazy import is still a dependency), including a package ``__init__`` that
imports its submodules and ``importlib.import_module("<literal>")`` calls.

Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tl_thinktok

PKG = "tl_thinktok"
ROOT = Path(tl_thinktok.__file__).resolve().parent


def module_names() -> dict[str, Path]:
    """Every module of the package: dotted name → file."""
    out = {}
    for f in sorted(ROOT.rglob("*.py")):
        parts = f.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package modules that module ``name`` imports anywhere in its body."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]

    def owning(dotted: str) -> str | None:
        """The longest package module that ``dotted`` names (a module, or a name inside one)."""
        while dotted:
            if dotted in modules:
                return dotted
            dotted = dotted.rpartition(".")[0]
        return None

    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for a in node.names:
                if (m := owning(a.name)) is not None:
                    found.add(m)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            for a in node.names:  # `from pkg import sub` imports the submodule pkg.sub
                target = f"{src}.{a.name}"
                m = target if target in modules else owning(src)
                if m is not None:
                    found.add(m)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            if (m := owning(node.args[0].value)) is not None:
                found.add(m)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = module_names()
    names = set(mods)
    return {n: imported_modules(n, p, names) for n, p in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or ``None`` (iterative DFS, deterministic order)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for start in sorted(graph):
        if start in state:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(graph.get(nxt, ())))))
                path.append(nxt)
    return None


def test_cycle_finder_finds_a_cycle_and_accepts_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_parser_sees_lazy_relative_and_submodule_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "from tl_thinktok import hosts, __version__\n"
        "if TYPE_CHECKING:\n    from tl_thinktok.probe import MIProbe\n"
        "def f():\n    from tl_thinktok.peaks import find_peaks\n    import tl_thinktok.mi\n"
        "    return importlib.import_module('tl_thinktok.lens')\n"
        "from .trace import MITrace\n"
    )
    mods = {"tl_thinktok", "tl_thinktok.hosts", "tl_thinktok.probe", "tl_thinktok.peaks",
            "tl_thinktok.mi", "tl_thinktok.lens", "tl_thinktok.trace", "tl_thinktok.m"}  # fmt: skip
    got = imported_modules("tl_thinktok.m", src, mods)
    assert got == {"tl_thinktok", "tl_thinktok.hosts", "tl_thinktok.peaks", "tl_thinktok.mi",
                   "tl_thinktok.lens", "tl_thinktok.trace"}  # fmt: skip


def test_graph_covers_the_package():
    graph = import_graph()
    assert {"tl_thinktok.trace", "tl_thinktok.generation", "tl_thinktok.reproduce.cli"} <= set(
        graph
    )
    assert "tl_thinktok.generation" in graph["tl_thinktok.trace"]
    assert "tl_thinktok.reproduce.cli" in graph["tl_thinktok.reproduce"]  # __init__ → submodule


def test_package_import_graph_is_acyclic():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
