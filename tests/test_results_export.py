"""``harness export``: a folder that ``datasets`` reads back offline, with a dataset card
naming the task versions, the plain JSON that ``diff`` and ``leaderboard`` read, and a thin
``--push-to-hub``."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from cli_helpers import assert_error_line, cli  # noqa: E402
from results_helpers import write_run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TABLE1 = REPO / "benchmarks" / "results" / "paper-synthetic-paper"


def test_export_loads_back_with_datasets_offline(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    import datasets

    run = write_run(tmp_path / "run", fid=41.5, seed=2)
    out = tmp_path / "export"
    res = cli("export", str(TABLE1), str(run), "--out", str(out), "--lab", "lab A")
    assert res.code == 0, res.err
    assert "exported 30 results of 2 source(s)" in res.out
    table = datasets.load_dataset("parquet", data_files=str(out / "data" / "results.parquet"),
                                  split="train")
    assert table.num_rows == 30 and set(table.unique("lab")) == {"lab A"}
    vrrae = [r for r in table if r["model"] == "vrrae"
             and r["task_name"] == "bumps/reconstruction/rec_error_percent"]
    assert len(vrrae) == 1 and vrrae[0]["n"] == 5 and round(vrrae[0]["mean"], 2) == 5.34
    assert vrrae[0]["ci95_low"] < vrrae[0]["mean"] < vrrae[0]["ci95_high"]
    assert vrrae[0]["machine"].startswith("AMD EPYC (2 cores)")
    fid = next(r for r in table if r["task_name"] == "fashion-mnist/random-generation/fid")
    assert fid["values"] == [41.5] and fid["seeds"] == [2] and fid["task_version"] == "p1.m2"
    assert json.loads(fid["configuration"])["train.steps"] == 104
    # the card's configs let the folder itself load as a dataset
    assert datasets.load_dataset(str(out), split="train").num_rows == 30
    text = (out / "README.md").read_text()
    assert "| fashion-mnist/random-generation/fid | p1.m2 |" in text
    assert "| bumps/reconstruction/rec_error_percent | p1 |" in text
    bundle = json.loads((out / "results.json").read_text())
    assert [d["kind"] for d in bundle["results"]] == ["benchmark", "run"]


def test_an_export_is_read_back_by_diff(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    assert cli("export", str(run), "--out", str(tmp_path / "e")).code == 0
    res = cli("diff", str(run), str(tmp_path / "e"))
    assert res.code == 0 and "comparable: 2 task(s)" in res.out, res.out


def test_out_must_be_new_or_empty(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert_error_line(cli("export", str(run), "--out", str(out)), 2, "not an empty folder")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert_error_line(cli("export", str(tmp_path / "nope"), "--out", str(tmp_path / "o")), 2,
                      "does not exist")
    assert not (tmp_path / "o").exists()


def test_push_to_hub_is_one_create_and_one_upload(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, tuple, dict]] = []

    class FakeApi:
        def create_repo(self, *args, **kwargs):
            calls.append(("create_repo", args, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", (), kwargs))
            assert (Path(kwargs["folder_path"]) / "data" / "results.parquet").is_file()
            return types.SimpleNamespace(commit_url="https://hub/commit/1")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(HfApi=FakeApi))
    res = cli("export", str(write_run(tmp_path / "run")), "--out", str(tmp_path / "e"),
              "--push-to-hub", "lab/vrrae-results")
    assert res.code == 0, res.err
    assert "uploaded: https://hub/commit/1" in res.out
    assert calls[0] == ("create_repo", ("lab/vrrae-results",),
                        {"repo_type": "dataset", "private": False, "exist_ok": True})
    assert calls[1][2]["repo_id"] == "lab/vrrae-results"
    assert calls[1][2]["repo_type"] == "dataset"


def test_push_without_huggingface_hub_is_refused_before_writing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    res = cli("export", str(write_run(tmp_path / "run")), "--out", str(tmp_path / "e"),
              "--push-to-hub", "lab/x")
    assert_error_line(res, 2, "pip install huggingface_hub", "nothing was written")
    assert not (tmp_path / "e").exists()


def test_push_offline_fails_clearly_and_keeps_the_export(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    res = cli("export", str(write_run(tmp_path / "run")), "--out", str(tmp_path / "e"),
              "--push-to-hub", "lab/x")
    assert_error_line(res, 1, "could not upload", "lab/x", "the export is written")
    assert (tmp_path / "e" / "data" / "results.parquet").is_file()


def test_an_out_that_cannot_be_a_folder_is_refused_before_reading(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    run = str(write_run(tmp_path / "run"))
    assert_error_line(cli("export", run, "--out", str(tmp_path / "afile" / "sub")), 2,
                      "afile' is a file, not a directory")
    assert_error_line(cli("leaderboard", run, "--out", str(tmp_path / "afile")), 2,
                      "is a file, not a directory")
