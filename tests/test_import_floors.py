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


def module_name(path: Path, root: Path) -> str:
    """``harness.rundir.atomic`` for ``harness/rundir/atomic.py`` (a package for its
    ``__init__.py``)."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path) -> set[str]:
    """The modules of ``root``'s package that ``path`` imports, anywhere in it (the top, a
    function, a ``TYPE_CHECKING`` block), relative imports resolved; ``from pkg import name``
    counts as ``pkg.name`` where that is a module, else as ``pkg``."""
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                up = up[: len(up) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{alias.name}" if _is_module(root, [*base.split("."), alias.name])
                       else base for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != root.name:
                continue
            parts = target.split(".")
            while parts and not _is_module(root, parts):
                parts.pop()
            if parts:
                found.add(".".join(parts))
    found.discard(here)
    return found


def _is_module(root: Path, parts: list[str]) -> bool:
    where = root.parent.joinpath(*parts)
    return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()


def unit_of(module: str) -> str:
    """The floor unit of a module: its subpackage directly under the root, or the top-level
    module itself."""
    return ".".join(module.split(".")[:2])


def unit_graph(root: Path) -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> the ``module -> module`` imports behind that edge."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(root.rglob("*.py")):
        source = module_name(path, root)
        for target in sorted(imported_modules(path, root)):
            a, b = unit_of(source), unit_of(target)
            if a != b:
                graph.setdefault(a, {}).setdefault(b, []).append(f"{source} -> {target}")
    return graph


def two_way_ties(graph: dict[str, dict[str, list[str]]]) -> list[str]:
    return [f"{a} <-> {b}: {graph[a][b][0]}; {graph[b][a][0]}"
            for a in sorted(graph) for b in sorted(graph[a]) if a < b and a in graph.get(b, {})]


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Every elementary cycle's nodes, found by depth-first search from each node (small
    graphs: the host has a dozen units, a plugin package a few dozen modules)."""
    found: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, {})):
            if nxt == path[0]:
                key = tuple(sorted(path))
                if key not in seen:
                    seen.add(key)
                    found.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    return found


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
    assert cycles(graph) == []
    assert upward_imports(graph) == []


def test_every_floor_is_named() -> None:
    """A new subpackage or top-level module must be given its floor."""
    units = {unit_of(module_name(p, ROOT)) for p in ROOT.rglob("*.py")}
    named = set().union(*FLOORS)
    assert units - named == set()
    assert named - units == set()  # no stale floor either


def test_no_module_of_the_host_has_an_import_circle() -> None:
    """Inside a floor too, modules import each other one way only."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in ROOT.rglob("*.py"):
        source = module_name(path, ROOT)
        for target in imported_modules(path, ROOT):
            if not path.name == "__init__.py" and target != unit_of(target):
                graph.setdefault(source, {})[target] = [f"{source} -> {target}"]
    assert cycles(graph) == []


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
    assert cycles(graph) == [["pkg.high", "pkg.low", "pkg.high"]]


def test_the_check_catches_a_longer_cycle_and_an_upward_import(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import pkg.b\n",
        "pkg/b.py": "from pkg import c\n",
        "pkg/c.py": "def f():\n    from . import a\n",
    })
    graph = unit_graph(root)
    assert two_way_ties(graph) == []
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert any("pkg.a -> pkg.b: a unit with no floor" in line for line in upward_imports(graph))
