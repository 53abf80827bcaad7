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
