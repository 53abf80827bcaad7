"""The public API is what plugins use, and what the plugin guide says it is.

* Every module under ``plugins/`` imports from the host only its public surface (``harness``,
  ``harness.api``, ``harness.hookspecs``, ``harness.errors``): a built-in plugin can do
  nothing a third-party one cannot.
* The plugin guide's (docs/plugins.md) block of contract signatures is the code's, parameter for
  parameter.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from harness import api

REPO = Path(__file__).resolve().parents[1]
PUBLIC = {"harness", "harness.api", "harness.hookspecs", "harness.errors"}


def _host_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a ``harness`` module in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "harness":  # `from harness import training` is a module too
                names += [f"harness.{a.name}" for a in node.names
                          if (REPO / "harness" / f"{a.name}.py").is_file()
                          or (REPO / "harness" / a.name / "__init__.py").is_file()]
        else:
            continue
        found += [(node.lineno, n) for n in names if n == "harness" or n.startswith("harness.")]
    return found


def test_plugins_import_only_the_public_api() -> None:
    offenders = [f"{path.relative_to(REPO)}:{line}: {module}"
                 for path in sorted((REPO / "plugins").rglob("*.py"))
                 for line, module in _host_imports(path) if module not in PUBLIC]
    assert offenders == [], ("plugins must use only " + ", ".join(sorted(PUBLIC))
                             + "; export what they need through harness.api:\n"
                             + "\n".join(offenders))


def test_the_import_check_catches_a_private_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from harness import training, cli\nimport harness.evaluation.fid\n"
                   "from harness.api import X\n")
    assert [m for _, m in _host_imports(bad) if m not in PUBLIC] == [
        "harness.training", "harness.cli", "harness.evaluation.fid"]


def _readme_signatures() -> dict[str, list[ast.FunctionDef]]:
    guide = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    marker = "exactly as in `harness/api.py`"
    assert marker in guide, "docs/plugins.md lost its block of signatures"
    block = re.search(r"```python\n(.*?)```", guide[guide.index(marker):], re.DOTALL)
    assert block is not None
    out: dict[str, list[ast.FunctionDef]] = {}
    current = ""
    for line in block.group(1).splitlines():
        if line.startswith("# harness.api."):
            current = line.removeprefix("# harness.api.").strip()
            out[current] = []
        elif line.startswith("def "):
            tree = ast.parse(line + ": ...")
            out[current].append(tree.body[0])  # type: ignore[arg-type]
    return out


def _shape(args: ast.arguments, returns: ast.expr | None) -> tuple[object, ...]:
    def names(items: list[ast.arg]) -> list[tuple[str, str]]:
        return [(a.arg, ast.unparse(a.annotation) if a.annotation else "") for a in items]

    return (names(args.posonlyargs + args.args), [ast.unparse(d) for d in args.defaults],
            names(args.kwonlyargs),
            [ast.unparse(d) if d is not None else None for d in args.kw_defaults],
            ast.unparse(returns) if returns else "")


def _code_function(cls: type, name: str) -> ast.FunctionDef:
    source = inspect.getsource(cls)
    tree = ast.parse(inspect.cleandoc("\n" + source) if source.startswith(" ") else source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"harness.api.{cls.__name__} has no method {name}")


@pytest.mark.parametrize("contract", ["GenerativeModel", "Sampling", "Encoding",
                                      "Reconstructing", "OwnsTrainingStep", "StepContext",
                                      "EvaluationProtocol", "EvalContext", "Metric"])
def test_readme_signatures_are_the_codes(contract: str) -> None:
    shown = _readme_signatures()
    assert shown.get(contract), f"docs/plugins.md shows no signatures of harness.api.{contract}"
    cls = getattr(api, contract)
    for fn in shown[contract]:
        real = _code_function(cls, fn.name)
        assert _shape(fn.args, fn.returns) == _shape(real.args, real.returns), (
            f"docs/plugins.md's {contract}.{fn.name} differs from harness/api.py")


def test_the_signature_check_catches_a_drift() -> None:
    real = _code_function(api.Metric, "__call__")
    drifted = ast.parse("def __call__(self, images: torch.Tensor, reference: Dataset, "
                        "info: DatasetInfo, device: Any = None) -> dict[str, Any]: ...").body[0]
    assert _shape(drifted.args, drifted.returns) != _shape(real.args, real.returns)  # type: ignore[attr-defined]
