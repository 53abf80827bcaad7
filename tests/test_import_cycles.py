"""No module of plugins/ imports, at the top or inside a function, a module that imports it
back, directly or through others. Why: a cycle works only by the order of imports (the last
one in ``models.py`` was there to make the baselines register themselves) and hides which
module a thing belongs to. The checker reads the source (nothing is imported), resolves
relative imports, and is shown to find a cycle in a package made for it."""

from __future__ import annotations

from pathlib import Path

import harness_plugins
from import_graph import cycles, import_graph


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
