"""toxfile.py, tox's inline plugin (issue 9, item 11): pyenv's interpreters are discovered, and
a missing interpreter fails (not skips) when CI is set."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("tox")  # the plugin imports tox; tox's own envs do not install it
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import toxfile  # noqa: E402


def _fake_pyenv(root: Path, versions: list[str], executable: bool = True) -> None:
    for version in versions:
        exe = root / "versions" / version / "bin" / "python3"
        exe.parent.mkdir(parents=True)
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755 if executable else 0o644)


def test_pyenv_interpreters_are_the_supported_cpythons(tmp_path: Path) -> None:
    _fake_pyenv(tmp_path, ["2.7.18", "3.9.18", "3.10.13", "3.13.0", "3.12.1", "3.11-dev",
                           "pypy3.10-7.3.12"])
    _fake_pyenv(tmp_path, ["3.14.0"], executable=False)
    found = toxfile.pyenv_interpreters(tmp_path)
    assert found == [str(tmp_path / "versions" / v / "bin" / "python3")
                     for v in ("3.10.13", "3.12.1", "3.13.0")]
    assert toxfile.pyenv_interpreters(tmp_path / "nowhere") == []


@pytest.mark.parametrize(
    ("ci", "option", "expected"),
    [("true", "config", "false"), ("1", "config", "false"), (None, "config", "config"),
     ("false", "config", "config"), ("true", "true", "true")],
)
def test_ci_makes_missing_interpreters_fail(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str | None, option: str, expected: str
) -> None:
    _fake_pyenv(tmp_path, ["3.12.1"])
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    options = SimpleNamespace(discover=["/opt/python"], skip_missing_interpreters=option)
    toxfile.tox_add_core_config(None, SimpleNamespace(conf=SimpleNamespace(options=options)))
    assert options.skip_missing_interpreters == expected
    assert options.discover == ["/opt/python", str(tmp_path / "versions/3.12.1/bin/python3")]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tox") is None, reason="tox is not installed")
def test_tox_fails_a_missing_interpreter_under_ci(tmp_path: Path) -> None:
    """For real: ``py39`` (not supported, so not discovered) is skipped, or failed with CI."""
    def tox(ci: bool) -> str:
        env = {k: v for k, v in os.environ.items() if k not in ("CI", "TOX_SKIP_MISSING_INTERPRETERS")}
        if ci:
            env["CI"] = "true"
        proc = subprocess.run(["tox", "--workdir", str(tmp_path / "tox"), "-e", "py39"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        return proc.stdout + proc.stderr

    assert "py39: SKIP" in tox(ci=False)
    assert "py39: FAIL code 1" in tox(ci=True)
