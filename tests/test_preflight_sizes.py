"""Every value checked once, before any work: bad evaluation options and evaluation sizes no
machine could hold are refused with exit 2 before training, leaving no run folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import TINY, assert_error_line, builtin_plugins_only, cli

from harness.api import EVAL_MEMORY_ENV, EvalSizes
from harness.configuration import run_config as cfgmod
from harness.errors import ConfigError
from harness.run.preflight import eval_memory_bytes
from harness.training.plan import plan_training

AE = ["run", "--model", "ae", "--dataset", "bumps", *TINY]
BOTH = ["--set", 'eval.protocols=["random-generation","interpolation"]',
        "--set", 'eval.metrics=["fid"]']


@pytest.fixture(scope="module", autouse=True)
def _builtin_plugins_only() -> object:
    with builtin_plugins_only():
        yield


@pytest.mark.parametrize("item, needles", [
    ("eval.fid.n_reference=0", ["eval.fid.n_reference", "got 0"]),
    ("eval.random-generation.n_samples=0", ["eval.random-generation.n_samples", "got 0"]),
    ("eval.interpolation.n_interp=-1", ["eval.interpolation.n_interp", "got -1"]),
])
def test_invalid_eval_options_exit_2_before_training(item: str, needles: list[str],
                                                     tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = cli(*AE, *BOTH, "--set", item, "--out", str(out))
    assert_error_line(res, 2, *needles)
    assert not out.exists()  # refused before anything was written, let alone trained


@pytest.mark.parametrize("item, needles", [
    ("eval.interpolation.n_interp=100000000",
     ["eval.interpolation.n_interp=100000000 is too large", "GB", EVAL_MEMORY_ENV]),
    ("eval.random-generation.gmm_components=100000",
     ["eval.random-generation.gmm_components=100000 is too large", "at most 16",
      "16 training codes"]),
    ("eval.random-generation.n_samples=100000000000",
     ["eval.random-generation.n_samples=100000000000 is too large", EVAL_MEMORY_ENV]),
])
def test_evaluation_sizes_are_bounded_before_training(item: str, needles: list[str],
                                                      tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = cli(*AE, *BOTH, "--set", item, "--out", str(out))
    assert_error_line(res, 2, *needles)
    assert not out.exists()


def test_the_memory_limit_is_lifted_deliberately(monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit is half the machine's memory; the environment variable moves it, and the
    message's numbers follow."""
    sizes = EvalSizes(n_train=100, n_test=10, image_shape=(1, 10, 10), memory_bytes=4000)
    sizes.images("eval.x.n", 10, 10, "ten images")  # 10 * 400 bytes: exactly fits
    with pytest.raises(ConfigError, match=r"eval.x.n=11 is too large: eleven: 11 images of "
                                          r"1x10x10 need 4.4e-06 GB"):
        sizes.images("eval.x.n", 11, 11, "eleven")
    monkeypatch.setenv(EVAL_MEMORY_ENV, "2.5")
    assert eval_memory_bytes() == 2_500_000_000
    monkeypatch.setenv(EVAL_MEMORY_ENV, "-1")
    with pytest.raises(ConfigError, match=EVAL_MEMORY_ENV):
        eval_memory_bytes()
    monkeypatch.delenv(EVAL_MEMORY_ENV)
    import os

    half = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    assert eval_memory_bytes() == half


def test_sections_check_their_values_when_built() -> None:
    """Each section refuses a bad value at construction, from Python as from the CLI."""
    from harness.api import DataConfig
    from harness.configuration.run_config import EvalConfig, TrainConfig

    with pytest.raises(ConfigError, match="train.optimizer 'sgd'"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match="train.mixed_precision 'fp8'"):
        TrainConfig(mixed_precision="fp8")
    with pytest.raises(ConfigError, match="train.log_every must be >= 0"):
        TrainConfig(log_every=-1)
    with pytest.raises(ConfigError, match="eval.batch_size"):
        EvalConfig(batch_size=0)
    with pytest.raises(ConfigError, match="data.validation must be a fraction"):
        DataConfig(validation=1.0)
    with pytest.raises(ConfigError, match="data.n_train must be at least 1"):
        DataConfig(n_train=0)


def test_a_plugin_config_that_refuses_a_value_is_named() -> None:
    from dataclasses import dataclass

    @dataclass
    class Picky:
        n: int = 1

        def __post_init__(self) -> None:
            if self.n > 3:
                raise ValueError("n must be at most 3")

    with pytest.raises(ConfigError, match=r"\[eval.picky\] \(checked by plugin 'p'\): n must"):
        cfgmod.build_dataclass(Picky, {"n": "4"}, "eval.picky", owner="plugin 'p'")


def test_preflight_plan_is_what_training_follows(tmp_path: Path) -> None:
    """The plan preflight makes (steps, batches per epoch, per-process batch) is the one the
    run records: 3 epochs of 16 images in batches of 8 are 6 steps."""
    import json

    out = tmp_path / "run"
    res = cli("run", "--model", "ae", "--dataset", "bumps", "--set", "train.epochs=3",
              "--set", "train.batch_size=8", "--set", "data.n_train=16", "--set",
              "data.n_test=8", "--set", 'eval.protocols=["reconstruction"]', "--out", str(out))
    assert res.code == 0, res.err
    training = json.loads((out / "metrics.json").read_text())["training"]
    assert (training["total_steps"], training["steps"], training["epochs"]) == (6, 6, 3.0)
    plan = plan_training(cfgmod.TrainConfig(epochs=3, batch_size=8), 16, 2, object())
    assert (plan.total_steps, plan.batches_per_epoch, plan.per_process_batch) == (6, 2, 4)


def test_resume_rebuilds_the_saved_config_once_keeping_its_preset(tmp_path: Path) -> None:
    """A saved config holds its preset's values: a resume rebuilds it as it is (the preset
    name kept, no preset layer below it), and a changed lr is the one change listed."""
    from harness.host.plugins import get_host
    from harness.run.resume import resume_config
    from harness.rundir import contents as runs

    host = get_host()
    config = cfgmod.resolve(model="vrrae", dataset="bumps", sets=["train.steps=7"], host=host)
    assert config.preset and config.preset != cfgmod.NO_PRESET
    runs.write_config(tmp_path, config)
    plan = resume_config(tmp_path, host=host)
    assert plan.config == config and plan.config.preset == config.preset
    plan = resume_config(tmp_path, sets=["train.lr=5e-4"], host=host)
    assert [str(c) for c in plan.changes] == [f"train.lr: {config.train.lr!r} -> 0.0005"]
    assert plan.config.preset == config.preset and plan.config.train.steps == 7
