"""benchmarks/gpu/run.py, the one prepared GPU run: its deadlines stop whole process groups
and keep what finished, its packing fits what comes back from a GPU machine, and (slow) the
whole script runs end to end on the CPU with ``--dry``, so it cannot rot between GPU runs."""

from __future__ import annotations

import importlib.util
import json
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_run():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gpu_run", ROOT / "benchmarks/gpu/run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_run"] = module
    spec.loader.exec_module(module)
    return module


def test_a_phase_past_its_deadline_is_stopped_with_its_whole_process_group(
        gpu_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    clock = gpu_run.Clock(60, tmp_path / "progress.log")
    pid_file = tmp_path / "grandchild.pid"
    script = f"sleep 120 & echo $! > {pid_file}; echo half-done; wait"
    t0 = time.monotonic()
    result = gpu_run.run_phase(clock, "slow", ["sh", "-c", script], tmp_path / "slow.log", 2)
    assert result["timed_out"] and result["rc"] is not None and time.monotonic() - t0 < 20
    assert "half-done" in (tmp_path / "slow.log").read_text()  # what it printed is kept
    grandchild = Path(f"/proc/{int(pid_file.read_text())}/stat")
    if grandchild.exists():  # the benchmark's runs go with it: gone, or a zombie
        assert grandchild.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    done = gpu_run.run_phase(clock, "quick", ["sh", "-c", "exit 3"], tmp_path / "q.log", 30)
    assert done == {**done, "rc": 3, "timed_out": False}
    assert "slow: stopped at its deadline" in (tmp_path / "progress.log").read_text()


def test_no_phase_starts_past_the_script_deadline(gpu_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clock = gpu_run.Clock(3, tmp_path / "progress.log")
    result = gpu_run.run_phase(clock, "late", ["sh", "-c", "exit 0"], tmp_path / "l.log", 60)
    assert result["skipped"] == "no time left" and not (tmp_path / "l.log").exists()


def test_a_suite_is_packed_without_weights_and_under_the_file_limit(
        gpu_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    suite = tmp_path / "paper-real-fashion-mnist-paper"
    run = suite / "runs" / "vrrae-s0"
    (run / "checkpoints" / "step-10").mkdir(parents=True)
    (suite / "report.md").write_text("# report\n")
    (run / "metrics.json").write_text("{}")
    (run / "model.safetensors").write_bytes(b"w" * 1000)
    (run / "checkpoints" / "step-10" / "state.json").write_text("{}")
    rng = np.random.default_rng(0)
    (run / "log.jsonl").write_bytes(rng.bytes(4000))  # incompressible
    monkeypatch.setattr(gpu_run, "MAX_FILE", 3000)  # the log does not fit: it goes first
    info = gpu_run.pack_folder(suite, tmp_path / "suite.tar.gz")
    with tarfile.open(tmp_path / "suite.tar.gz") as tar:
        names = sorted(tar.getnames())
    assert names == ["paper-real-fashion-mnist-paper/report.md",
                     "paper-real-fashion-mnist-paper/runs/vrrae-s0/metrics.json"]
    assert info["bytes"] <= 3000 and info["files"] == 2


def test_jobs_are_sized_from_the_cores_and_the_gpu_memory(gpu_run) -> None:  # type: ignore[no-untyped-def]
    assert gpu_run.jobs_for({"cores": 16, "gpu_memory_gib": 139}, 5) == 5
    assert gpu_run.jobs_for({"cores": 64, "gpu_memory_gib": 139}, 5) == 8
    assert gpu_run.jobs_for({"cores": 16, "gpu_memory_gib": 16}, 5) == 2
    assert gpu_run.jobs_for({"cores": 2, "gpu_memory_gib": 0}, 1) == 1


def test_only_missing_carried_wheels_are_installed(gpu_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for name in ("pytest-99.0-py3-none-any.whl", "surely_not_installed_pkg-1.0-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"")
    assert [w.name for w in gpu_run.missing_wheels(tmp_path)] == [
        "surely_not_installed_pkg-1.0-py3-none-any.whl"]


def _tiny_fashion(root: Path) -> Path:
    from datasets_fixtures import write_idx

    folder = root / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for stem, n in (("train", 1200), ("t10k", 200)):
        write_idx(folder / f"{stem}-images-idx3-ubyte",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{stem}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    return root


@pytest.mark.slow
def test_the_dry_run_goes_through_every_phase_and_packs_at_most_eight_files(
        gpu_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    out = tmp_path / "out"
    code = gpu_run.main([str(out), "--dry", "--minutes", "12",
                         "--data-root", str(_tiny_fashion(tmp_path / "data")),
                         "--wheels", str(tmp_path / "no-wheels")])
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0, summary
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all(p.is_file() for p in out.iterdir())
    assert summary["install"]["imports_ok"]
    row = json.loads((out / "bench_gpu_cpu.json").read_text())["results"][0]
    assert row["config"] == "fmnist-mlp-ae" and row["harness_ms"] > 0
    suites = summary["suites"]
    for name in ("cuda-tests", "tests"):
        assert suites[name]["rc"] == 0 and suites[name]["counts"]["finished"], suites[name]
    for suite in ("paper-real", "paper-ablation"):
        assert suites[suite]["rc"] == 0, suites[suite]
        assert suites[suite]["runs"]["finished"] == suites[suite]["runs"]["planned"] >= 1
        with tarfile.open(out / f"{suite}.tar.gz") as tar:
            names = tar.getnames()
        assert f"{suite}-fashion-mnist-smoke/report.md" in names
        assert not [n for n in names if n.endswith(".safetensors") or "/checkpoints/" in n]
    assert "packed" in (out / "progress.log").read_text()
