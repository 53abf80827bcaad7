"""No module of plugins/ imports, at the top or inside a function, a module that imports it
back, directly or through others. Why: a cycle works only by the order of imports (the last
one in ``models.py`` was there to make the baselines register themselves) and hides which
module a thing belongs to. The checker reads the source (nothing is imported), resolves
relative imports, and is shown to find a cycle in a package made for it."""

from __future__ import annotations

import ast
from pathlib import Path

import harness_plugins


def _module_name(path: Path, root: Path, package: str) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((package, *parts))


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement names: ``import a.b`` gives ``a.b``, ``from X
    import n`` gives ``X.n`` (a submodule, or an attribute of ``X``), a relative ``X``
    resolved against the package of ``module``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    return [f"{base}.{alias.name}" for alias in node.names]


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports, anywhere in its source (module
    level or inside functions, absolute or relative)."""
    files = {_module_name(p, root, package): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for dotted in _imported(node, name, path.name == "__init__.py"):
                    parts = dotted.split(".")
                    while parts and ".".join(parts) not in files:
                        parts.pop()  # ``from a.b import attr``: the module a.b
                    if parts:
                        targets.add(".".join(parts))
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import one another (the strongly connected components with
    more than one module, Tarjan's algorithm), each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_plugins_have_no_import_cycle() -> None:
    root = Path(harness_plugins.__file__).parent
    graph = import_graph(root, "harness_plugins")
    assert "harness_plugins.metrics.fid" in graph and graph["harness_plugins.metrics.fid"]
    found = cycles(graph)
    assert found == [], "\n".join(
        " <-> ".join(group) + ": " + "; ".join(
            f"{m} imports {', '.join(sorted(graph[m] & set(group)))}" for m in group)
        for group in found)


def test_the_checker_finds_cycles_through_function_and_relative_imports(tmp_path: Path) -> None:
    files = {
        "__init__.py": "",
        "a.py": "from .b import thing\n",
        "b.py": "thing = 1\n\n\ndef late():\n    from . import a\n    return a\n",
        "sub/__init__.py": "",
        "sub/c.py": "from ..a import thing\n",  # into the cycle a <-> b, not part of it
        "sub/d.py": "def f():\n    import pkg.sub.e\n",
        "sub/e.py": "from .. import sub\nfrom ..sub.d import f\n",
    }
    for name, text in files.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)
    graph = import_graph(tmp_path / "pkg", "pkg")
    assert graph["pkg.b"] == {"pkg.a"} and graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.sub.c"] == {"pkg.a"}
    assert graph["pkg.sub.e"] == {"pkg.sub", "pkg.sub.d"}
    assert graph["pkg.sub.d"] == {"pkg.sub.e"}
    assert cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.sub.d", "pkg.sub.e"]]
    (tmp_path / "pkg" / "b.py").write_text("thing = 1\n")
    assert cycles(import_graph(tmp_path / "pkg", "pkg")) == [["pkg.sub.d", "pkg.sub.e"]]
