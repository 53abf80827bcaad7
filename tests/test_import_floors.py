"""The host's floors: each subpackage (and top-level module) of ``harness/`` imports only the
floors below it, at the top of a module or inside a function alike, so no two of them import
each other and a change on one floor cannot reach the floors under it.

The floors, lowest first, are :data:`FLOORS` (docs/internals.md draws them). ``harness.api``
also names host services that a plugin may use (``_SERVICES``); it resolves them lazily by
name for plugins only, and the host never reaches a service through it (checked below).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from import_graph import cycles, import_graph

import harness

ROOT = Path(harness.__file__).parent

#: lowest first; a unit on one floor may import only the units on floors below its own
FLOORS: list[set[str]] = [
    {"harness.errors", "harness.progress", "harness.distributed", "harness.hookspecs"},
    {"harness.host"},
    {"harness.api"},
    {"harness"},  # the package's __init__: the plugin-facing names
    {"harness.configuration"},
    {"harness.rundir"},
    {"harness.training"},
    {"harness.evaluation"},
    {"harness.results"},
    {"harness.run"},
    {"harness.benchmark"},
    {"harness.cli"},
]


def unit_of(module: str) -> str:
    """The floor unit of a module: its subpackage directly under the root, or the top-level
    module itself."""
    return ".".join(module.split(".")[:2])


def unit_graph(root: Path) -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> the ``module -> module`` imports behind that edge."""
    graph: dict[str, dict[str, list[str]]] = {}
    for source, targets in sorted(import_graph(root, root.name).items()):
        for target in sorted(targets):
            a, b = unit_of(source), unit_of(target)
            if a != b:
                graph.setdefault(a, {}).setdefault(b, []).append(f"{source} -> {target}")
    return graph


def two_way_ties(graph: dict[str, dict[str, list[str]]]) -> list[str]:
    return [f"{a} <-> {b}: {graph[a][b][0]}; {graph[b][a][0]}"
            for a in sorted(graph) for b in sorted(graph[a]) if a < b and a in graph.get(b, {})]


def unit_cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    return cycles({a: set(targets) for a, targets in graph.items()})


def upward_imports(graph: dict[str, dict[str, list[str]]]) -> list[str]:
    """Imports from a floor to the same or a higher floor (:data:`FLOORS`)."""
    floor = {unit: i for i, units in enumerate(FLOORS) for unit in units}
    bad = []
    for a, targets in graph.items():
        for b, why in targets.items():
            if a not in floor or b not in floor:
                bad.append(f"{a} -> {b}: a unit with no floor; add it to FLOORS ({why[0]})")
            elif floor[b] >= floor[a]:
                bad.append(f"{a} (floor {floor[a]}) imports {b} (floor {floor[b]}): {why[0]}")
    return bad


def test_no_two_floors_of_the_host_import_each_other() -> None:
    graph = unit_graph(ROOT)
    assert two_way_ties(graph) == []
    assert unit_cycles(graph) == []
    assert upward_imports(graph) == []


def test_every_floor_is_named() -> None:
    """A new subpackage or top-level module must be given its floor."""
    units = {unit_of(module) for module in import_graph(ROOT, ROOT.name)}
    named = set().union(*FLOORS)
    assert units - named == set()
    assert named - units == set()  # no stale floor either


def test_no_module_of_the_host_has_an_import_circle() -> None:
    """Inside a floor too, modules import each other one way only (a package's
    ``__init__`` aside: importing ``harness.x.y`` runs ``harness.x`` first, not an import
    of it)."""
    graph = import_graph(ROOT, ROOT.name)
    assert cycles({m: {t for t in targets if t != unit_of(t)} for m, targets in graph.items()}) == []


def test_the_host_never_reaches_a_service_through_the_api() -> None:
    """``harness.api``'s lazily resolved services point up the floors for plugins' sake; a
    host module taking one through ``harness.api`` would hide an upward import."""
    from harness import api

    services = set(api._SERVICES)
    offenders = []
    for path in ROOT.rglob("*.py"):
        if path.name == "api.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "harness.api":
                offenders += [f"{path.name}: {a.name}" for a in node.names if a.name in services]
            elif (isinstance(node, ast.Attribute) and node.attr in services
                  and isinstance(node.value, ast.Name) and node.value.id == "api"):
                offenders.append(f"{path.name}: api.{node.attr}")
    assert offenders == []


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


@pytest.mark.parametrize("importer", [
    "from pkg.low import thing\n",  # at the top
    "def f():\n    from pkg.low.mod import thing\n",  # inside a function
    "def f():\n    from ..low import mod\n",  # relative, inside a function
])
def test_the_check_catches_a_two_way_tie(tmp_path: Path, importer: str) -> None:
    root = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/low/__init__.py": "",
        "pkg/low/mod.py": "def g():\n    from pkg.high import top\n",
        "pkg/high/__init__.py": "",
        "pkg/high/top.py": importer,
    })
    graph = unit_graph(root)
    assert [t.split(":")[0] for t in two_way_ties(graph)] == ["pkg.high <-> pkg.low"]
    assert unit_cycles(graph) == [["pkg.high", "pkg.low"]]


def test_the_check_catches_a_longer_cycle_and_an_upward_import(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import pkg.b\n",
        "pkg/b.py": "from pkg import c\n",
        "pkg/c.py": "def f():\n    from . import a\n",
    })
    graph = unit_graph(root)
    assert two_way_ties(graph) == []
    assert unit_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert any("pkg.a -> pkg.b: a unit with no floor" in line for line in upward_imports(graph))
