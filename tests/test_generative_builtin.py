"""The built-in generative plugin: dcgan and ddpm at every dataset's shape, registered like
the other built-ins, each run on digits scored by FID, KID and precision/recall with the
protocols needing an encoder listed as not applicable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from harness_plugins.generative.dcgan import DCGAN, DCGANConfig
from harness_plugins.generative.ddpm import DDPM, DDPMConfig

from harness import api
from tests.cli_helpers import builtin_plugins_only, cli

SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28),
          "cifar10": (3, 32, 32), "celeba": (3, 64, 64), "celeba-160": (3, 160, 160)}


@pytest.mark.parametrize("dataset", list(SHAPES))
def test_both_models_sample_and_train_at_every_dataset_shape(dataset: str) -> None:
    info = api.DatasetInfo(dataset, SHAPES[dataset])
    torch.manual_seed(0)
    for model in (DCGAN(DCGANConfig(z_dim=8, channels=16), info),
                  DDPM(DDPMConfig(channels=8, timesteps=20, sample_steps=3), info)):
        api.check_model_class(type(model), "built-in")
        assert api.model_capabilities(model) == {"sample"}
        images = model.sample(3, torch.Generator().manual_seed(1))
        assert images.shape == (3, *SHAPES[dataset])
        assert float(images.min()) >= 0 and float(images.max()) <= 1
        again = model.sample(3, torch.Generator().manual_seed(1))
        assert torch.equal(images, again)  # the generator decides the samples


def test_the_dcgan_discriminator_sees_real_against_generated() -> None:
    info = api.DatasetInfo("digits", (1, 8, 8))
    model = DCGAN(DCGANConfig(z_dim=8, channels=16), info)
    opts = model.configure_optimizers(type("T", (), {"lr": 2e-4})())
    assert set(opts) == {"discriminator", "generator"}
    d = {id(p) for g in opts["discriminator"].param_groups for p in g["params"]}
    g = {id(p) for g in opts["generator"].param_groups for p in g["params"]}
    assert not d & g and d | g == {id(p) for p in model.parameters()}
    assert opts["generator"].defaults["betas"] == (0.5, 0.999)


def test_ddpm_ema_follows_the_live_weights_by_its_decay() -> None:
    info = api.DatasetInfo("digits", (1, 8, 8))
    torch.manual_seed(0)
    model = DDPM(DDPMConfig(channels=8, timesteps=20, sample_steps=5, ema_decay=0.9), info)
    before = [p.detach().clone() for p in model.ema.parameters()]
    opt = model.configure_optimizers(type("T", (), {"lr": 1e-2})())["denoiser"]

    def update(name: str, loss: torch.Tensor) -> None:
        loss.backward()
        opt.step()
        opt.zero_grad()

    out = model.training_step(torch.rand(4, 1, 8, 8), api.StepContext(step=0, seed=0), update)
    assert set(out) == {"mse"} and float(out["mse"]) > 0
    for ema, old, live in zip(model.ema.parameters(), before, model.denoiser.parameters(),
                              strict=True):
        torch.testing.assert_close(ema, 0.9 * old + 0.1 * live.detach())
    assert not any(p.requires_grad for p in model.ema.parameters())


def test_ddpm_sample_steps_is_checked() -> None:
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="model.sample_steps=30 must be at most"):
        DDPMConfig(timesteps=20, sample_steps=30)


def test_registered_like_the_other_builtins() -> None:
    with builtin_plugins_only():
        res = cli("models", "--json")
    assert res.code == 0, res.err
    rows = {r["name"]: r for r in json.loads(res.out)}
    assert rows["dcgan"]["plugin"] == rows["ddpm"]["plugin"] == "generative"


@pytest.mark.parametrize("model,options", [
    ("dcgan", ["--set", "model.channels=16"]),
    ("ddpm", ["--set", "model.channels=8", "--set", "model.sample_steps=3"]),
])
def test_a_run_on_digits_gets_fid_kid_and_precision_recall(model: str, options: list[str],
                                                           tmp_path: Path) -> None:
    run = tmp_path / "run"
    with builtin_plugins_only():
        res = cli("run", "--model", model, "--dataset", "digits", *options,
                  "--set", "train.steps=4", "--set", "data.n_train=200",
                  "--set", "data.n_test=50", "--set", "eval.random-generation.n_samples=120",
                  "--set", "eval.kid.subset_size=100", "--set", "eval.kid.subsets=5",
                  "--set", 'eval.metrics=["fid", "kid", "prdc"]', "--out", str(run))
    assert res.code == 0, res.err
    doc: dict[str, Any] = json.loads((run / "metrics.json").read_text())
    got = {r["metric"]: r["value"] for r in doc["results"]
           if r["protocol"] == "random-generation"}
    assert got["fid"] > 0 and got["kid"] > 0
    assert 0 <= got["precision"] <= 1 and 0 <= got["recall"] <= 1
    assert doc["not_applicable"]["interpolation"] == f"does not apply: {model} has no encoder"
    assert "interpolation does not apply" in res.err


# ------------------------------------------------- autoencoders: the RAE paper's Table 1 view
TABLE1 = ["--set", 'eval.protocols=["reconstruction-samples", "prior-samples", '
          '"random-generation"]', "--set", 'eval.metrics=["fid"]',
          "--set", "eval.random-generation.n_samples=100", "--set", "eval.prior-samples.n_samples=100",
          "--set", "train.steps=20", "--set", "data.n_train=300", "--set", "data.n_test=80"]


def test_autoencoders_get_fid_of_reconstructions_prior_and_gmm_side_by_side(tmp_path: Path) -> None:

    with builtin_plugins_only():
        vae = cli("run", "--model", "vae", "--dataset", "digits", "--set", "model.beta=1e-3",
                  *TABLE1, "--out", str(tmp_path / "vae"))
        ae = cli("run", "--model", "ae", "--dataset", "digits", *TABLE1,
                 "--out", str(tmp_path / "ae"))
        assert vae.code == 0 and ae.code == 0, vae.err + ae.err
        report = cli("report", str(tmp_path / "vae"), str(tmp_path / "ae"), "--format", "csv")
    assert report.code == 0, report.err
    fid = {}
    for name in ("vae", "ae"):
        doc = json.loads((tmp_path / name / "metrics.json").read_text())
        fid[name] = {r["protocol"]: r["value"] for r in doc["results"] if r["metric"] == "fid"}
    assert set(fid["vae"]) == {"reconstruction-samples", "prior-samples", "random-generation"}
    assert all(v > 0 for v in fid["vae"].values()) and len(set(fid["vae"].values())) == 3
    assert set(fid["ae"]) == {"reconstruction-samples", "random-generation"}
    doc = json.loads((tmp_path / "ae" / "metrics.json").read_text())
    assert doc["not_applicable"] == {"prior-samples": "does not apply: ae has no prior"}
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(report.out)))
    assert {(r["model"], r["protocol"]) for r in rows if r["metric"] == "fid"} == {
        ("vae", "reconstruction-samples"), ("vae", "prior-samples"),
        ("vae", "random-generation"), ("ae", "reconstruction-samples"),
        ("ae", "random-generation")}
