"""No import cycles anywhere in ``core``: no module reaches itself through the modules it imports, at module
level or inside functions (imports under ``TYPE_CHECKING`` are left out: they never run). Run by the test
command with the rest of the suite; import-linter's ``acyclic_siblings`` contract checks packages, which is
stricter than this (core's apps use each other both ways through different modules)."""

import sys
from pathlib import Path

import grimp

import core
from tests.core.test_product_contract import ROOT


def _cycles(graph: grimp.ImportGraph, package: str) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    modules = sorted(m for m in graph.modules if m == package or m.startswith(package + "."))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in modules:
                continue
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(modules)))
    for module in modules:
        if module not in index:
            visit(module)
    return found


def test_no_module_in_core_imports_itself_through_others():
    assert Path(core.__file__).resolve().parent == ROOT / "core"  # the tree under test, not an installed copy
    graph = grimp.build_graph("core", exclude_type_checking_imports=True, cache_dir=None)
    assert _cycles(graph, "core") == []


def test_the_check_finds_a_cycle(tmp_path, monkeypatch):
    """The check can fail: two modules importing each other (one of them inside a function) are found."""
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from cyclic import b\n")
    (package / "b.py").write_text("def f():\n    from cyclic import a\n")
    (package / "c.py").write_text("from cyclic import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("cyclic", cache_dir=None)
    assert _cycles(graph, "cyclic") == [["cyclic.a", "cyclic.b"]]
