"""The seven models of the autoencoders plugin: registration, architecture, losses, the
vrrae KL identity (docs/maths.md), the inference basis, evaluation, save/load."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from harness_plugins.autoencoders import models as M
from harness_plugins.autoencoders.networks import (
    ConvDecoder,
    ConvEncoder,
    MLPEncoder,
    decoder_geometry,
)

from harness import DatasetInfo, StepContext

NAMES = ["ae", "vae", "rrae", "vrrae", "rrae-vae", "vae-identity", "vrrae-nokl"]
RRAE_FAMILY = ["rrae", "vrrae", "rrae-vae", "vrrae-nokl"]
VARIATIONAL = ["vae", "vrrae", "rrae-vae", "vae-identity", "vrrae-nokl"]
SMALL = {"latent_dim": 12, "k": 3, "enc_channels": [4, 8], "dec_channels": [4, 8, 8, 4, 4]}


def build(name: str, shape: tuple[int, int, int] = (1, 16, 16), **overrides: object) -> M._Autoencoder:
    cls = M.MODELS[name]
    fields = {f for f in cls.Config.__dataclass_fields__}
    values = {k: v for k, v in {**SMALL, **overrides}.items() if k in fields}
    torch.manual_seed(0)
    return cls.from_config(cls.Config(**values), DatasetInfo("test", shape))


def images(n: int, shape: tuple[int, int, int] = (1, 16, 16), seed: int = 0) -> torch.Tensor:
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------ registration
BASELINES = ["irmae", "lorae", "rae", "wae"]  # in .baselines, tested in test_baselines.py


def test_register_models_lists_the_eleven_models_lazily() -> None:
    import harness_plugins.autoencoders as plugin

    seen: list[tuple[str, str, str]] = []
    plugin.register_models(lambda name, factory, description: seen.append((name, factory, description)))
    assert [s[0] for s in seen] == NAMES + BASELINES
    for name, factory, description in seen:
        module, _, attr = factory.partition(":")
        leaf = "baselines" if name in BASELINES else "models"
        assert module == f"harness_plugins.autoencoders.{leaf}"
        assert getattr(sys.modules[module], attr) is M.MODELS[name] and description
    code = "import sys, harness_plugins.autoencoders; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_defaults_are_the_bumps_configuration() -> None:
    assert (M.RRAEConfig().latent_dim, M.RRAEConfig().k) == (200, 2)
    assert M.VRRAEConfig().beta == 1e-3 and M.VAEConfig().beta == 1e-3
    assert M.VRRAENoKLConfig().beta == 0.0 and not hasattr(M.RRAEConfig(), "beta")
    model = M.VRRAE.from_config(M.VRRAEConfig(), DatasetInfo("bumps", (1, 64, 64)))
    assert (model.k, model.latent_dim, model.beta, model.bottleneck_dim) == (2, 200, 1e-3, 2)
    assert model.min_batch_size == 2 and build("vae").min_batch_size == 1
    assert build("ae").latent_dim == 3 and build("ae").beta == 0.0


# ------------------------------------------------------------------------------ architecture
@pytest.mark.parametrize("size,h0,kernel", [(28, 2, 5), (32, 2, 1), (64, 4, 1), (160, 10, 1)])
def test_decoder_geometry(size: int, h0: int, kernel: int) -> None:
    assert decoder_geometry(size, 4) == (h0, kernel)
    dec = ConvDecoder((3, size, size), latent=5)
    assert dec.h0 == h0 and dec.net[-1].kernel_size == (kernel, kernel)
    assert [m.out_channels for m in dec.net if isinstance(m, torch.nn.ConvTranspose2d)] == [
        256, 128, 32, 8]
    assert dec(torch.randn(1, 5)).shape == (1, 3, size, size)


def test_encoder_is_the_papers() -> None:
    enc = ConvEncoder((1, 28, 28), latent=100)
    convs = [m for m in enc.features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (1, 32, (3, 3), (2, 2), (1, 1)), (32, 64, (3, 3), (2, 2), (1, 1))]
    assert enc.linear.in_features == 64 * 7 * 7 and enc.linear.out_features == 100


def test_mlp_for_vector_data_and_conv_for_images() -> None:
    vec = build("vrrae", shape=(10, 1, 1))
    assert isinstance(vec.encoder, MLPEncoder)
    assert vec(torch.rand(6, 10, 1, 1))["total"].isfinite()
    assert isinstance(build("vrrae").encoder, ConvEncoder)
    forced = build("ae", arch="mlp", hidden=16)
    assert forced.reconstruct(images(2)).shape == (2, 1, 16, 16)


# ----------------------------------------------------------------------------------- configs
def test_config_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match=r"latent_dim \(L=2\) must be >= model.k \(3\)"):
        M.RRAEConfig(latent_dim=2, k=3).validate()
    with pytest.raises(M.ModelConfigError, match="use model 'vrrae'"):
        M.VRRAENoKLConfig(beta=1e-3).validate()
    with pytest.raises(ValueError, match="model.arch"):
        M.AEConfig(arch="transformer").validate()
    with pytest.raises(ValueError, match="svd_method"):
        M.RRAEConfig(svd_method="lanczos").validate()
    with pytest.raises(ValueError, match="beta must be >= 0"):
        M.VAEConfig(beta=-1.0).validate()


@pytest.mark.parametrize("name", RRAE_FAMILY)
def test_batch_smaller_than_k_is_refused(name: str) -> None:
    model = build(name)
    with pytest.raises(ValueError, match=r"global batch size 2 is smaller than k=3"):
        model(images(2), StepContext())


# ------------------------------------------------------------------------------------ losses
def test_relative_error_is_percent_of_the_whole_batch() -> None:
    x = images(4)
    assert M.relative_error(x * 1.1, x, StepContext()).item() == pytest.approx(10.0, rel=1e-5)
    noise = torch.randn_like(x)
    expected = 100 * torch.linalg.vector_norm(noise) / torch.linalg.vector_norm(x)
    assert M.relative_error(x + noise, x, StepContext()).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_forward_parts_and_training_steps(name: str) -> None:
    model = build(name)
    x = images(8)
    out = model(x, StepContext(step=0, seed=1))
    assert set(out) == ({"total", "rec", "kl"} if name in VARIATIONAL else {"total", "rec"})
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.values())
    expected = out["rec"] + model.beta * out["kl"] if name in VARIATIONAL else out["rec"]
    assert out["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    if name == "vrrae-nokl":
        assert out["total"].item() == out["rec"].item() and out["kl"].item() > 0
    # a few optimizer steps on a fixed batch bring the reconstruction error down
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(15):
        loss = model(x, StepContext(step=step, seed=1))
        first = loss["rec"].item() if first is None else first
        opt.zero_grad()
        loss["total"].backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
    assert loss["rec"].item() < first


@pytest.mark.parametrize("name", ["vrrae", "rrae-vae", "vae"])
def test_noise_follows_the_step_context(name: str) -> None:
    model = build(name)
    x = images(8)
    a = model(x, StepContext(step=3, seed=1))["total"]
    b = model(x, StepContext(step=3, seed=1))["total"]
    c = model(x, StepContext(step=4, seed=1))["total"]
    assert a.item() == b.item() and a.item() != c.item()


def test_vrrae_kl_is_the_closed_form_of_eq7() -> None:
    """KL = 0.5*sum(exp(logvar) - 1 - logvar) + 0.5*sum_j s_j^2, because mu = A."""
    model = build("vrrae")
    with torch.no_grad():  # a non-trivial logvar map
        model.logvar_map.weight.normal_(0, 0.5)
        model.logvar_map.bias.normal_(0, 0.5)
    y = model.encoder(images(8)).double().float()
    step = model.latent_step(y, StepContext(seed=2))
    closed = 0.5 * torch.sum(step.logvar.exp() - 1 - step.logvar) + 0.5 * step.svd.S.pow(2).sum()
    assert step.kl.item() == pytest.approx(closed.item(), rel=1e-5)
    assert step.mu.pow(2).sum().item() == pytest.approx(step.svd.S.pow(2).sum().item(), rel=1e-5)
    out = model(images(8), StepContext(seed=2))
    assert out["kl"].item() == pytest.approx(closed.item(), rel=1e-5)


@pytest.mark.parametrize("name", RRAE_FAMILY)
def test_latent_step_properties(name: str) -> None:
    model = build(name)
    y = model.encoder(images(10))
    step = model.latent_step(y, StepContext(seed=3))
    a = step.coefficients.T  # k×B
    torch.testing.assert_close(a.pow(2).sum(1), step.svd.S.pow(2), rtol=1e-4, atol=1e-6)
    assert (step.svd.S[:-1] >= step.svd.S[1:]).all()
    sv = torch.linalg.svdvals(step.decoder_input.detach().double())  # rank <= k (float32 noise)
    assert sv[model.k] < 1e-5 * sv[0] and sv[model.k - 1] > 1e-3 * sv[0]
    torch.testing.assert_close(step.svd.S, torch.linalg.svdvals(y.double()).float()[: model.k])
    if name == "rrae":  # decoder input is the rank-k truncation of Y itself
        u, s, vh = torch.linalg.svd(y.double().T, full_matrices=False)
        best = (u[:, :3] * s[:3]) @ vh[:3]
        torch.testing.assert_close(step.decoder_input.double(), best.T, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------ inference / eval
@pytest.mark.parametrize("name", RRAE_FAMILY)
def test_encode_before_calibration_is_refused(name: str) -> None:
    with pytest.raises(RuntimeError, match="not calibrated: call model.calibrate"):
        build(name).encode(images(2))


def test_calibration_basis_is_the_svd_of_all_training_latents() -> None:
    model = build("vrrae")
    data = images(23)
    # uneven last batch, and an empty one (a process may get one in distributed calibration)
    model.calibrate([*torch.split(data, 5), data[:0]], StepContext())
    with torch.no_grad():
        y = model.encoder(data).double()
    u, s, _ = torch.linalg.svd(y.T, full_matrices=False)
    basis = model.basis.double()
    torch.testing.assert_close(basis @ basis.T, u[:, :3] @ u[:, :3].T, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.basis_singular_values.double(), s[:3], rtol=1e-5, atol=1e-6)
    again = build("vrrae")
    again.calibrate([(data, torch.zeros(23))], StepContext())  # one batch, with labels
    torch.testing.assert_close(again.basis, model.basis, atol=1e-5, rtol=0)
    assert model.training  # calibrate restores the mode


@pytest.mark.parametrize("name", NAMES)
def test_evaluation_is_deterministic_and_decode_encode_is_reconstruct(name: str) -> None:
    model = build(name)
    data = images(12)
    model.calibrate(torch.split(data, 4), StepContext())
    model.eval()
    with torch.no_grad():
        codes = model.encode(data[:5])
        assert codes.shape == (5, model.k)
        torch.manual_seed(123)
        r1 = model.reconstruct(data[:5])
        torch.manual_seed(456)
        r2 = model.reconstruct(data[:5])
        torch.testing.assert_close(r1, r2, rtol=0, atol=0)
        torch.testing.assert_close(model.decode(codes), r1, rtol=0, atol=0)
        if name in RRAE_FAMILY:  # codes are U^T y (after the mean map for rrae-vae)
            c = model.encoder(data[:5]) @ model.basis
            expected = model.mu_map(c) if model.variational else c
            torch.testing.assert_close(codes, expected)


@pytest.mark.parametrize("name", NAMES)
def test_save_and_reload_give_identical_outputs(name: str, tmp_path: Path) -> None:
    model = build(name)
    data = images(9)
    model.calibrate([data], StepContext())
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "model_config.json"]
    doc = json.loads((tmp_path / "model_config.json").read_text())
    assert doc["model"] == name and doc["config"]["k"] == 3 and doc["info"]["shape"] == [1, 16, 16]

    loaded = M.load_pretrained(tmp_path)
    assert type(loaded) is type(model) and loaded.config == model.config
    model.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.reconstruct(data), model.reconstruct(data), rtol=0, atol=0)
        torch.testing.assert_close(loaded.encode(data), model.encode(data), rtol=0, atol=0)
        a = model(data, StepContext(step=1, seed=5))
        b = loaded(data, StepContext(step=1, seed=5))
    assert {k: v.item() for k, v in a.items()} == {k: v.item() for k, v in b.items()}
    assert type(M.MODELS[name].from_pretrained(tmp_path)) is type(model)
    other = M.AE if name != "ae" else M.VAE
    with pytest.raises(ValueError, match=f"holds a '{name}' model"):
        other.from_pretrained(tmp_path)


def test_uncalibrated_flag_survives_save_load(tmp_path: Path) -> None:
    model = build("rrae")
    model.save_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match="not calibrated"):
        M.load_pretrained(tmp_path).encode(images(3))
    assert math.isclose(float(M.load_pretrained(tmp_path).calibrated), 0.0)


def test_reload_without_recorded_shape_needs_info(tmp_path: Path) -> None:
    model = build("vrrae")
    model.calibrate([images(6)], StepContext())
    model.save_pretrained(tmp_path)
    doc = json.loads((tmp_path / "model_config.json").read_text())
    del doc["info"]
    (tmp_path / "model_config.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="does not record the data shape"):
        M.load_pretrained(tmp_path)
    loaded = M.load_pretrained(tmp_path, info=DatasetInfo("test", (1, 16, 16)))
    torch.testing.assert_close(loaded.basis, model.basis, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["vae", "vrrae"])
def test_kl_reduction_mean_makes_beta_independent_of_the_batch_size(name: str) -> None:
    """sum (the paper's, default): total = rec + β KL_sum, so β's weight grows with B;
    mean: total = rec + β KL_sum / B, and β_mean = B β_sum trains identically."""
    assert M.MODELS[name].Config().kl_reduction == "sum"
    x = images(8)
    summed = build(name, beta=0.01)
    out = summed(x, StepContext(seed=3))
    assert out["total"].item() == pytest.approx(out["rec"].item() + 0.01 * out["kl"].item(),
                                                rel=1e-6)
    mean = build(name, beta=0.01 * 8, kl_reduction="mean")
    out_mean = mean(x, StepContext(seed=3))
    assert out_mean["kl"].item() == pytest.approx(out["kl"].item(), rel=1e-6)  # reported summed
    assert out_mean["total"].item() == pytest.approx(out["total"].item(), rel=1e-6)
    # the same β per sample at batch 4 and 8: the KL's share no longer grows with B
    per = [build(name, beta=0.5, kl_reduction="mean")(images(b), StepContext(seed=3))
           for b in (4, 8)]
    assert [(p["total"] - p["rec"]).item() for p in per] == pytest.approx(
        [0.5 * p["kl"].item() / b for p, b in zip(per, (4, 8), strict=True)], abs=1e-4)
    with pytest.raises(M.ModelConfigError, match="kl_reduction"):
        build(name, kl_reduction="batchmean")
