"""Fuzzing the command line (hypothesis): random ``--set`` keys and values, random config
files, random damage to every file of a finished run.

The property, every time: the exit status is 0, 1 or 2; stderr holds no traceback and no
"internal error" (the CLI's net for an exception nobody turned into a message); the folder
is afterwards resumable or restartable (never stuck) and no result file that existed before
was lost.

The default run tries a few derandomised examples; ``-m slow`` runs the bigger, random
profile. ``eval.*`` keys are left out: the eval section is being redesigned separately.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import TINY, builtin_plugins_only, cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.api import DataConfig
from harness.configuration.run_config import TrainConfig
from harness.rundir import contents as runs

FAST = settings(max_examples=8, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
BIG = settings(max_examples=120, deadline=None, database=None,
               suppress_health_check=list(HealthCheck))

MODELS = ["ae", "vae", "rrae", "vrrae"]
BASE = [*TINY, "--set", "train.steps=2"]


@pytest.fixture(scope="module", autouse=True)
def _builtin_plugins_only() -> Any:
    with builtin_plugins_only():
        yield


def _model_keys() -> list[str]:
    from harness_plugins.autoencoders.models import VRRAEConfig

    return [f"model.{f.name}" for f in dataclasses.fields(VRRAEConfig)]


KEYS = ([f"train.{f.name}" for f in dataclasses.fields(TrainConfig)]
        + [f"data.{f.name}" for f in dataclasses.fields(DataConfig)] + _model_keys())
JUNK_KEYS = ["train.batchsize", "foo.bar", "train.", ".lr", "model.", "train.lr.x", "run.seed",
             "eval", "", "=", "train.lr =1", "tráin.lr", "data.☃", "model.k\x00"]
SPECIAL = ["nan", "NaN", "inf", "-inf", "+inf", "1e400", "-1e400", "1e20", "-1e20",
           "99999999999999999999999", "0", "-0", "-1", "1", "2", "0.5", "-0.5", "1e-3", "1e3",
           "true", "false", "none", "null", "", " ", "abc", "☃", "名字", "\u202e", "\x00", "[",
           "[]", "[1,2]", "[0]", "[-1]", '["a"]', "[1e400]", "[[1]]", "{}", "conv", "mlp", "auto",
           "gram", "svd", "adam", "adamw", "adabelief", "sgd", "bf16", "fp16", "no",
           "tensorboard", "wandb", "1_000", "0x10", "4.0", "4.5", "١٢"]
#: keys whose value may be any size: a huge lr or beta fails fast (a non-finite loss)
ANY_SIZE = {"train.lr", "train.weight_decay", "train.grad_clip", "model.beta", "data.seed"}
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _tame(key: str, value: str) -> str:
    """Sizes and counts between 64 and 2**53 would only make an example slow (a long run, a
    huge layer), not wrong: they become 1e30, which the config refuses like any huge value."""
    if key in ANY_SIZE:
        return value
    for match in _NUMBER.findall(value):
        try:
            number = float(match)
        except ValueError:
            continue
        if math.isfinite(number) and 64 < abs(number) <= 2**53:
            return "1e30"
    if key == "train.num_workers" and value.strip() not in {"0", "-1", "-0"}:
        return "0"  # worker processes would only make it slow
    return value


values = st.one_of(st.sampled_from(SPECIAL), st.integers(-3, 8).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.text(max_size=6))
sets = st.lists(st.tuples(st.one_of(st.sampled_from(KEYS), st.sampled_from(JUNK_KEYS)), values),
                max_size=4)


def check_outcome(res: Any) -> None:
    assert res.code in (0, 1, 2), (res.code, res.err[-2000:])
    assert "Traceback" not in res.err, res.err[-3000:]
    assert "internal error" not in res.err, res.err[-3000:]
    if res.code:
        assert "Error: " in res.err, res.err[-2000:]


def check_not_stuck(out: Path) -> None:
    """A fresh run is accepted (nothing there, or nothing to lose), or there is a checkpoint
    to resume from, or finished results; never a folder both commands refuse."""
    assert not (out / runs.LOCK_FILE).exists()
    if not out.exists():
        return
    state = runs.inspect_run_dir(out)
    assert state.empty or state.restartable or state.checkpoint is not None or state.results, state


def _fresh_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="harness-fuzz-")) / "run"


def _set_fuzz(model: str, pairs: list[tuple[str, str]], seed: int | None, follow_up: bool) -> None:
    out = _fresh_dir()
    try:
        args = [a for key, value in pairs for a in ("--set", f"{key}={_tame(key, value)}")]
        extra = ["--seed", str(seed)] if seed is not None else []
        res = cli("run", "--model", model, "--out", str(out), *BASE, *args, *extra)
        check_outcome(res)
        check_not_stuck(out)
        if follow_up and res.code != 0:
            # the plain command then works in the same folder: restart, or resume
            state = runs.inspect_run_dir(out)
            again = ["run", "--model", model, "--out", str(out), *BASE]
            if state.exists and not state.restartable and not state.empty:
                again.append("--resume")
            res2 = cli(*again)
            if "--resume" in again and res2.code != 0:
                # the failed run's own settings are in config.toml: resume needs those
                res2 = cli("run", "--out", str(out), "--resume")
            assert res2.code == 0, res2.err[-2000:]
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


seeds = st.one_of(st.none(), st.integers(-(2**70), 2**70), st.integers(-3, 3))


@settings(FAST, max_examples=6)
@given(model=st.sampled_from(MODELS), pairs=sets, seed=seeds)
def test_random_set_options(model: str, pairs: list[tuple[str, str]], seed: int | None) -> None:
    _set_fuzz(model, pairs, seed, follow_up=False)


@pytest.mark.slow
@BIG
@given(model=st.sampled_from(MODELS), pairs=sets, seed=seeds)
def test_random_set_options_big(model: str, pairs: list[tuple[str, str]], seed: int | None) -> None:
    _set_fuzz(model, pairs, seed, follow_up=True)


# --------------------------------------------------------------------------- config files
toml_scalars = st.one_of(
    st.integers(-3, 8), st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.5, -1.5,
                                         1e-3, 1e300, 2.0]),
    st.text(max_size=6), st.booleans(), st.lists(st.integers(-2, 8), max_size=3),
)
toml_values = st.one_of(toml_scalars, st.dictionaries(st.text(max_size=4), toml_scalars, max_size=2))
sections = st.sampled_from(["run", "model", "data", "train", "junk"])
section_keys = st.one_of(st.sampled_from([k.split(".", 1)[1] for k in KEYS]),
                         st.sampled_from(["model", "dataset", "seed"]), st.text(max_size=5))
documents = st.dictionaries(sections, st.dictionaries(section_keys, toml_values, max_size=4),
                            max_size=4)


def _config_fuzz(doc: dict[str, Any] | None, raw: bytes | None, with_model: bool) -> None:
    import tomli_w

    out = _fresh_dir()
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / "config.toml"
    try:
        if raw is not None:
            path.write_bytes(raw)
        else:  # ints are small and floats few: nothing here makes a long run
            path.write_text(tomli_w.dumps(doc or {}))
        model = ["--model", "ae"] if with_model else []
        res = cli("run", *model, "--config", str(path), "--out", str(out), *BASE)
        check_outcome(res)
        check_not_stuck(out)
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


@FAST
@given(doc=documents, with_model=st.booleans())
def test_random_config_files(doc: dict[str, Any], with_model: bool) -> None:
    _config_fuzz(doc, None, with_model)


@FAST
@given(raw=st.binary(max_size=64), with_model=st.booleans())
def test_random_config_bytes(raw: bytes, with_model: bool) -> None:
    _config_fuzz(None, raw, with_model)


@pytest.mark.slow
@BIG
@given(doc=documents, raw=st.one_of(st.none(), st.binary(max_size=200)), with_model=st.booleans())
def test_random_config_files_big(doc: dict[str, Any], raw: bytes | None, with_model: bool) -> None:
    _config_fuzz(doc, raw, with_model)


# ------------------------------------------------------------------- damaged run folders
AE = ["run", "--model", "ae", *TINY]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fuzz-finished") / "run"
    res = cli(*AE, "--out", str(out))
    assert res.code == 0, res.err
    return out


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


DAMAGE = ["truncate", "flip", "garbage", "empty", "delete", "json-list", "directory"]


def _damage(file: Path, how: str, data: st.DataObject) -> None:
    content = file.read_bytes()
    if how == "truncate":
        file.write_bytes(content[: data.draw(st.integers(0, max(0, len(content) - 1)))])
    elif how == "flip" and content:
        i = data.draw(st.integers(0, len(content) - 1))
        file.write_bytes(content[:i] + bytes([content[i] ^ data.draw(st.integers(1, 255))])
                         + content[i + 1:])
    elif how == "garbage":
        file.write_bytes(data.draw(st.binary(min_size=1, max_size=300)))
    elif how == "empty":
        file.write_bytes(b"")
    elif how == "delete":
        file.unlink()
    elif how == "json-list":
        file.write_text("[1, 2, 3]")
    elif how == "directory":
        file.unlink()
        file.mkdir()


def _damage_fuzz(finished: Path, data: st.DataObject) -> None:
    out = _fresh_dir()
    shutil.copytree(finished, out)
    try:
        name = data.draw(st.sampled_from(_files(out)), label="file")
        how = data.draw(st.sampled_from(DAMAGE), label="damage")
        _damage(out / name, how, data)
        results_before = {f for f in runs.RESULT_FILES if (out / f).is_file() and f != name}
        outcomes = []
        for command in (["evaluate", str(out)], [*AE, "--out", str(out), "--resume"],
                        [*AE, "--out", str(out)]):
            res = cli(*command)
            check_outcome(res)
            outcomes.append(res)
        # never stuck: something works, or the refusal names the damaged file
        errors = " ".join(r.err for r in outcomes)
        assert any(r.code == 0 for r in outcomes) or Path(name).name in errors, errors[-3000:]
        for result in results_before:  # nothing that was there is lost
            assert (out / result).is_file(), result
        if (out / runs.METRICS_FILE).is_file() and runs.METRICS_FILE in results_before:
            assert isinstance(json.loads((out / runs.METRICS_FILE).read_text()), dict)
        check_not_stuck(out)
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


@settings(FAST, max_examples=4)
@given(data=st.data())
def test_damaged_run_folders(finished: Path, data: st.DataObject) -> None:
    _damage_fuzz(finished, data)


@pytest.mark.slow
@settings(max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_damaged_run_folders_big(finished: Path, data: st.DataObject) -> None:
    _damage_fuzz(finished, data)
