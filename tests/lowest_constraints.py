"""The lowest supported dependency set, as a pip constraints file, from ``pyproject.toml``.

Every requirement of the package and of its ``test`` extra must have a lower bound
(``name>=X``); the constraints pin each to that bound (``name==X``). ``tox -e lowest`` installs
the package under these constraints (``PIP_CONSTRAINT``) and runs the tests, so a bound that
is too low fails there. The committed ``tests/lowest-constraints.txt`` must equal this
script's output (``tests/test_dependencies.py`` checks); regenerate it with
``python tests/lowest_constraints.py > tests/lowest-constraints.txt``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
_REQ = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?P<spec>[^;]*?)\s*(?:;\s*(?P<marker>.+))?$"
)


def requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The package's requirements and its ``test`` extra's (not the self-referencing ones)."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    name = project["name"]
    reqs = list(project["dependencies"]) + list(project["optional-dependencies"]["test"])
    return [r for r in reqs if not r.strip().startswith(name)]


def lower_bound(requirement: str) -> tuple[str, str, str | None]:
    """``(name, lowest version, marker)`` of ``name>=X[,<Y][; marker]``; refuses a requirement
    without a lower bound."""
    match = _REQ.match(requirement)
    if not match:
        raise ValueError(f"cannot parse requirement {requirement!r}")
    bounds = re.findall(r">=\s*([0-9][A-Za-z0-9.]*)", match.group("spec"))
    if len(bounds) != 1:
        raise ValueError(f"requirement {requirement!r} needs exactly one lower bound (>=X)")
    return match.group("name").lower(), bounds[0], match.group("marker")


def constraints(pyproject: Path = PYPROJECT) -> str:
    lines = [
        "# The lowest supported dependency set (tox -e lowest): generated from pyproject.toml by",
        "# tests/lowest_constraints.py; do not edit by hand.",
    ]
    for req in requirements(pyproject):
        name, version, marker = lower_bound(req)
        lines.append(f"{name}=={version}" + (f"; {marker}" if marker else ""))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(constraints())
