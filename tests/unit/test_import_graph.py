"""The import graph keeps the layers of docs/ARCHITECTURE.md §10.

The core (`eventstore`, but for its command line) imports neither the read
models (`projections`) nor the command line; no two modules import each
other, directly or in a ring, counting imports made only for type checking
(they are a dependency of the code's meaning all the same). The read models
and the command line, the leaves, use only the core's public names: those
of the public modules below, each module's `__all__` where it has one.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import grimp
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterable

PACKAGES = ("eventstore", "projections")
CLI = "eventstore.cli"
# The pytest plugin (docs/TESTING.md) lives in the package by name but, like the
# command line, sits on top of everything.
PLUGIN = "eventstore.testing"
# The web console too: it shows the read models.
CONSOLE = "eventstore.console"
LEAVES = ("projections", CLI, PLUGIN, CONSOLE)
# The core's public face: the package, its error hierarchy, the storage
# contract's tables, the audit facade, the projection seam, and the parser
# of durations and times that the command line and the console share.
PUBLIC_MODULES = (
    "eventstore",
    "eventstore.errors",
    "eventstore.schema",
    "eventstore.audit",
    "eventstore.projecting",
    "eventstore.telemetry",
    "eventstore.parsing",
)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=False)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _core(graph: grimp.ImportGraph) -> list[str]:
    return sorted(
        module
        for module in graph.modules
        if _within(module, "eventstore")
        and not _within(module, CLI)
        and not _within(module, PLUGIN)
        and not _within(module, CONSOLE)
    )


def cycles(graph: grimp.ImportGraph, modules: Iterable[str]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    chosen = set(modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in chosen:
                continue
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(chosen):
        if module not in index:
            visit(module)
    return found


def _lines(graph: grimp.ImportGraph, importer: str, imported: str) -> str:
    details = graph.get_import_details(importer=importer, imported=imported)
    return "; ".join(
        f"{importer}:{detail['line_number']} {detail['line_contents']}"
        for detail in details
    )


def test_the_core_imports_neither_projections_nor_the_command_line(
    graph: grimp.ImportGraph,
) -> None:
    upward = [
        _lines(graph, module, imported)
        for module in _core(graph)
        for imported in sorted(graph.find_modules_directly_imported_by(module))
        if _within(imported, "projections") or _within(imported, CLI)
    ]
    assert upward == []


def _public_names(module: str) -> set[str]:
    loaded = importlib.import_module(module)
    names = getattr(loaded, "__all__", None)
    if names is None:
        names = [name for name in vars(loaded) if not name.startswith("_")]
    return set(names) | {
        public.rsplit(".", 1)[1]
        for public in PUBLIC_MODULES
        if "." in public and public.rsplit(".", 1)[0] == module
    }


def private_uses(source: str, where: str) -> list[str]:
    """Imports from the core in `source` that are not public names of public modules."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
            names: list[str] = []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
            names = [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            # A leaf may use another (the CLI serves the console).
            if not _within(module, "eventstore") or any(
                _within(module, leaf) for leaf in LEAVES
            ):
                continue
            if module not in PUBLIC_MODULES:
                found.append(f"{where}:{node.lineno} imports {module}")
                continue
            hidden = sorted(set(names) - _public_names(module))
            if hidden:
                found.append(
                    f"{where}:{node.lineno} imports {', '.join(hidden)} from {module}"
                )
    return found


def _sources(module: str) -> list[Path]:
    """The files of a module: itself, or every file of a package."""
    path = ROOT / module.replace(".", "/")
    single = path.with_suffix(".py")
    return [single] if single.exists() else sorted(path.rglob("*.py"))


def test_the_leaves_use_only_public_names_of_the_core() -> None:
    sources = {leaf: _sources(leaf) for leaf in LEAVES}
    assert all(sources.values()), sources
    uses = [
        use
        for paths in sources.values()
        for path in paths
        for use in private_uses(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert uses == []


def test_private_uses_finds_private_modules_and_names() -> None:
    source = (
        "from eventstore import EventStore, errors\n"
        "from eventstore import _hidden\n"
        "from eventstore.log import upcast_event\n"
        "import eventstore.backends.base\n"
        "from eventstore.projecting import ProjectionContext\n"
        "from eventstore.cli.app import app\n"
    )
    assert private_uses(source, "m.py") == [
        "m.py:2 imports _hidden from eventstore",
        "m.py:3 imports eventstore.log",
        "m.py:4 imports eventstore.backends.base",
    ]


def test_no_module_imports_itself_through_others(graph: grimp.ImportGraph) -> None:
    assert cycles(graph, graph.modules) == []


def test_the_cycle_finder_finds_rings_and_only_them() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in [
        ("pkg.a", "pkg.b"),
        ("pkg.b", "pkg.c"),
        ("pkg.c", "pkg.a"),
        ("pkg.c", "pkg.d"),
        ("pkg.e", "pkg.f"),
        ("pkg.f", "pkg.e"),
        ("pkg.g", "pkg.d"),
    ]:
        graph.add_import(importer=importer, imported=imported)
    assert sorted(cycles(graph, graph.modules)) == [
        ["pkg.a", "pkg.b", "pkg.c"],
        ["pkg.e", "pkg.f"],
    ]


def test_the_command_line_loads_the_console_only_to_serve() -> None:
    # Every other command would pay for the web server's import at start.
    script = (
        "import sys, eventstore.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'uvicorn', 'starlette', 'sse_starlette'} or m.startswith('eventstore.console')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
