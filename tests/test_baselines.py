"""The four baselines (irmae, lorae, rae, wae): each loss term against its formula on
hand-built inputs, each model's total against its terms, the configs, the prior flag, and the
random-generation protocol's samplers."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_error_line, builtin_plugins_only, cli
from harness_plugins.autoencoders import baselines as B
from harness_plugins.autoencoders import models as M
from harness_plugins.protocols import paper

from harness import ConfigError, DatasetInfo, StepContext

BASELINES = ["irmae", "lorae", "rae", "wae"]
SMALL = {"k": 3, "enc_channels": [4, 8], "dec_channels": [4, 8, 8, 4, 4]}
SHAPE = (1, 16, 16)


def build(name: str, **overrides: object) -> M._Autoencoder:
    cls = M.MODELS[name]
    torch.manual_seed(0)
    return cls.from_config(cls.Config(**{**SMALL, **overrides}), DatasetInfo("test", SHAPE))


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------- loss terms
def test_nuclear_norm_is_the_sum_of_singular_values_with_gradient_u_vt() -> None:
    # Z = Q1 diag(3, 1) Q2^T: ||Z||_* = 4 and d||Z||_*/dZ = Q1 Q2^T
    q1, _ = torch.linalg.qr(torch.randn(5, 2, generator=torch.Generator().manual_seed(1)).double())
    q2, _ = torch.linalg.qr(torch.randn(2, 2, generator=torch.Generator().manual_seed(2)).double())
    z = (q1 @ torch.diag(torch.tensor([3.0, 1.0]).double()) @ q2.T).requires_grad_(True)
    nuc = B.nuclear_norm(z)
    assert nuc.item() == pytest.approx(4.0, abs=1e-12)
    nuc.backward()
    torch.testing.assert_close(z.grad, q1 @ q2.T, atol=1e-10, rtol=0)


def test_nuclear_norm_gradient_is_finite_with_ties_and_zero_singular_values() -> None:
    z = torch.zeros(4, 3, dtype=torch.float64)
    z[0, 0] = z[1, 1] = 2.0  # a tie (2, 2) and a zero singular value
    z.requires_grad_(True)
    B.nuclear_norm(z).backward()
    assert torch.isfinite(z.grad).all()
    assert z.grad[0, 0].item() == pytest.approx(1.0) and z.grad[1, 1].item() == pytest.approx(1.0)


def test_imq_kernel_and_mmd_against_the_formula_written_out() -> None:
    gen = torch.Generator().manual_seed(3)
    z, p = torch.randn(4, 2, generator=gen).double(), torch.randn(4, 2, generator=gen).double()
    scales = [0.5, 2.0]

    def k(a, b):  # sum_s C_s / (C_s + |a - b|^2), C_s = 2 * d * s with d = 2
        return sum(4.0 * s / (4.0 * s + float(((a - b) ** 2).sum())) for s in scales)

    assert B.imq_kernel(z[:1], p[:1], scales).item() == pytest.approx(k(z[0], p[0]))
    n = 4
    within_z = sum(k(z[i], z[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    within_p = sum(k(p[i], p[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    cross = sum(k(z[i], p[j]) for i in range(n) for j in range(n)) / n**2
    assert B.mmd_imq(z, p, scales).item() == pytest.approx(within_z + within_p - 2 * cross,
                                                           rel=1e-12)
    # identical samples: the unbiased estimate is k's off-diagonal mean minus its full mean
    assert B.mmd_imq(z, z, scales).item() < 0 < B.mmd_imq(z, z + 5.0, scales).item()
    with pytest.raises(ValueError, match="at least 2"):
        B.mmd_imq(z[:1], p[:1], scales)


def test_gradient_penalty_of_a_linear_decoder_is_the_norm_of_a_transposed_ones() -> None:
    # D(z) = A z + b: grad_z sum_j D(z)_j = A^T 1 for every sample
    dec = torch.nn.Linear(3, 5)
    z = torch.randn(6, 3, requires_grad=True)
    x_hat, gp = B.decoder_gradient_penalty(dec, z, StepContext())
    expected = float((dec.weight.detach().sum(dim=0) ** 2).sum())
    assert gp.item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(x_hat, dec(z))
    gp.backward()  # the penalty trains the decoder: d/dA ||A^T 1||^2 = 2 * 1 (A^T 1)^T
    torch.testing.assert_close(dec.weight.grad, 2 * dec.weight.sum(0, keepdim=True).expand(5, 3))
    with torch.no_grad():  # evaluated without gradients, same value
        assert B.decoder_gradient_penalty(dec, z, StepContext())[1].item() == pytest.approx(expected)


def test_decoder_l2_and_squared_error_formulas() -> None:
    dec = torch.nn.Linear(2, 2)
    with torch.no_grad():
        dec.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        dec.bias.copy_(torch.tensor([0.5, -1.0]))
    assert B.decoder_l2(dec).item() == pytest.approx(1 + 4 + 9 + 16 + 0.25 + 1)
    x = torch.zeros(2, 1, 1, 3)
    x_hat = torch.tensor([[[[1.0, 2.0, 0.0]]], [[[0.0, 0.0, 3.0]]]])
    assert B.squared_error(x_hat, x, StepContext()).item() == pytest.approx((5 + 9) / 2)


# ---------------------------------------------------------------------------- model totals
def test_irmae_is_l_bias_free_square_layers_and_its_loss_is_rec() -> None:
    model = build("irmae")
    layers = list(model.latent_map)
    assert len(layers) == 4 and all(m.bias is None and m.weight.shape == (3, 3) for m in layers)
    x = images(5)
    z = model.encoder(x)
    for layer in layers:
        z = z @ layer.weight.T
    torch.testing.assert_close(model.encode(x), z)
    out = model(x)
    rec = M.relative_error(model.decoder(z), x, StepContext())
    assert set(out) == {"total", "rec"} and out["total"].item() == pytest.approx(rec.item())
    assert len(build("irmae", n_linear=2).latent_map) == 2


def test_lorae_total_is_rec_plus_lambda_times_the_nuclear_norm_of_the_layer_weight() -> None:
    """LoRAE as published (the authors' code): λ ||W||_* of the bias-free k×k layer, λ 1e-5."""
    assert B.LoRAEConfig().reg_weight == 1e-5 and B.LoRAEConfig().penalty == "weight"
    model = build("lorae", reg_weight=0.25)
    layer = model.latent_map[0]
    assert len(model.latent_map) == 1 and layer.bias is None
    x = images(6)
    out = model(x)
    nuc = float(torch.linalg.matrix_norm(layer.weight.detach().double(), ord="nuc"))
    assert out["nuclear"].item() == pytest.approx(nuc, rel=1e-6)
    assert out["total"].item() == pytest.approx(out["rec"].item() + 0.25 * nuc, rel=1e-6)
    # the penalty's gradient on W is λ U Vᵀ; the batch codes do not enter it
    model.zero_grad()
    (out["total"] - out["rec"]).backward()
    u, _, vh = torch.linalg.svd(layer.weight.detach().double())
    torch.testing.assert_close(layer.weight.grad.double(), 0.25 * u @ vh, rtol=1e-5, atol=1e-6)
    assert all(p.grad is None or not p.grad.any() for p in model.encoder.parameters())


def test_lorae_codes_penalty_is_the_nuclear_norm_of_the_batch_codes() -> None:
    model = build("lorae", reg_weight=0.25, penalty="codes")
    x = images(6)
    out = model(x)
    nuc = torch.linalg.svdvals(model.encode(x).double()).sum().item()
    assert out["nuclear"].item() == pytest.approx(nuc, rel=1e-6)
    assert out["total"].item() == pytest.approx(out["rec"].item() + 0.25 * nuc, rel=1e-6)
    with pytest.raises(M.ModelConfigError, match="model.penalty"):
        build("lorae", penalty="rank")


@pytest.mark.parametrize("reg", ["l2", "gp"])
def test_rae_total_is_rec_plus_beta_half_z_squared_plus_lambda_reg(reg: str) -> None:
    model = build("rae", reg=reg, beta=0.5, reg_weight=0.125, rec_loss="squared")
    x = images(4)
    out = model(x)
    z = model.encode(x).detach()
    x_hat = model.decoder(z).detach()
    assert out["rec"].item() == pytest.approx(float(((x_hat - x) ** 2).sum()) / 4, rel=1e-6)
    assert out["z_norm"].item() == pytest.approx(float(0.5 * (z**2).sum(dim=1).mean()), rel=1e-6)
    if reg == "l2":
        expected_reg = sum(float((p.detach() ** 2).sum()) for p in model.decoder.parameters())
    else:
        zz = z.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model.decoder(zz).sum(), zz)
        expected_reg = float((g**2).sum(dim=1).mean())
    assert out["reg"].item() == pytest.approx(expected_reg, rel=1e-5)
    total = out["rec"] + 0.5 * out["z_norm"] + 0.125 * out["reg"]
    assert out["total"].item() == pytest.approx(total.item(), rel=1e-6)


def test_wae_total_is_rec_plus_lambda_mmd_against_the_steps_prior_draws() -> None:
    model = build("wae", reg_weight=2.0)
    x = images(5)
    out = model(x, StepContext(step=3, seed=7))
    z = model.encode(x)
    prior = StepContext(step=3, seed=7).randn_global(z.shape, like=z)  # the same draws
    mmd = B.mmd_imq(z, prior, B.WAE_SCALES).item()
    assert out["mmd"].item() == pytest.approx(mmd, rel=1e-6)
    assert out["total"].item() == pytest.approx(out["rec"].item() + 2.0 * mmd, rel=1e-6)
    assert model.config.mmd_scales == [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]


@pytest.mark.parametrize("name", BASELINES)
def test_every_baseline_trains_its_total_and_reloads(name: str, tmp_path) -> None:
    model = build(name)
    x = images(8)
    out = model(x, StepContext(step=1))
    assert math.isfinite(out["total"].item())
    out["total"].backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    relative = model(x, StepContext(step=1))["rec"].item()
    squared = build(name, rec_loss="squared")(x, StepContext(step=1))["rec"].item()
    recon = model.decoder(model.encode(x)).detach()
    assert relative == pytest.approx(100 * float((recon - x).norm() / x.norm()), rel=1e-5)
    assert squared == pytest.approx(float(((recon - x) ** 2).sum()) / 8, rel=1e-5)
    model.save_pretrained(tmp_path)
    loaded = M.load_pretrained(tmp_path)
    assert type(loaded) is type(model) and loaded.config == model.config
    with torch.no_grad():
        torch.testing.assert_close(loaded.reconstruct(x), model.reconstruct(x), rtol=0, atol=0)


def test_defaults_and_refused_values() -> None:
    assert (B.IRMAEConfig().n_linear, B.LoRAEConfig().reg_weight, B.WAEConfig().reg_weight) == (
        4, 1e-5, 10.0)
    assert (B.RAEConfig().beta, B.RAEConfig().reg, B.RAEConfig().reg_weight) == (1e-4, "l2", 1e-7)
    for cls, bad, match in [(B.IRMAEConfig, {"n_linear": 0}, "n_linear"),
                            (B.RAEConfig, {"reg": "l1"}, "model.reg must be one of l2, gp"),
                            (B.WAEConfig, {"reg_weight": -1.0}, "reg_weight"),
                            (B.WAEConfig, {"mmd_scales": []}, "mmd_scales"),
                            (B.LoRAEConfig, {"rec_loss": "mse"}, "relative, squared")]:
        with pytest.raises(M.ModelConfigError, match=match):
            cls(**bad)


def test_which_models_have_a_prior() -> None:
    with_prior = {name for name in M.MODELS if build_any(name).has_prior}
    assert with_prior == {"vae", "vae-identity", "vrrae", "rrae-vae", "wae"}
    assert not build("wae", reg_weight=0.0).has_prior


def build_any(name: str) -> M._Autoencoder:
    cls = M.MODELS[name]
    fields = set(cls.Config.__dataclass_fields__)
    values = {k: v for k, v in {**SMALL, "latent_dim": 12}.items() if k in fields}
    return cls.from_config(cls.Config(**values), DatasetInfo("test", SHAPE))


# -------------------------------------------------------------------------------- samplers
def test_gaussian_sampler_matches_the_codes_mean_and_covariance() -> None:
    rng = np.random.default_rng(0)
    cov = np.array([[2.0, 0.8], [0.8, 0.5]])
    codes = torch.from_numpy(rng.multivariate_normal([1.0, -3.0], cov, size=4000)).float()
    samples = paper.sample_gaussian(codes, 20000, seed=1).double().numpy()
    np.testing.assert_allclose(samples.mean(0), codes.double().numpy().mean(0), atol=0.05)
    np.testing.assert_allclose(np.cov(samples, rowvar=False),
                               np.cov(codes.double().numpy(), rowvar=False), atol=0.06)
    torch.testing.assert_close(paper.sample_gaussian(codes, 10, 1),
                               paper.sample_gaussian(codes, 10, 1), rtol=0, atol=0)


def test_prior_sampler_is_seeded_standard_normal() -> None:
    s = paper.sample_prior(3, 20000, seed=4)
    assert s.shape == (20000, 3)
    assert s.mean(0).abs().max() < 0.03 and (s.std(0) - 1).abs().max() < 0.03
    torch.testing.assert_close(paper.sample_prior(3, 20000, 4), s, rtol=0, atol=0)
    assert not torch.equal(paper.sample_prior(3, 20000, 5), s)


def test_sampler_is_in_the_stamp_and_gmm_keeps_the_old_stamp() -> None:
    stamps = {name: paper.RandomGeneration(paper.RandomGenerationConfig(sampler=name)).stamp()
              for name in paper.SAMPLERS}
    assert stamps["gmm"] == {"n_samples": 1250, "gmm_components": 10, "sampler": paper.SAMPLER,
                             "codes": "model.encode(train)", "reference": "train"}
    assert len({str(sorted(s.items())) for s in stamps.values()}) == len(paper.SAMPLERS)
    assert "gmm_components" not in stamps["gaussian"] and "codes" not in stamps["prior"]
    assert "codes" not in stamps["model"] and "model.sample" in stamps["model"]["sampler"]
    assert paper.RandomGeneration().stamp() == stamps["gmm"]  # auto: the stamp results had
    with pytest.raises(ConfigError, match="gmm, gaussian, prior"):
        paper.RandomGenerationConfig(sampler="flow")


def test_prior_sampler_refuses_models_without_a_prior() -> None:
    protocol = paper.RandomGeneration(paper.RandomGenerationConfig(sampler="prior"))
    protocol.check_model(build("wae"))
    with pytest.raises(ConfigError, match="model 'irmae' has no prior"):
        protocol.check_model(build("irmae"))
    paper.RandomGeneration(paper.RandomGenerationConfig(sampler="gaussian")).check_model(
        build("irmae"))


# ------------------------------------------------------------------------------------- CLI
TINY = ["--dataset", "bumps", "--set", "train.steps=2", "--set", "train.batch_size=8",
        "--set", "data.n_train=32", "--set", "data.n_test=16", "--set", "eval.metrics=[]",
        "--set", "eval.random-generation.n_samples=16",
        "--set", 'eval.protocols=["reconstruction", "random-generation"]']


@pytest.mark.parametrize("name", BASELINES)
def test_harness_run_trains_each_baseline_on_the_bumps(name: str, tmp_path) -> None:
    with builtin_plugins_only():
        res = cli("run", "--model", name, *TINY, "--out", str(tmp_path / "run"))
    assert res.code == 0, res.err
    assert 'preset = "autoencoders:synthetic"' in (tmp_path / "run" / "config.toml").read_text()
    assert (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.parametrize("name", ["vae", "wae"])
def test_prior_sampler_runs_for_models_with_a_prior(name: str, tmp_path) -> None:
    with builtin_plugins_only():
        res = cli("run", "--model", name, *TINY, "--set", "eval.random-generation.sampler=prior",
                  "--out", str(tmp_path / "run"))
    assert res.code == 0, res.err
    assert "the model's prior N(0, I)" in (tmp_path / "run" / "metrics.json").read_text()


@pytest.mark.parametrize("name", ["ae", "rrae", "irmae"])
def test_prior_sampler_is_refused_before_training(name: str, tmp_path) -> None:
    with builtin_plugins_only():
        res = cli("run", "--model", name, *TINY, "--set", "eval.random-generation.sampler=prior",
                  "--out", str(tmp_path / "run"))
    assert_error_line(res, 2, f"model '{name}' has no prior", "sampler=gmm")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
@pytest.mark.slow  # reads the 70000 real images each time: ~20 s on the loaded 2-core machine
@pytest.mark.parametrize("name", BASELINES)
def test_each_baseline_builds_with_the_fashion_mnist_preset(name: str, tmp_path) -> None:
    """Two steps with the preset's networks (k = 16) and batch (576), on 600 images."""
    with builtin_plugins_only():
        res = cli("run", "--model", name, "--dataset", "fashion-mnist", "--no-eval",
                  "--set", "train.steps=2", "--set", "data.n_train=600",
                  "--set", "data.n_test=16", "--out", str(tmp_path / "run"))
    assert res.code == 0, res.err
    config = (tmp_path / "run" / "config.toml").read_text()
    assert 'preset = "autoencoders:mnist-like"' in config and "batch_size = 576" in config
    doc = json.loads((tmp_path / "run" / "model_config.json").read_text())
    assert doc["config"]["k"] == 16 and doc["info"]["shape"] == [1, 28, 28]


def test_harness_models_describes_each_baseline_in_one_line() -> None:
    with builtin_plugins_only():
        res = cli("models", "--json")
    assert res.code == 0, res.err
    models = {m["name"]: m for m in json.loads(res.out)}
    for name, cited, term in [("irmae", "Jing", "n_linear"), ("lorae", "Mazumder", "nuclear"),
                              ("rae", "Ghosh", "gradient penalty"), ("wae", "Tolstikhin", "MMD")]:
        line = models[name]["description"]
        assert models[name]["plugin"] == "autoencoders" and "\n" not in line
        assert cited in line and term in line, line
