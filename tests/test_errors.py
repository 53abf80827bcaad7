"""Issue 9: every failure is one `Error:` line, and no run folder is ever stuck or lost.

Each test reproduces a failure that used to print a traceback, leave a folder that neither
`--resume` nor a fresh run would take, or overwrite the user's files.
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import TINY, assert_error_line, builtin_plugins_only, cli, live_process

from harness.configuration.run_config import tomllib
from harness.errors import ConfigError
from harness.run import experiment
from harness.run.preflight import check_splits
from harness.rundir import checkpoints as ckpt
from harness.rundir import contents as runs


@pytest.fixture(scope="module", autouse=True)
def _builtin_plugins_only() -> object:
    with builtin_plugins_only():
        yield


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished rrae run (4 steps, checkpoints at 2 and 4) that tests copy and damage."""
    out = tmp_path_factory.mktemp("finished") / "run"
    res = cli("run", "--model", "rrae", "--set", "model.latent_dim=8", "--out", str(out), *TINY)
    assert res.code == 0, res.err
    return out


RRAE = ["run", "--model", "rrae", "--set", "model.latent_dim=8", *TINY]


def copy_of(finished: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    return run


# ------------------------------------------------------------------------- refused up front
UNINSTALLED = next(t for t in ("wandb", "aim", "clearml", "comet_ml", "mlflow")
                   if not __import__("importlib").util.find_spec(t))


@pytest.mark.parametrize(("model", "sets", "needle"), [
    ("ae", ["train.steps=-3"], "train.steps must not be negative"),
    ("ae", ["train.batch_size=64"], "fewer than one batch"),
    ("ae", ["train.lr=-1"], "train.lr must be a positive learning rate"),
    ("ae", ["train.lr=0"], "train.lr must be a positive learning rate"),
    ("ae", ["train.optimizer=sgd"], "train.optimizer 'sgd' is not known"),
    ("ae", [f"train.trackers={UNINSTALLED}"], f"'{UNINSTALLED}' is not installed"),
    ("ae", ["train.mixed_precision=fp8"], "train.mixed_precision 'fp8' is not known"),
    ("ae", ["train.lr=nan"], "train.lr must be a finite number"),
    ("ae", ["train.lr=inf"], "train.lr must be a finite number"),
    ("ae", ["train.lr=1e400"], "train.lr must be a finite number"),
    ("ae", ["train.weight_decay=nan"], "train.weight_decay must be a finite number"),
    ("ae", ["train.weight_decay=-0.1"], "train.weight_decay must be >= 0"),
    ("ae", ["train.grad_clip=-inf"], "train.grad_clip must be a finite number"),
    ("ae", ["train.grad_clip=0"], "train.grad_clip must be positive"),
    ("vae", ["model.beta=nan"], "model.beta must be a finite number"),
    ("ae", ["model.k=inf"], "model.k must be a finite integer"),
    ("ae", ["train.steps=1e30"], "train.steps='1e30' is out of range"),
    ("ae", ["train.batch_size=0"], "train.batch_size must be at least 1"),
    ("ae", ["train.batch_size=-4"], "train.batch_size must be at least 1"),
    ("rrae", ["train.batch_size=0"], "train.batch_size must be at least 1"),
    ("ae", ["data.n_train=0"], "data.n_train must be at least 1"),
    ("ae", ["data.n_test=0"], "data.n_test must be at least 1"),
    ("ae", ["data.size=0"], "data.size must be at least 1"),
    ("ae", ["data.seed=-1"], "data.seed must be >= 0"),  # found by the fuzz test
])
def test_bad_values_are_refused_before_anything_is_written(model: str, sets: list[str],
                                                           needle: str, tmp_path: Path) -> None:
    out = tmp_path / "never"
    args = [a for s in sets for a in ("--set", s)]
    res = cli("run", "--model", model, "--out", str(out), *TINY, *args)
    assert_error_line(res, 2, needle)
    assert "SVD" not in res.err  # a batch size message is about the batch size
    assert not out.exists()  # nothing written: the same --out takes the corrected command


def test_a_corrected_rerun_takes_the_same_folder(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert_error_line(cli("run", "--model", "ae", "--out", str(out), *TINY,
                          "--set", "train.lr=-1"), 2, "train.lr")
    assert cli("run", "--model", "ae", "--out", str(out), *TINY).code == 0


# --------------------------------------------------------------------- restartable folders
def test_a_run_stopped_before_its_first_checkpoint_starts_over(tmp_path: Path) -> None:
    out = tmp_path / "nan"
    base = ["run", "--model", "vae", "--out", str(out), "--set", "train.optimizer=adam",
            "--set", "train.steps=6", "--set", "train.batch_size=8", "--set", "data.n_train=16",
            "--set", "data.n_test=8", "--set", "train.checkpoint_every=0",
            "--set", 'eval.protocols=["reconstruction"]']
    res = cli(*base, "--set", "train.lr=1e30")
    assert_error_line(res, 1, "no checkpoint had been written yet")
    assert (out / "config.toml").is_file() and not (out / "checkpoints").exists()
    # --resume says what works, and never "pass --resume" back
    res = cli(*base, "--set", "train.lr=1e30", "--resume")
    assert_error_line(res, 2, "nothing to resume", "without --resume")
    assert "pass --resume" not in res.err
    # the same command (here with a sane lr) starts the folder over
    res = cli(*base, "--set", "train.lr=1e-3")
    assert res.code == 0, res.err
    log = (out / "log.jsonl").read_text()
    assert "non_finite_loss" not in log  # the failed attempt's log went with it
    assert tomllib.loads((out / "config.toml").read_text())["train"]["lr"] == 1e-3
    # now it holds a run: a fresh run is refused and points at --resume, which works
    res = cli(*base, "--set", "train.lr=1e-3")
    assert_error_line(res, 2, "already holds a run", "--resume")
    assert cli(*base, "--set", "train.lr=1e-3", "--resume").code == 0


def test_out_into_a_folder_of_other_files_is_refused_and_untouched(tmp_path: Path) -> None:
    folder = tmp_path / "thesis"
    (folder / "chapters").mkdir(parents=True)
    (folder / "thesis.tex").write_text("precious")
    (folder / "chapters" / "one.tex").write_text("also precious")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
              for p in folder.rglob("*")}
    res = cli("run", "--model", "ae", "--out", str(folder), *TINY)
    assert_error_line(res, 2, "is not empty and is not a harness run directory", "thesis.tex")
    after = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
             for p in folder.rglob("*")}
    assert after == before
    assert cli("run", "--model", "ae", "--out", str(folder), *TINY, "--resume").code == 2
    assert {p.name for p in folder.iterdir()} == {"chapters", "thesis.tex"}


def test_an_unwritable_out_is_an_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # (as root every folder is writable: ask os.access, as the check does, to say no)
    real = os.access
    monkeypatch.setattr(runs.os, "access", lambda path, mode: real(path, mode) and not (
        mode & os.W_OK and Path(path) == tmp_path))
    res = cli("run", "--model", "ae", "--out", str(tmp_path / "a" / "run"), *TINY)
    assert_error_line(res, 2, f"cannot be created in '{tmp_path}' (not writable)")
    res = cli("run", "--model", "ae", "--out", str(tmp_path), *TINY)
    assert_error_line(res, 2, "is not writable")
    assert list(tmp_path.iterdir()) == []


def test_out_under_a_file_is_an_error_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    res = cli("run", "--model", "ae", "--out", str(tmp_path / "file" / "run"), *TINY)
    assert_error_line(res, 2, "is a file, not a directory")
    res = cli("run", "--model", "ae", "--out", str(tmp_path / "file"), *TINY)
    assert_error_line(res, 2, "is a file")  # click's own check


# ------------------------------------------------------------------------------- resuming
def test_resume_takes_the_original_command_and_applies_lr_and_steps(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = ["run", "--model", "ae", "--seed", "3", "--out", str(out), *TINY]
    assert cli(*cmd).code == 0
    config_before = (out / "config.toml").read_bytes()
    # the original command with --resume appended is accepted (nothing left to train: it
    # re-evaluates)
    res = cli(*cmd, "--resume")
    assert res.code == 0, res.err
    assert (out / "config.toml").read_bytes() == config_before
    # settings the data order or the weights depend on are refused, naming them
    res = cli(*cmd, "--set", "train.batch_size=4", "--resume")
    assert_error_line(res, 2, "train.batch_size is 8 in the run but 4 on the command line")
    res = cli(*cmd, "--seed", "4", "--resume")
    assert_error_line(res, 2, "run.seed is 3 in the run but 4")
    res = cli(*cmd, "--set", "train.optimizer=adam", "--set", "model.k=3", "--resume")
    assert_error_line(res, 2, "model.k is 2", "train.optimizer is 'adabelief'")
    assert (out / "config.toml").read_bytes() == config_before
    # lr, steps (and grad_clip) may change: applied, and recorded in config.toml
    res = cli(*cmd, "--set", "train.steps=6", "--set", "train.lr=5e-4",
              "--set", "train.grad_clip=1.0", "--resume")
    assert res.code == 0, res.err
    assert "train.lr: 0.001 -> 0.0005" in res.err
    training = metrics(out)["training"]
    assert (training["start_step"], training["steps"]) == (4, 6)
    text = (out / "config.toml").read_text()
    saved = tomllib.loads(text)["train"]
    assert (saved["steps"], saved["lr"], saved["grad_clip"]) == (6, 5e-4, 1.0)
    assert "# changed on --resume: train.lr: 0.001 -> 0.0005" in text
    lrs = {r["step"]: r["lr"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
           if "lr" in r}
    assert [lrs[s] for s in (1, 2, 3, 4, 5, 6)] == [1e-3] * 4 + [5e-4] * 2
    newest = ckpt.latest_checkpoint(out / "checkpoints")
    groups = json.loads((newest / "optimizer.json").read_text())["param_groups"]
    assert newest.name == "step-0000006" and {g["lr"] for g in groups} == {5e-4}


def test_resume_rebuilds_an_unreadable_config_from_the_command_line(finished: Path,
                                                                   tmp_path: Path) -> None:
    run = copy_of(finished, tmp_path)
    (run / "config.toml").write_bytes(b"\xff\xfe\x00\x81 binary")
    assert_error_line(cli("evaluate", str(run)), 2, "config.toml", "not UTF-8")
    assert_error_line(cli("run", "--resume", "--out", str(run)), 2, "not UTF-8",
                      "Repeat the run's original options")
    res = cli(*RRAE, "--out", str(run), "--resume")
    assert res.code == 0, res.err
    assert tomllib.loads((run / "config.toml").read_text())["model"]["latent_dim"] == 8
    assert cli("evaluate", str(run)).code == 0


# ------------------------------------------------------------------------ damaged files
@pytest.mark.parametrize("damage", ["garbage", "truncated", "nan"])
def test_damaged_final_weights_are_named_and_rewritten_by_resume(damage: str, finished: Path,
                                                                 tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    run = copy_of(finished, tmp_path)
    weights = run / "model.safetensors"
    if damage == "garbage":
        weights.write_bytes(b"not a safetensors file")
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:-100])
    else:
        state = load_file(str(weights))
        state[next(iter(state))].view(-1)[0] = float("nan")
        save_file(state, str(weights))
    res = cli("evaluate", str(run))
    assert_error_line(res, 2, str(weights), "--resume")
    res = cli("run", "--resume", "--out", str(run))  # rewrites the weights from the checkpoint
    assert res.code == 0, res.err
    assert cli("evaluate", str(run)).code == 0


def test_a_config_that_no_longer_fits_the_weights_is_named(finished: Path, tmp_path: Path) -> None:
    run = copy_of(finished, tmp_path)
    path = run / "config.toml"
    path.write_text(path.read_text().replace("latent_dim = 8", "latent_dim = 12"))
    res = cli("evaluate", str(run))
    assert_error_line(res, 2, "model_config.json' does not describe the run's model",
                      "settings differ: latent_dim", "[model] section")


def _both_checkpoints(run: Path) -> list[Path]:
    found = ckpt.list_checkpoints(run / "checkpoints")
    assert [p.name for p in found] == ["step-0000002", "step-0000004"]
    return found


@pytest.mark.parametrize("name", [
    "optimizer.json", "model.safetensors", "trainer.json",
    *(pytest.param(n, marks=pytest.mark.slow)
      for n in ("optimizer.safetensors", "rng-rank0.json", "rng-rank0.safetensors", "extra.json")),
])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(name: str, finished: Path,
                                                                  tmp_path: Path) -> None:
    run = copy_of(finished, tmp_path)
    older, newest = _both_checkpoints(run)
    file = newest / name
    file.write_bytes(file.read_bytes()[: max(1, file.stat().st_size // 2)])
    res = cli(*RRAE, "--out", str(run), "--set", "train.steps=6", "--resume")
    assert res.code == 0, res.err
    assert f"skipping checkpoint {newest.name}" in res.err and name in res.err
    assert (metrics(run)["training"]["start_step"], metrics(run)["training"]["steps"]) == (2, 6)


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("step", -5, "negative"), ("step", 99, "past the end"),
    pytest.param("batch_size", 0, "at least 1", marks=pytest.mark.slow),
    pytest.param("step", True, "must be an integer", marks=pytest.mark.slow),
    pytest.param("epoch", 7, "do not follow from step", marks=pytest.mark.slow),
])
def test_checkpoint_metadata_out_of_range_is_refused_naming_the_file(
        field: str, value: object, needle: str, finished: Path, tmp_path: Path) -> None:
    run = copy_of(finished, tmp_path)
    (run / "model.safetensors").unlink()  # as if killed before the end: only checkpoints
    (run / "metrics.json").unlink()
    for path in _both_checkpoints(run):
        doc = json.loads((path / "trainer.json").read_text())
        doc[field] = value
        (path / "trainer.json").write_text(json.dumps(doc))
        (path / ckpt.CHECKSUMS).unlink()  # metadata edited consistently, not bit rot
    with pytest.raises(ckpt.CheckpointError, match=needle):
        ckpt.read_trainer_state(path)
    res = cli(*RRAE, "--out", str(run), "--resume")
    assert_error_line(res, 2, "trainer.json", needle)
    # nothing usable and nothing finished: the same command without --resume starts over
    res = cli(*RRAE, "--out", str(run))
    assert res.code == 0, res.err
    assert metrics(run)["training"]["start_step"] == 0


# --------------------------------------------------------------------------------- lock
def test_a_folder_in_use_is_refused_naming_the_pid_and_a_stale_lock_is_taken_over(
        finished: Path, tmp_path: Path) -> None:
    run = copy_of(finished, tmp_path)
    with live_process() as holder:
        (run / runs.LOCK_FILE).write_text(f"{holder.pid}@{platform.node()}\n")
        res = cli("run", "--resume", "--out", str(run))
        assert_error_line(res, 2, f"in use by PID {holder.pid}")
        assert_error_line(cli("evaluate", str(run)), 2, f"in use by PID {holder.pid}")
        before = (run / "metrics.json").read_bytes()
    assert (run / "metrics.json").read_bytes() == before
    res = cli("run", "--resume", "--out", str(run))  # the holder is dead: the lock is stale
    assert res.code == 0, res.err
    assert not (run / runs.LOCK_FILE).exists()


# -------------------------------------------------------------------------- other inputs
def test_a_binary_config_file_is_an_error_line(tmp_path: Path) -> None:
    bad = tmp_path / "c.toml"
    bad.write_bytes(bytes(range(256)))
    res = cli("run", "--model", "ae", "--config", str(bad), "--out", str(tmp_path / "r"))
    assert_error_line(res, 2, str(bad), "not UTF-8")
    bad.write_text("train = 3\n")
    res = cli("run", "--model", "ae", "--config", str(bad), "--out", str(tmp_path / "r"))
    assert_error_line(res, 2, "[train] must be a table")


@pytest.mark.parametrize("labels", [["a", "b"], [1.5, 2.5], {"x": 1}, [[1], [2]], [True, False],
                                    b"\x01\x02", [None, 1]])
def test_cifar_batches_with_odd_labels_are_refused_naming_the_file(labels: object,
                                                                   tmp_path: Path) -> None:
    from harness_plugins.datasets._common import CorruptDataset
    from harness_plugins.datasets.cifar10 import read_batch

    path = tmp_path / "data_batch_1"
    payload = {b"labels": labels, b"data": np.zeros((2, 3072), dtype=np.uint8)}
    path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CorruptDataset, match="data_batch_1"):
        read_batch(path)


def test_an_empty_split_is_refused_naming_it() -> None:
    class Splits:
        train = list(range(4))
        test: list[int] = []

    with pytest.raises(ConfigError, match="empty test split"):
        check_splits(Splits(), "folders")


def test_unexpected_errors_are_one_line_and_harness_debug_shows_the_traceback(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:

    def boom(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(experiment, "run_experiment", boom)
    res = cli("run", "--model", "ae", "--out", str(tmp_path / "r"))
    assert res.code == 1 and "Traceback" not in res.err
    assert "Error: internal error: ZeroDivisionError: division by zero" in res.err
    monkeypatch.setenv("HARNESS_DEBUG", "1")
    res = cli("run", "--model", "ae", "--out", str(tmp_path / "r"))
    assert res.code == 1 and "Traceback (most recent call last)" in res.err
    assert "Error: internal error" in res.err
    res = cli("run", "--model", "ae", "--set", "train.lr=nan", "--out", str(tmp_path / "r"))
    assert res.code == 2 and "Traceback" in res.err and "Error: train.lr" in res.err
    monkeypatch.delenv("HARNESS_DEBUG")
    assert os.environ.get("HARNESS_DEBUG") is None


@pytest.mark.parametrize(("value", "on"), [
    (None, False), ("", False), ("0", False), ("false", False), ("No", False), (" off ", False),
    ("1", True), ("true", True), ("YES", True), ("on", True), ("2", True)])
def test_every_on_off_variable_is_read_one_way(value: str | None, on: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """HARNESS_DEBUG, HARNESS_STRICT_PLUGINS and the hub's offline flags were read by three
    parsers that disagreed (STRICT_PLUGINS=2 was off, DEBUG=2 on)."""
    from harness.errors import env_flag
    from harness.host.plugins import strict_mode

    for name in ("HARNESS_DEBUG", "HARNESS_STRICT_PLUGINS"):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert env_flag("HARNESS_DEBUG") is on
    assert strict_mode() is on


def test_one_line_quotes_an_exception_with_or_without_its_type() -> None:
    from harness.errors import one_line

    exc = ValueError("a  message\n  on two lines")
    assert one_line(exc) == "ValueError: a message on two lines"
    assert one_line(exc, 12) == "ValueError: "
    assert one_line(exc, with_type=False) == "a message on two lines"
    assert one_line(ValueError()) == "ValueError"
