"""A wheel carries everything: built from a copy of the tracked sources, installed into a fresh
venv (system packages for torch & co., ``--no-deps``), run from a folder with no source tree,
``harness benchmark --list`` lists the built-in suites (package data of the built-in plugin)
and a smoke benchmark of one of them runs to its report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUITES = {"paper-synthetic", "paper-real", "paper-ablation", "beta-sweep"}
SMOKE = ["--seeds", "1", "--set", "models=ae", "--set", "train.steps=2",
         "--set", "data.n_test=8", "--set", "train.batch_size=16",
         "--set", "eval.random-generation.n_samples=16",
         "--set", "eval.random-generation.gmm_components=2",
         "--set", "eval.interpolation.n_pairs=2"]


def _tracked_copy(dest: Path) -> Path:
    """The git-tracked files (what a release builds from; no build leftovers)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if name.startswith(("harness/", "plugins/")) or name in ("pyproject.toml", "README.md"):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target)
    return dest


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs the git checkout (the wheel is built from its tracked files)")
    root = tmp_path_factory.mktemp("wheel")
    src = _tracked_copy(root / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(root / "dist"), str(src)], check=True, env=_env())
    (wheel,) = (root / "dist").glob("vrrae_harness-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                    str(wheel)], check=True, env=_env())
    return venv


@pytest.mark.slow  # builds a wheel and runs one training run: about a minute when loaded
def test_a_wheel_install_lists_and_runs_the_builtin_suites(wheel_venv: Path,
                                                           tmp_path: Path) -> None:
    python = str(wheel_venv / "bin" / "python")
    where = subprocess.run([python, "-c", "import harness, harness_plugins.suites as s; "
                            "print(harness.__file__); print(s.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, check=True, env=_env()).stdout
    assert all(str(wheel_venv) in line for line in where.split()), where  # not the source tree
    listed = subprocess.run([str(wheel_venv / "bin" / "harness"), "benchmark", "--list"],
                            cwd=tmp_path, capture_output=True, text=True, env=_env())
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines()
             if line.strip() and not line.startswith(" ")}  # indented: a suite's details
    assert SUITES <= names, listed.stdout
    assert str(REPO) not in listed.stdout  # read from the installed package data
    out = tmp_path / "bench"
    run = subprocess.run([str(wheel_venv / "bin" / "harness"), "benchmark", "paper-synthetic",
                          "--out", str(out), *SMOKE], cwd=tmp_path, capture_output=True,
                         text=True, env=_env(), timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    state = json.loads((out / "benchmark.json").read_text())
    assert {r["status"] for r in state["runs"].values()} == {"done"}
    assert "[1/1 done, 0 running, 0 failed" in run.stderr
    # the results, printed at the end: a table per protocol, one row per model and dataset
    assert any(line.split()[:2] == ["ae", "bumps"] for line in run.stdout.splitlines())
    assert (out / "report.html").is_file() and (out / "figures" /
                                                "random-generation-bumps.png").is_file()
