"""Run configuration: types, unknown keys, --set parsing, TOML round trips."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from harness.configuration import run_config as cfg
from harness.errors import ConfigError, HarnessError


@dataclass
class ToyModelConfig:
    k: int = 2
    latent_dim: int = 200
    beta: float = 1e-3
    arch: str = "conv"


def test_set_values_are_typed_against_the_sections() -> None:
    rc = cfg.resolve(model="toy", dataset="bumps", model_config_cls=ToyModelConfig,
                     sets=["train.lr=1e-4", "train.steps=12", "model.k=8", "model.beta=0",
                           "eval.metrics=[\"fid\", \"gaussian-fit\"]", "data.cache=false",
                           "train.grad_clip=none"])
    assert rc.train.lr == pytest.approx(1e-4)
    assert rc.train.steps == 12 and isinstance(rc.train.steps, int)
    assert rc.model_cfg == ToyModelConfig(k=8, latent_dim=200, beta=0.0, arch="conv")
    assert rc.eval.metrics == ["fid", "gaussian-fit"]
    assert rc.data.cache is False
    assert rc.train.grad_clip is None


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("train.lrate=1", "unknown key 'train.lrate'; valid keys in [train]: steps, epochs"),
        ("model.kk=3", "unknown key 'model.kk'; valid keys in [model]: k, latent_dim, beta, arch"),
        ("train.steps=abc", "train.steps must be an integer"),
        ("train.steps=1.5", "train.steps must be an integer"),
        ("data.cache=maybe", "data.cache must be true or false"),
        ("trian.lr=1", "unknown section 'trian'"),
        ("lr=1", "--set expects section.key=value"),
    ],
)
def test_bad_keys_and_values_name_the_key(item: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        cfg.resolve(model="toy", dataset="bumps", sets=[item], model_config_cls=ToyModelConfig)
    assert needle in str(err.value)


def test_toml_round_trip_reproduces_the_config(tmp_path) -> None:
    rc = cfg.resolve(model="toy", dataset="digits", seed=3, model_config_cls=ToyModelConfig,
                     sets=["train.steps=7", "model.k=4",
                           "eval.random-generation.n_samples=100"])
    path = tmp_path / "config.toml"
    path.write_text(rc.to_toml())
    again = cfg.resolve(model=None, dataset=None, config_file=path, model_config_cls=ToyModelConfig)
    assert again == rc
    assert cfg.from_dict(cfg.load_toml(path), model_config_cls=ToyModelConfig) == rc
    assert rc.eval.options("random-generation").n_samples == 100


def test_a_config_for_another_model_is_refused(tmp_path) -> None:
    rc = cfg.resolve(model="vrrae", dataset="bumps")
    path = tmp_path / "config.toml"
    path.write_text(rc.to_toml())
    with pytest.raises(ConfigError, match="is for model 'vrrae', not 'ae'"):
        cfg.resolve(model="ae", dataset=None, config_file=path)


def test_unknown_section_in_file_and_missing_file(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[training]\nsteps = 3\n")
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['training'\]"):
        cfg.load_toml(path)
    with pytest.raises(ConfigError, match="does not exist"):
        cfg.load_toml(tmp_path / "nope.toml")
    path.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        cfg.load_toml(path)


def test_eval_options_belong_to_their_component() -> None:
    rc = cfg.resolve(model="vrrae", dataset="bumps",
                     sets=["eval.interpolation.n_pairs=7", "eval.protocols=[\"interpolation\"]"])
    assert rc.eval.protocols == ["interpolation"]
    assert rc.eval.options("interpolation").n_pairs == 7
    # the resolved config lists every option of every selected component
    saved = rc.as_dict()["eval"]
    assert saved["interpolation"] == {"n_pairs": 7, "n_interp": 5, "reference": "train"}
    assert "random-generation" not in saved


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("eval.n_samples=5", "eval.n_samples is now eval.random-generation.n_samples"),
        ("eval.n_pairs=5", "eval.n_pairs is now eval.interpolation.n_pairs"),
        ("eval.interpolation.n_pair=5",
         "unknown key 'eval.interpolation.n_pair'; valid keys in [eval.interpolation]: "
         "n_pairs, n_interp"),
        ("eval.interpolation.n_pairs=0", "eval.interpolation.n_pairs must be a positive integer"),
        ("eval.random-generation.gmm_components=0",
         "eval.random-generation.gmm_components must be a positive integer"),
        ("eval.batch_size=0", "eval.batch_size must be a positive integer"),
        ("eval.protocols=[\"interpolaton\"]", "did you mean 'interpolation'"),
        ("eval.nosuch.x=1", "eval.nosuch: no selected protocol or metric is called 'nosuch'"),
    ],
)
def test_bad_eval_options_name_the_new_spelling(item: str, needle: str) -> None:
    with pytest.raises(HarnessError) as err:
        cfg.resolve(model="vrrae", dataset="bumps", sets=[item])
    assert needle in str(err.value)


def test_the_default_dataset_comes_from_a_plugin() -> None:
    from harness.host.plugins import Host

    assert cfg.resolve(model="vrrae", dataset=None).dataset == "bumps"
    empty = Host()  # no plugin declares a default dataset
    with pytest.raises(ConfigError, match="no installed plugin declares a default dataset: "
                                          "pass --dataset NAME"):
        cfg.resolve(model="toy", dataset=None, model_config_cls=ToyModelConfig, host=empty)


def test_default_train_steps_is_written_to_the_run_config(tmp_path) -> None:
    """Issue 9, item 8: config.toml holds every resolved value, the default step count too."""
    from harness.configuration.run_config import TrainConfig, from_dict, load_toml, resolve
    from harness.rundir import contents as runs

    rc = resolve(model="ae", dataset="bumps", sets=[])
    assert rc.train.steps == TrainConfig.DEFAULT_STEPS
    runs.write_config(tmp_path, rc)
    saved = load_toml(tmp_path / runs.CONFIG_FILE)
    assert saved["train"]["steps"] == TrainConfig.DEFAULT_STEPS
    assert from_dict(saved).train == rc.train
    # epochs resolve to steps only at training time (they depend on the data): kept as given
    by_epochs = resolve(model="ae", dataset="bumps", sets=["train.epochs=3"])
    assert (by_epochs.train.steps, by_epochs.train.epochs) == (None, 3)
    assert by_epochs.as_dict()["train"]["epochs"] == 3 and "steps" not in by_epochs.as_dict()["train"]


def test_the_last_training_length_given_wins(tmp_path) -> None:
    """steps and epochs are one choice: a benchmark budget's train.steps followed by a user's
    train.epochs trains for the epochs (steps used to win silently), and a --set of either
    replaces the other from a config file."""
    from harness.configuration.run_config import resolve

    later_epochs = resolve(model="ae", dataset="bumps", sets=["train.steps=500", "train.epochs=1"])
    assert (later_epochs.train.steps, later_epochs.train.epochs) == (None, 1)
    later_steps = resolve(model="ae", dataset="bumps", sets=["train.epochs=1", "train.steps=7"])
    assert (later_steps.train.steps, later_steps.train.epochs) == (7, None)
    config_file = tmp_path / "run.toml"
    config_file.write_text("[train]\nsteps = 500\n")
    over_file = resolve(model="ae", dataset="bumps", config_file=config_file,
                        sets=["train.epochs=2"])
    assert (over_file.train.steps, over_file.train.epochs) == (None, 2)
