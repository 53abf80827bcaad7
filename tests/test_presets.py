"""Presets: the paper's configuration per dataset, declared by the model plugin, applied as the
lowest configuration layer and recorded in config.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.configuration import run_config as cfgmod
from harness.configuration.run_config import tomllib  # tomli on Python 3.10


@pytest.mark.parametrize(("model", "dataset", "expected"), [
    ("vrrae", "fashion-mnist", {"k": 16, "latent_dim": 100, "batch_size": 576, "lr": 1e-3,
                                "epochs": 20, "preset": "autoencoders:mnist-like"}),
    ("rrae", "mnist", {"k": 16, "latent_dim": 100, "batch_size": 576, "epochs": 20}),
    ("vrrae", "cifar10", {"k": 60, "latent_dim": 512, "batch_size": 64, "lr": 1e-4, "epochs": 5,
                          "preset": "autoencoders:cifar10"}),
    ("rrae-vae", "celeba", {"k": 186, "latent_dim": 512, "batch_size": 576, "epochs": 8}),
    ("vrrae", "bumps", {"k": 2, "latent_dim": 200, "batch_size": 64, "steps": 1000,
                        "preset": "autoencoders:synthetic"}),
])
def test_known_datasets_get_the_papers_configuration(model: str, dataset: str,
                                                     expected: dict) -> None:
    c = cfgmod.resolve(model=model, dataset=dataset)
    got = {"k": c.model_cfg.k, "latent_dim": getattr(c.model_cfg, "latent_dim", None),
           "batch_size": c.train.batch_size, "lr": c.train.lr, "epochs": c.train.epochs,
           "steps": c.train.steps, "preset": c.preset}
    for key, value in expected.items():
        assert got[key] == value, key


def test_ae_and_vae_get_k_only_and_unknown_datasets_no_preset() -> None:
    c = cfgmod.resolve(model="vae", dataset="cifar10")
    assert c.model_cfg.k == 60 and not hasattr(c.model_cfg, "latent_dim")
    assert c.model_cfg.beta == 1e-3  # beta is chosen by a sweep, not by the preset
    c = cfgmod.resolve(model="vrrae", dataset="digits")
    assert c.preset is None and c.model_cfg.k == 2 and c.train.batch_size == 64


def test_set_and_config_override_the_preset(tmp_path: Path) -> None:
    c = cfgmod.resolve(model="vrrae", dataset="fashion-mnist",
                       sets=["model.k=8", "train.steps=30"])
    assert c.model_cfg.k == 8 and c.model_cfg.latent_dim == 100
    # steps given by the user drop the preset's epochs (steps would win anyway: no surprise)
    assert c.train.steps == 30 and c.train.epochs is None
    c = cfgmod.resolve(model="vrrae", dataset="bumps", sets=["train.epochs=3"])
    assert c.train.epochs == 3 and c.train.steps is None
    path = tmp_path / "c.toml"
    path.write_text('[run]\npreset = "none"\n[train]\nbatch_size = 32\n')
    c = cfgmod.resolve(model="vrrae", dataset="fashion-mnist", config_file=path)
    assert c.preset == "none" and c.model_cfg.k == 2 and c.train.batch_size == 32
    path.write_text('[train]\nbatch_size = 32\n')
    c = cfgmod.resolve(model="vrrae", dataset="fashion-mnist", config_file=path)
    assert c.preset == "autoencoders:mnist-like" and c.model_cfg.k == 16
    assert c.train.batch_size == 32 and c.train.epochs == 20


def test_run_records_and_prints_the_preset(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    main(["run", "--model", "ae", "--dataset", "bumps", "--out", str(out), "--set",
          "train.steps=2", "--set", "model.k=2", "--no-eval"])
    saved = tomllib.loads((out / "config.toml").read_text())
    assert saved["run"]["preset"] == "autoencoders:synthetic"
    assert saved["train"]["steps"] == 2 and saved["train"]["batch_size"] == 64
    assert "preset: autoencoders:synthetic" in capsys.readouterr().out


def test_resume_with_changed_steps_keeps_every_recorded_field(tmp_path: Path) -> None:
    """``--resume --set train.steps=N`` rewrites config.toml: only train.steps may differ,
    ``run.preset`` included (the rewrite goes through the same plan and writer as a run)."""
    from harness.run.resume import resume_config
    from harness.rundir import contents as runs

    config = cfgmod.resolve(model="vrrae", dataset="bumps", sets=["train.steps=5"])
    assert config.preset == "autoencoders:synthetic"
    runs.write_config(tmp_path, config)
    before = tomllib.loads((tmp_path / runs.CONFIG_FILE).read_text())
    plan = resume_config(tmp_path, sets=["train.steps=9"])
    assert [str(c.key) for c in plan.changes] == ["train.steps"]
    runs.write_config(tmp_path, plan.config, plan.notes)
    after = tomllib.loads((tmp_path / runs.CONFIG_FILE).read_text())
    assert after["train"].pop("steps") == 9 and before["train"].pop("steps") == 5
    assert after == before
    assert after["run"]["preset"] == "autoencoders:synthetic"
    assert resume_config(tmp_path).config.preset == "autoencoders:synthetic"
