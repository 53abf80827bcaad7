"""``harness diff``: comparable or not, why in words, most important first; exit 0 / 1 / 2."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from cli_helpers import assert_error_line, cli  # noqa: E402
from results_helpers import write_run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def test_the_same_task_in_another_environment_is_comparable(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", fid=50.0)
    b = write_run(tmp_path / "b", fid=52.0, seed=1, threads=2, torch="2.2.0")
    res = cli("diff", str(a), str(b))
    assert res.code == 0, res.out + res.err
    assert "comparable: 2 task(s) in common" in res.out
    env = next(line for line in res.out.splitlines() if "numerical environment" in line)
    assert "torch 2.14.1 vs 2.2.0" in env and "torch_threads 1 vs 2" in env
    assert env.index("torch 2.14.1") < env.index("torch_threads")  # torch first
    strict = cli("diff", "--strict", str(a), str(b))
    assert strict.code == 1 and "--strict: numerical environment" in strict.out


def test_reasons_come_most_important_first(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a")
    b = write_run(tmp_path / "b", stamp={"n_samples": 10000, "n_images": 10000,
                                         "feature_weights_sha256": "99ff00aa",
                                         "reference_dataset": {"dataset": "fashion-mnist",
                                                               "n": 50000, "fingerprint": "x"}},
                  steps=208)
    res = cli("diff", str(a), str(b))
    assert res.code == 1, res.out + res.err
    lines = res.out.splitlines()
    start = lines.index("not comparable:")
    reasons = lines[start + 1:start + 4]
    assert reasons[0].startswith("  1. extractor weights differ: feature_weights_sha256 "
                                 "3cfa6717 vs 99ff00aa"), reasons
    assert reasons[1].startswith("  2. reference statistics differ: reference_dataset"), reasons
    assert reasons[2].startswith("  3. sample counts differ: n_samples 1250 vs 10000; "
                                 "n_images 1250 vs 10000"), reasons
    assert "(in fashion-mnist/random-generation/fid)" in reasons[0]
    assert "comparable tasks: 1 (fashion-mnist/reconstruction/rec_error_percent)" in res.out
    assert "training configuration of vrrae: train.steps 104 vs 208" in res.out
    doc = json.loads(cli("diff", "--json", str(a), str(b)).out)
    assert doc["comparable"] is False and len(doc["reasons"]) == 3


def test_a_metric_version_bump_is_named_first(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a")
    b = write_run(tmp_path / "b", stamp={"metric_version": 3, "n_samples": 64})
    res = cli("diff", str(a), str(b))
    assert res.code == 1
    assert "  1. task version differs: p1.m2 vs p1.m3" in res.out
    assert "  2. sample counts differ: n_samples 1250 vs 64" in res.out


def test_committed_benchmarks(tmp_path: Path) -> None:
    """Table 1 at two budgets: the same tasks (the budgets differ in training steps only);
    Table 2 against the baselines on Fashion-MNIST: the FID extractor was retrained between
    them (domain-cnn v2 -> v3), so their FIDs are not comparable."""
    same = cli("diff", str(RESULTS / "paper-synthetic-cpu"), str(RESULTS / "paper-synthetic-paper"))
    assert same.code == 0, same.out + same.err
    assert "training configuration of vrrae: train.steps 1000 vs 2000" in same.out
    other = cli("diff", str(RESULTS / "paper-real-fashion-mnist-cpu"),
                str(RESULTS / "baselines-cpu-fashion-mnist"))
    assert other.code == 1
    assert "  1. extractor weights differ: feature_extractor domain-cnn v2 penultimate 128 vs " \
           "domain-cnn v3 penultimate 128" in other.out


def test_bad_input_is_exit_2(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a")
    assert_error_line(cli("diff", str(a), str(tmp_path / "missing")), 2, "does not exist")
    (tmp_path / "empty").mkdir()
    assert_error_line(cli("diff", str(a), str(tmp_path / "empty")), 2, "neither a run folder")
    (tmp_path / "bad.json").write_text("{\"entries\": 3}")
    assert_error_line(cli("diff", str(a), str(tmp_path / "bad.json")), 2,
                      "does not follow the result schema")


def test_nothing_in_common_is_not_comparable(tmp_path: Path) -> None:
    res = cli("diff", str(write_run(tmp_path / "a")), str(RESULTS / "paper-synthetic-paper"))
    assert res.code == 1 and "no task in common" in res.out
