"""CUDA-only behaviour: pinned batches, fp16 with the grad scaler, bf16, the compiled mode,
peak GPU memory, resume on the GPU. Run where ``torch.cuda.is_available()``; skipped, with
the reason, elsewhere."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (torch.cuda.is_available() is False)")


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _splits():  # type: ignore[no-untyped-def]
    from harness_plugins.datasets import digits

    from harness.api import DataConfig

    return digits.load(DataConfig())


def _model(splits, seed: int = 0):  # type: ignore[no-untyped-def]
    from harness_plugins.autoencoders.models import VRRAE

    from harness.training.loop import seed_everything

    seed_everything(seed)
    cfg = VRRAE.Config(k=4, latent_dim=16, arch="mlp", hidden=32, beta=1e-3)
    return VRRAE.from_config(cfg, splits.info)


def _train(tmp_path, name: str, **train_options):  # type: ignore[no-untyped-def]
    from accelerate.state import AcceleratorState, GradientState

    from harness.configuration.run_config import RunConfig, TrainConfig
    from harness.training.loop import train

    AcceleratorState._reset_state(True)  # each run its own mixed-precision setting
    GradientState._reset_state()
    splits = _splits()
    options = {"steps": 8, "batch_size": 64, "log_every": 1, **train_options}
    config = RunConfig(model="vrrae", dataset="digits", seed=0, train=TrainConfig(**options))
    run_dir = tmp_path / name
    result = train(_model(splits), splits, config, run_dir, resume=False)
    records = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    return result, records, run_dir


def test_batches_are_pinned_for_the_gpu(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from harness.training import feeding as hdata
    from harness.training import loop as trainer

    split = _splits().train
    images, labels = next(iter(hdata.make_loader(split, [[0, 1, 2]], pin_memory=True)))
    assert images.is_pinned() and labels.is_pinned()
    seen: list[bool] = []

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs["pin_memory"])
        return hdata.make_loader(*args, **kwargs)

    monkeypatch.setattr(trainer, "make_loader", spy)
    result, _, _ = _train(tmp_path, "pinned", steps=2)
    assert seen and all(seen)  # training and calibration loaders
    assert next(result.model.parameters()).device.type == "cuda"


def test_small_splits_are_indexed_on_the_gpu_bit_for_bit() -> None:
    from torch.utils.data._utils.collate import default_collate

    from harness.training import feeding as hdata

    split = _splits().train  # digits: float32 images
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (40, 1, 6, 6), dtype=np.uint8)
    from harness_plugins.datasets._common import ArrayDataset

    for s in (split, ArrayDataset(raw, rng.integers(0, 10, 40))):
        assert hdata.fits_on_device(s, "cuda")
        loader = hdata.make_loader(s, [[3, 1, 4, 1, 5], [9, 2, 6]], device=torch.device("cuda"))
        assert isinstance(loader, hdata.DeviceBatches)
        for (x, y), idx in zip(loader, [[3, 1, 4, 1, 5], [9, 2, 6]], strict=True):
            assert x.device.type == "cuda" and y.device.type == "cuda"
            want = default_collate([s[i] for i in idx])
            assert torch.equal(x.cpu(), want[0]) and torch.equal(y.cpu(), want[1])


def test_fp16_uses_the_grad_scaler_and_checkpoints_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from harness.rundir import checkpoints as ckpt

    result, records, run_dir = _train(tmp_path, "fp16", mixed_precision="fp16")
    assert all(np.isfinite(r["loss"]["total"]) for r in records)
    latest = ckpt.latest_checkpoint(run_dir / "checkpoints")
    scaler = ckpt.load_extra(latest).get("scaler")
    assert scaler and scaler["scale"] > 0  # the GradScaler's state was saved
    assert all(p.dtype == torch.float32 for p in result.model.parameters())  # master weights


def test_fp16_trains_a_model_that_owns_its_step(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """dcgan's two updates a step each go through Accelerate's fp16 scaler: losses finite,
    the scaler's state checkpointed, master weights float32 and moved, and a resume close to
    the uninterrupted run (the scaler's state travels with the checkpoint)."""
    from accelerate.state import AcceleratorState, GradientState
    from harness_plugins.generative.dcgan import DCGAN, DCGANConfig

    from harness.configuration.run_config import RunConfig, TrainConfig
    from harness.rundir import checkpoints as ckpt
    from harness.training.loop import seed_everything, train

    splits = _splits()

    def run(steps: int, name: str, resume: bool = False):  # type: ignore[no-untyped-def]
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        seed_everything(0)
        model = DCGAN(DCGANConfig(z_dim=16, channels=32), splits.info)
        cfg = RunConfig(model="dcgan", dataset="digits", seed=0,
                        train=TrainConfig(steps=steps, batch_size=64, checkpoint_every=5,
                                          log_every=1, lr=2e-4, mixed_precision="fp16"))
        return train(model, splits, cfg, tmp_path / name, resume=resume)

    seed_everything(0)
    before = DCGAN(DCGANConfig(z_dim=16, channels=32), splits.info).state_dict()
    full = run(10, "full")
    records = [json.loads(x) for x in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    parts = [r["loss"] for r in records if "loss" in r]
    assert len(parts) == 10 and all(np.isfinite([p["d"], p["g"]]).all() for p in parts)
    scaler = ckpt.load_extra(ckpt.latest_checkpoint(tmp_path / "full" / "checkpoints"))
    assert scaler.get("scaler") and scaler["scaler"]["scale"] > 0
    weights = full.model.state_dict()
    assert all(t.dtype == torch.float32 for t in weights.values())
    assert any(not torch.equal(weights[k].cpu(), before[k]) for k in before)
    run(5, "cut")
    resumed = run(10, "cut", resume=True)
    for key, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, weights[key], rtol=1e-5, atol=1e-6, msg=key)


def test_bf16_trains_with_float32_weights(tmp_path) -> None:  # type: ignore[no-untyped-def]
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    result, records, _ = _train(tmp_path, "bf16", mixed_precision="bf16")
    losses = [r["loss"]["total"] for r in records]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 for p in result.model.parameters())


def test_peak_gpu_memory_is_logged(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, records, _ = _train(tmp_path, "peak", steps=3)
    assert all(r["peak_gpu_memory_mb"] > 0 for r in records)
    assert all("peak_rss_mb" not in r for r in records)


def test_compiled_mode_matches_eager_on_cuda(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import importlib.util

    if importlib.util.find_spec("triton") is None:
        pytest.skip("no Triton: inductor cannot compile CUDA code here")
    _, eager, _ = _train(tmp_path, "eager", steps=20)
    _, compiled, _ = _train(tmp_path, "compiled", steps=20, compile=True)
    a = [r["loss"]["total"] for r in eager]
    b = [r["loss"]["total"] for r in compiled]
    assert b == pytest.approx(a, rel=1e-3, abs=1e-4)


def test_resume_on_the_gpu_reaches_the_uninterrupted_weights(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from harness.configuration.run_config import RunConfig, TrainConfig
    from harness.training.loop import train

    splits = _splits()

    def cfg(steps: int) -> RunConfig:
        return RunConfig(model="vrrae", dataset="digits", seed=0,
                         train=TrainConfig(steps=steps, batch_size=64, checkpoint_every=5))

    full = train(_model(splits), splits, cfg(10), tmp_path / "full")
    train(_model(splits), splits, cfg(5), tmp_path / "cut")
    resumed = train(_model(splits), splits, cfg(10), tmp_path / "cut", resume=True)
    assert resumed.start_step == 5 and resumed.steps == 10
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)


def test_environment_records_the_gpu(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from harness.cli import main

    out = tmp_path / "run"
    try:
        main(["run", "--model", "ae", "--dataset", "digits", "--out", str(out), "--no-eval",
              "--set", "train.steps=2", "--set", "train.batch_size=32", "--set", "model.k=2"])
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    env = json.loads((out / "environment.json").read_text())
    assert env["device"].startswith("cuda")
    training = json.loads((out / "metrics.json").read_text())["training"]
    assert training["peak_gpu_memory_mb"] > 0
