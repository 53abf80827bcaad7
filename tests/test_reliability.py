"""Issue 32: what a red team found still failing open, refused late or left behind.

A resume repeating the original command with a former option name, a Slurm submission that
sbatch refuses, a foreign ``metrics.json`` in a report, a checkpoint's permissions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_helpers import builtin_plugins_only, cli

RUN = ["run", "--model", "ae", "--dataset", "digits", "--set", "train.checkpoint_every=2",
       "--set", "train.batch_size=8", "--set", "data.n_train=32", "--set", "data.n_test=8",
       "--set", 'eval.protocols=["random-generation"]', "--set", 'eval.metrics=["collapse"]']


@pytest.fixture(autouse=True)
def _builtins():  # type: ignore[no-untyped-def]
    with builtin_plugins_only():
        yield


def test_resume_with_the_original_command_using_a_former_option_name(tmp_path: Path) -> None:
    """``eval.random_generation.*`` (a former spelling) on the first command, stored as
    ``eval.random-generation``: repeating the command with --resume was refused as "the same
    options" given twice."""
    out = tmp_path / "run"
    command = [*RUN, "--set", "eval.random_generation.n_samples=12",
               "--set", "eval.random_generation.gmm_components=2", "--out", str(out)]
    res = cli(*command, "--set", "train.steps=2")
    assert res.code == 0, res.err
    res = cli(*command, "--set", "train.steps=4", "--resume")
    assert res.code == 0, res.err
    text = (out / "config.toml").read_text()
    assert "[eval.random-generation]" in text and "n_samples = 12" in text
    # both spellings in one layer are still the same options given twice
    res = cli(*command, "--set", "eval.random-generation.n_samples=8", "--resume")
    assert res.code == 2 and "are the same options" in res.err, res.err


@pytest.mark.parametrize("folder", ["new", "empty"])
def test_a_submission_sbatch_refuses_writes_nothing(folder: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """sbatch refusing the array (here: an invalid partition) used to leave benchmark.json
    and slurm/ behind; the fixed command then ran into a half-made folder."""
    pytest.importorskip("submitit")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "squeue", "scancel", "sinfo"):
        fake = bin_dir / tool
        fake.write_text("#!/bin/sh\necho 'sbatch: error: Batch job submission failed: Invalid "
                        "partition name specified' >&2\nexit 1\n")
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\ndatasets = ["bumps"]\nmodels = ["ae"]\nset = ["train.steps=1"]\n')
    out = tmp_path / "bench"
    if folder == "empty":
        out.mkdir()
    res = cli("benchmark", str(suite), "--out", str(out), "--executor", "slurm",
              "--partition", "nosuch")
    assert res.code == 2 and "Error: sbatch refused the job array" in res.err, res.err
    assert "Invalid partition name" in res.err
    if folder == "new":
        assert not out.exists()
    else:
        assert list(out.iterdir()) == []


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    with builtin_plugins_only():
        res = cli(*RUN, "--set", "train.steps=2", "--set", "eval.random-generation.n_samples=12",
                  "--set", "eval.random-generation.gmm_components=2", "--out", str(out))
    assert res.code == 0, res.err
    return out


def _copy(run: Path, tmp_path: Path, name: str = "copy") -> Path:
    import shutil

    target = tmp_path / name
    shutil.copytree(run, target)
    return target


@pytest.mark.parametrize("foreign", ['{"accuracy": 0.9}', '{"results": []}', "[]"])
def test_report_names_a_folder_whose_metrics_are_foreign(foreign: str, finished: Path,
                                                         tmp_path: Path) -> None:
    """A foreign metrics.json used to be left out of the report without a word."""
    from cli_helpers import assert_error_line

    run = _copy(finished, tmp_path)
    (run / "metrics.json").write_text(foreign)
    res = cli("report", str(finished), str(run))
    assert_error_line(res, 2, f"'{run / 'metrics.json'}' is not a harness metrics document",
                      f"harness evaluate {run}")


@pytest.mark.parametrize("content", [b"garbage", b'{"accuracy": 0.9}'])
def test_the_advice_for_a_damaged_metrics_file_works(content: bytes, finished: Path,
                                                     tmp_path: Path) -> None:
    """The advice ("re-create it with `harness evaluate RUN`") used to fail on the very file
    it was about: evaluate read it first and stopped with the same error."""
    run = _copy(finished, tmp_path)
    (run / "metrics.json").write_bytes(content)
    res = cli("evaluate", str(run))
    assert res.code == 0, res.err
    assert "is damaged or not a harness metrics document: it is replaced" in res.err
    assert (run / "metrics.prev.json").read_bytes() == content
    assert cli("report", str(run)).code == 0
