"""One result schema: shipped in the package, every committed benchmark result follows it,
older folders are upgraded in memory and never rewritten, and a document that breaks it is
refused on write (nothing written) and on read (exit 2)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.host.plugins import get_host
from harness.results import documents
from harness.rundir import schema

sys.path.insert(0, os.path.dirname(__file__))
from results_helpers import write_run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p.parent for p in (REPO / "benchmarks" / "results").glob("*/benchmark.json"))


def test_the_schema_ships_in_the_package_and_is_a_valid_json_schema() -> None:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(schema.schema())
    text = (REPO / "pyproject.toml").read_text()
    assert '"harness.rundir" = ["*.schema.json"]' in text


@pytest.mark.parametrize("folder", COMMITTED, ids=[p.name for p in COMMITTED])
def test_every_committed_benchmark_result_follows_the_schema(folder: Path) -> None:
    assert schema.problems(json.loads((folder / "report.json").read_text()),
                           "benchmark_report") == []
    assert schema.problems(json.loads((folder / "benchmark.json").read_text()),
                           "benchmark_state") == []
    doc = documents.read_benchmark(folder, get_host())
    report = json.loads((folder / "report.json").read_text())
    assert len(doc["entries"]) == len(report["rows"]) and doc["entries"]
    assert all(doc["entries"][i]["mean"] == report["rows"][i]["mean"]
               for i in range(len(report["rows"])))
    assert "read from report.json: per-seed values are not kept there" in doc["upgraded"]


def test_at_least_six_committed_benchmarks_are_checked() -> None:
    assert len(COMMITTED) >= 6


def test_the_confidence_interval_is_student_t() -> None:
    """Table 1 at the paper budget, VRRAE's test error: 5.34 ± 1.77 over 5 seeds; the 95 %
    interval is mean ± t(0.975, 4) · std / √5, t(0.975, 4) = 2.776445."""
    folder = REPO / "benchmarks" / "results" / "paper-synthetic-paper"
    doc = documents.read_benchmark(folder)
    entry = next(e for e in doc["entries"] if e["model"] == "vrrae"
                 and doc["tasks"][e["task"]]["name"] == "bumps/reconstruction/rec_error_percent")
    half = 2.7764451051977987 * entry["std"] / 5 ** 0.5
    assert entry["n"] == 5 and entry["ci95"] == pytest.approx(
        [entry["mean"] - half, entry["mean"] + half], rel=1e-12)
    assert entry["mean"] == pytest.approx(5.34, abs=0.005)
    assert doc["suite"] == {"name": "paper-synthetic", "budget": "paper", "seeds": [0, 1, 2, 3, 4]}
    assert doc["wall_time_s"] > 3000  # 20 runs, recorded by the benchmark


def test_a_run_folder_reads_with_tasks_configuration_environment(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", fid=41.5, seed=3)
    doc = documents.read_run(run)
    assert doc["kind"] == "run" and doc["upgraded"] == []
    fid = next(e for e in doc["entries"] if e["task"].startswith(
        "fashion-mnist/random-generation/fid@"))
    assert fid["values"] == [41.5] and fid["seeds"] == [3] and fid["ci95"] is None
    assert fid["configuration"]["train.steps"] == 104
    assert fid["environments"][0]["environment"]["torch_threads"] == 1
    task = doc["tasks"][fid["task"]]
    assert task["version"] == "p1.m2" and "root" not in task["data"]
    assert doc["wall_time_s"] == 12.5


def test_an_older_run_is_upgraded_in_memory_and_never_rewritten(tmp_path: Path) -> None:
    run = write_run(tmp_path / "old", metrics_schema=None, protocol="random_generation")
    metrics = json.loads((run / "metrics.json").read_text())
    for rec in metrics["results"]:
        rec["stamp"].pop("protocol_version")
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "environment.json").unlink()
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir()}
    doc = documents.read_run(run, get_host())
    upgraded = " | ".join(doc["upgraded"])
    assert "without a schema number" in upgraded
    assert "'random_generation' read under its new name 'random-generation'" in upgraded
    assert "no protocol_version, read as 1" in upgraded
    assert "environment is unknown" in upgraded
    new = documents.read_run(write_run(tmp_path / "new"), get_host())
    # the upgraded old run names the same task as a current one
    assert {e["task"] for e in doc["entries"]} == {e["task"] for e in new["entries"]}
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir()}
    assert after == before


def test_a_broken_metrics_document_is_refused_on_write_and_on_read(tmp_path: Path) -> None:
    from harness.rundir.contents import write_metrics

    run = tmp_path / "run"
    run.mkdir()
    bad = {"schema": 1, "run": {"model": "ae", "dataset": "bumps", "seed": 0},
           "results": [{"protocol": "reconstruction", "value": 1.0}]}  # no "metric"
    with pytest.raises(schema.InvalidOnWrite, match="results/0: 'metric' is a required") as exc:
        write_metrics(run, bad)
    assert exc.value.exit_code == 1
    assert not (run / "metrics.json").exists()
    (run / "metrics.json").write_text(json.dumps(bad))
    with pytest.raises(HarnessError, match="does not follow the result schema") as exc2:
        documents.read_run(run)
    assert exc2.value.exit_code == 2


def test_a_real_run_writes_a_valid_metrics_json(tmp_path: Path) -> None:
    from cli_helpers import TINY, cli

    res = cli("run", "--model", "ae", "--out", str(tmp_path / "r"), *TINY)
    assert res.code == 0, res.err
    doc = documents.read_run(tmp_path / "r", get_host())
    assert [doc["tasks"][e["task"]]["name"] for e in doc["entries"]] == \
        ["bumps/reconstruction/rec_error_percent"]
    env = doc["entries"][0]["environments"][0]["environment"]
    assert env["packages"]["torch"] and env["torch_threads"] >= 1


def test_a_benchmark_with_its_runs_keeps_per_seed_values(tmp_path: Path) -> None:
    """With its runs' folders present, a benchmark's result has every seed's value, the
    runs' configurations and environments, and the wall time the benchmark recorded."""
    bench = tmp_path / "bench"
    runs = {}
    for seed, fid in ((0, 40.0), (1, 44.0), (2, 45.0)):
        write_run(bench / "runs" / f"vrrae-seed{seed}", seed=seed, fid=fid, threads=1 + seed % 2)
        runs[f"vrrae-seed{seed}"] = {"id": f"vrrae-seed{seed}", "dataset": "fashion-mnist",
                                     "model": "vrrae", "seed": seed, "phase": "final",
                                     "status": "done", "dir": f"runs/vrrae-seed{seed}",
                                     "wall_s": 100.0 + seed}
    (bench / "benchmark.json").write_text(json.dumps(
        {"suite": {"name": "mine"}, "budget": "cpu", "seeds": [0, 1, 2], "runs": runs}))
    doc = documents.read_benchmark(bench)
    fid = next(e for e in doc["entries"] if doc["tasks"][e["task"]]["key"] == "fid")
    assert fid["seeds"] == [0, 1, 2] and fid["values"] == [40.0, 44.0, 45.0]
    assert fid["mean"] == pytest.approx(43.0) and fid["std"] == pytest.approx(7 ** 0.5)
    half = 4.302652729749464 * 7 ** 0.5 / 3 ** 0.5  # t(0.975, 2)
    assert fid["ci95"] == pytest.approx([43.0 - half, 43.0 + half], rel=1e-12)
    assert fid["wall_time_s"] == pytest.approx(303.0) and doc["wall_time_s"] == pytest.approx(303.0)
    assert sorted(env["environment"]["torch_threads"] for env in fid["environments"]) == [1, 1, 2]
    assert doc["upgraded"] == []
