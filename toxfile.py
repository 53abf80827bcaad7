"""tox's inline plugin (tox 4 loads ``toxfile.py`` beside ``tox.ini``): Python discovery and
missing interpreters.

* Interpreters installed with pyenv are found even when they are not on ``PATH`` (pyenv's
  shims only answer for the active versions): every ``$PYENV_ROOT/versions/3.X.Y/bin/python3``
  with ``3.X >= 3.10`` (this project's ``requires-python``) is added to ``--discover``.
* ``skip_missing_interpreters`` is true in ``tox.ini`` (a developer without Python 3.13 can
  still run ``tox``), but in CI-like runs (``CI`` set to a true value) a missing interpreter
  fails the run instead of being skipped. An explicit ``--skip-missing-interpreters`` or
  ``TOX_SKIP_MISSING_INTERPRETERS`` wins over both.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tox.plugin import impl

MIN_MINOR = 10  # requires-python = ">=3.10"


def pyenv_interpreters(root: str | os.PathLike[str] | None = None) -> list[str]:
    """``$PYENV_ROOT/versions/3.X.Y/bin/python3`` for each installed CPython 3.X >= 3.10."""
    base = Path(root or os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = []
    for version in sorted(base.glob("3.*")) if base.is_dir() else []:
        match = re.fullmatch(r"3\.(\d+)\.\d+", version.name)
        exe = version / "bin" / "python3"
        if match and int(match.group(1)) >= MIN_MINOR and os.access(exe, os.X_OK):
            found.append(str(exe))
    return found


def ci_run() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


@impl
def tox_add_core_config(core_conf: Any, state: Any) -> None:  # noqa: ARG001 - tox's signature
    options = state.conf.options
    discover = list(getattr(options, "discover", None) or [])
    options.discover = discover + [exe for exe in pyenv_interpreters() if exe not in discover]
    if ci_run() and str(getattr(options, "skip_missing_interpreters", "config")) == "config":
        options.skip_missing_interpreters = "false"
