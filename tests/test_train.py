"""The training loop in one process: optimizer, data order, seeds, logs, checkpoints and
resume, NaN stop, Ctrl-C, calibration. The two-process equivalence is in
``test_train_distributed.py``."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from dist_toys import ToyVAE, make_config, make_splits, weights

from harness.configuration.run_config import TrainConfig
from harness.errors import ConfigError, NonFiniteLoss
from harness.rundir import checkpoints as ckpt
from harness.training.loop import (
    ShardedBatchSampler,
    build_optimizer,
    seed_everything,
    train,
)
from harness.training.sampling import CalibrationSampler, plan_steps


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Accelerate keeps process-wide state (mixed precision...); start and end clean so a
    test here never constrains another test's Accelerator."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def toy(seed: int = 0, **kw) -> ToyVAE:
    seed_everything(seed)
    return ToyVAE.from_config(ToyVAE.Config(**kw), make_splits().info)


def vrrae(seed: int = 0):
    from harness_plugins.autoencoders.models import VRRAE

    seed_everything(seed)
    cfg = VRRAE.Config(k=3, latent_dim=12, arch="mlp", hidden=24, beta=1e-3)
    return VRRAE.from_config(cfg, make_splits().info)


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs: max |diff| {(a[k] - b[k]).abs().max()}"


# ----------------------------------------------------------------------------- optimizer
def test_adabelief_is_the_paper_update():
    """Five steps of AdaBelief equal optax.adabelief's formula (eps_root = eps = 1e-16,
    new-mean prediction error, bias-corrected) computed here in float64."""
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(7, dtype=torch.float64))
    opt = build_optimizer([p], TrainConfig(lr=1e-2))
    assert type(opt).__name__ == "AdaBelief"
    ref = p.detach().clone()
    m = torch.zeros_like(ref)
    s = torch.zeros_like(ref)
    b1, b2, eps, lr = 0.9, 0.999, 1e-16, 1e-2
    for t in range(1, 6):
        g = torch.randn(7, dtype=torch.float64) * (10.0 ** (-t))  # tiny gradients too
        p.grad = g.clone()
        opt.step()
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * (g - m) ** 2 + eps
        ref = ref - lr * (m / (1 - b1**t)) / ((s / (1 - b2**t)).sqrt() + eps)
        # rtol 1e-11: pytorch-optimizer 3.6-3.11 orders the same operations differently (1.9e-12
        # relative in float64); misplacing eps would show at 1e-3 with the tiny gradients
        torch.testing.assert_close(p.detach(), ref, rtol=1e-11, atol=1e-15)


def test_optimizer_choices_and_refusal():
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(build_optimizer(p, TrainConfig(optimizer="adam")), torch.optim.Adam)
    assert isinstance(build_optimizer(p, TrainConfig(optimizer="adamw")), torch.optim.AdamW)
    with pytest.raises(ConfigError, match="train.optimizer 'sgd'.*adabelief, adam, adamw"):
        build_optimizer(p, TrainConfig(optimizer="sgd"))


# ------------------------------------------------------------------------ batch planning
def test_plan_steps_and_refusals():
    assert plan_steps(TrainConfig(steps=7, batch_size=8), 50, 1, 1) == (7, 6)
    assert plan_steps(TrainConfig(epochs=3, batch_size=8), 50, 1, 1) == (18, 6)
    assert plan_steps(TrainConfig(batch_size=8), 50, 1, 1) == (TrainConfig.DEFAULT_STEPS, 6)
    with pytest.raises(ConfigError, match=r"train.batch_size=9.*2 processes"):
        plan_steps(TrainConfig(batch_size=9), 50, 2, 1)
    # the host says the model's own reason; it has no model vocabulary of its own
    with pytest.raises(ConfigError, match=r"train.batch_size=8.*minimum batch 16.*lower model.k"):
        plan_steps(TrainConfig(batch_size=8), 50, 1, 16, "the SVD needs k columns; lower model.k")
    with pytest.raises(ConfigError, match=r"has 5 images.*train.batch_size=8.*data.n_train"):
        plan_steps(TrainConfig(batch_size=8), 5, 1, 1)


def test_train_refuses_batch_below_model_minimum(tmp_path):
    with pytest.raises(ConfigError, match="minimum batch 3"):
        train(vrrae(), make_splits(), make_config(steps=1, batch_size=2), tmp_path)


# ----------------------------------------------------------------------------- data order
def test_sharded_batches_rebuild_the_one_process_batch():
    n, b = 23, 6  # 3 batches per epoch, 5 images dropped each epoch
    one = list(ShardedBatchSampler(n, b, 1, 0, seed=3, start_step=0, total_steps=9))
    halves = [list(ShardedBatchSampler(n, b, 2, r, seed=3, start_step=0, total_steps=9))
              for r in range(2)]
    assert [h0 + h1 for h0, h1 in zip(*halves, strict=True)] == one
    assert all(len(x) == b for x in one)
    for e in range(3):  # each epoch: distinct indices, a fresh order
        epoch = sum(one[3 * e : 3 * e + 3], [])
        assert len(set(epoch)) == 18
    assert one[0:3] != one[3:6]
    # starting at a later step yields exactly the tail (what resume relies on)
    tail = list(ShardedBatchSampler(n, b, 1, 0, seed=3, start_step=4, total_steps=9))
    assert tail == one[4:]
    other = list(ShardedBatchSampler(n, b, 1, 0, seed=4, start_step=0, total_steps=9))
    assert other != one


@pytest.mark.parametrize("n,world", [(10, 2), (11, 2), (7, 3), (12, 1)])
def test_calibration_shares_cover_every_image_once(n, world):
    per_rank = [list(CalibrationSampler(n, 4, world, r)) for r in range(world)]
    assert len({len(p) for p in per_rank}) == 1  # same number of batches everywhere
    flat = sorted(i for p in per_rank for batch in p for i in batch)
    assert flat == list(range(n))
    # gathered in rank order, batch j is the one-process batch j
    one = list(CalibrationSampler(n, 4, 1, 0))
    for j, batch in enumerate(one):
        assert sum((p[j] for p in per_rank), []) == batch


# ---------------------------------------------------------------- training, seeds, logs
def test_training_learns_logs_and_calibrates(tmp_path):
    model = toy()
    records = []
    cfg = make_config(steps=30, batch_size=8, log_every=10, lr=1e-2)
    result = train(model, make_splits(), cfg, tmp_path, on_log=records.append)
    assert result.steps == 30 and result.start_step == 0 and result.world_size == 1
    log = read_log(tmp_path)
    assert log == records and [r["step"] for r in log] == [10, 20, 30]
    first = log[0]
    peak = "peak_gpu_memory_mb" if torch.cuda.is_available() else "peak_rss_mb"
    assert set(first) == {"step", "epoch", "loss", "lr", "samples_per_s", "data_wait", "time",
                          peak}
    assert first[peak] > 0
    assert set(first["loss"]) == {"total", "rec", "kl"} and first["lr"] == 1e-2
    assert log[-1]["loss"]["rec"] < 0.8 * log[0]["loss"]["rec"]  # it learns
    assert 0 <= first["data_wait"] < 1 and first["samples_per_s"] > 0
    assert first["epoch"] == 1 and log[-1]["epoch"] == 4  # 6 batches of 8 per epoch
    json.dumps({k: v for k, v in vars(result).items() if k != "model"})  # JSON-able
    # calibration saw the whole training set (48, not the 48 - 0 dropped), in eval, no grad
    trained = result.model
    assert trained.seen_in_calibration == 48
    assert trained.calibrated_in_eval is True and trained.calibrated_with_grad is False


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    cfg = make_config(steps=12, batch_size=8, log_every=0)
    a = weights(train(toy(0), make_splits(), cfg, tmp_path / "a").model)
    b = weights(train(toy(0), make_splits(), cfg, tmp_path / "b").model)
    assert_same_weights(a, b)
    other = make_config(seed=1, steps=12, batch_size=8, log_every=0)
    seed_everything(1)
    c = weights(train(toy(1), make_splits(), other, tmp_path / "c").model)
    assert not torch.equal(a["enc.weight"], c["enc.weight"])


def test_gradient_clipping_bounds_the_update(tmp_path):
    """Adam-type updates hide the gradient's scale, so check the gradient norm the optimizer
    sees, through a global optimizer pre-step hook."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    model = toy()
    norms = []

    def spy(opt, args, kwargs):
        norms.append(math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters())))

    handle = register_optimizer_step_pre_hook(spy)
    try:
        cfg = make_config(steps=3, batch_size=8, log_every=0, grad_clip=0.01)
        train(model, make_splits(), cfg, tmp_path)
    finally:
        handle.remove()
    assert len(norms) == 3 and max(norms) <= 0.01 * (1 + 1e-5)


# ------------------------------------------------------------------- checkpoints, resume
def test_checkpoints_are_data_only_atomic_and_pruned(tmp_path):
    root = tmp_path / "checkpoints"
    (root / ".tmp-step-0000099").mkdir(parents=True)  # left by a run killed while saving
    (root / ".tmp-step-0000099" / "model.safetensors").write_bytes(b"half")
    cfg = make_config(steps=20, batch_size=8, log_every=5, checkpoint_every=5)
    result = train(vrrae(), make_splits(), cfg, tmp_path)
    names = sorted(p.name for p in root.iterdir())
    assert names == ["latest", "step-0000015", "step-0000020"]  # keep the last two
    assert (root / "latest").read_text().strip() == "step-0000020"
    assert result.checkpoint == str(root / "step-0000020")
    for f in (root / "step-0000020").iterdir():  # nothing a loader would unpickle
        assert f.suffix in {".safetensors", ".json"}, f
    state = ckpt.read_trainer_state(root / "step-0000020")
    assert (state.step, state.epoch, state.batch_in_epoch, state.batches_per_epoch) == (20, 3, 2, 6)
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp")]
    # an incomplete directory under a real name (never produced by the writer) is not used
    (root / "step-0000030").mkdir()
    assert ckpt.latest_checkpoint(root) == root / "step-0000020"


@pytest.mark.parametrize("optimizer", ["adabelief", "adam"])
def test_optimizer_state_round_trip(tmp_path, optimizer):
    model = toy()
    opt = build_optimizer(model.parameters(), TrainConfig(optimizer=optimizer))
    for _ in range(2):
        model(torch.rand(4, 1, 8, 8), _ctx())["total"].backward()
        opt.step()
    state = ckpt.TrainerState(2, 0, 2, 6, 10, 0, 8, 48, 1)
    path = ckpt.save_checkpoint(tmp_path, model=model, optimizer=opt, state=state)
    fresh = build_optimizer(model.parameters(), TrainConfig(optimizer=optimizer))
    ckpt.load_optimizer_state(path, fresh)
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i in a["state"]:
        for key, value in a["state"][i].items():
            other = b["state"][i][key]
            assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other


def _ctx():
    from harness.api import StepContext

    return StepContext(step=0, seed=0)


class _Crash(Exception):
    pass


def _crash_at(step: int):
    def on_log(record: dict) -> None:
        if record["step"] == step:
            raise _Crash

    return on_log


def test_resume_after_crash_reaches_the_same_weights(tmp_path):
    """Uninterrupted 20 steps == crash at step 13 (after the step-10 checkpoint), resume."""
    cfg = make_config(steps=20, batch_size=8, log_every=1, checkpoint_every=5)
    full = train(vrrae(), make_splits(), cfg, tmp_path / "full")
    with pytest.raises(_Crash):
        train(vrrae(), make_splits(), cfg, tmp_path / "cut", on_log=_crash_at(13))
    assert ckpt.latest_checkpoint(tmp_path / "cut" / "checkpoints").name == "step-0000010"
    resumed = train(vrrae(), make_splits(), cfg, tmp_path / "cut", resume=True)
    assert resumed.start_step == 10 and resumed.steps == 20
    assert_same_weights(weights(full.model), weights(resumed.model))  # basis included
    # the log reads like one uninterrupted run: steps 1..20 once each, same losses
    full_log, cut_log = read_log(tmp_path / "full"), read_log(tmp_path / "cut")
    assert [r["step"] for r in cut_log] == list(range(1, 21))
    assert [r["loss"] for r in cut_log] == [r["loss"] for r in full_log]


def test_ctrl_c_saves_a_checkpoint_and_resume_continues(tmp_path):
    cfg = make_config(steps=16, batch_size=8, log_every=1, checkpoint_every=0)
    full = weights(train(vrrae(), make_splits(), cfg, tmp_path / "full").model)

    def press_ctrl_c(record: dict) -> None:
        if record["step"] == 7:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest runs in a background job
    with pytest.raises(KeyboardInterrupt):
        train(vrrae(), make_splits(), cfg, tmp_path / "cut", on_log=press_ctrl_c)
    assert signal.getsignal(signal.SIGINT) is before  # the handler it found is restored
    latest = ckpt.latest_checkpoint(tmp_path / "cut" / "checkpoints")
    assert latest is not None and latest.name == "step-0000007"
    # the poisoned-state question does not arise: a clean stop at a step boundary
    resumed = train(vrrae(), make_splits(), cfg, tmp_path / "cut", resume=True)
    assert resumed.start_step == 7
    assert_same_weights(full, weights(resumed.model))


def test_resume_refuses_missing_or_mismatched_checkpoint(tmp_path):
    cfg = make_config(steps=4, batch_size=8, log_every=0)
    with pytest.raises(ckpt.CheckpointError, match="nothing to resume.*without --resume"):
        train(toy(), make_splits(), cfg, tmp_path, resume=True)
    train(toy(), make_splits(), cfg, tmp_path)
    other = make_config(steps=8, batch_size=16, log_every=0)
    with pytest.raises(ckpt.CheckpointError,
                       match="train.batch_size is 8 in checkpoint step-0000004 but 16 in this run"):
        train(toy(), make_splits(), other, tmp_path, resume=True)
    # more steps with the same data order: training simply continues
    longer = make_config(steps=8, batch_size=8, log_every=0)
    assert train(toy(), make_splits(), longer, tmp_path, resume=True).start_step == 4


# ---------------------------------------------------------------------------- NaN / inf
def test_nan_loss_stops_naming_step_part_and_checkpoint(tmp_path):
    model = toy(nan_at=7)  # ctx.step 7 is the 8th step
    cfg = make_config(steps=20, batch_size=8, log_every=1, checkpoint_every=5)
    with pytest.raises(NonFiniteLoss) as info:
        train(model, make_splits(), cfg, tmp_path)
    err = info.value
    good = tmp_path / "checkpoints" / "step-0000005"
    assert err.step == 8 and err.part == "kl" and math.isnan(err.value)
    assert err.checkpoint == str(good)
    assert "'kl'" in str(err) and "step 8" in str(err) and str(good) in str(err)
    # nothing past the last good checkpoint was written, and it is sound
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "checkpoints")] == ["step-0000005"]
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(str(good / "model.safetensors")).values())
    # the update of step 8 was not applied: weights are those after step 7
    log = read_log(tmp_path)
    assert log[-1] == {"step": 8, "event": "non_finite_loss", "part": "kl", "value": "nan",
                       "checkpoint": str(good)}
    assert [r["step"] for r in log[:-1]] == list(range(1, 8))


def test_nan_at_first_step_says_no_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLoss, match="no checkpoint had been written yet"):
        train(toy(nan_at=0), make_splits(), make_config(steps=3, batch_size=8), tmp_path)


# ------------------------------------------------------------------------ mixed precision
def test_bf16_mixed_precision_trains(tmp_path):
    cfg = make_config(steps=6, batch_size=8, log_every=3, mixed_precision="bf16")
    result = train(vrrae(), make_splits(), cfg, tmp_path)
    assert result.steps == 6 and all(np.isfinite(list(result.losses.values())))
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    assert bool(result.model.calibrated)


# ------------------------------------------------------------------------------- trackers
def test_trackers_get_every_log_record(tmp_path):
    """Trackers go through Accelerate's API: a custom GeneralTracker receives the config
    once and every log record, flattened."""
    from accelerate.tracking import GeneralTracker

    from harness.training.loop import make_accelerator

    class Recorder(GeneralTracker):
        name = "recorder"
        requires_logging_directory = False

        def __init__(self) -> None:
            super().__init__()
            self.config: dict = {}
            self.logged: list[tuple[int, dict]] = []

        @property
        def tracker(self):
            return self

        def store_init_configuration(self, values: dict) -> None:
            self.config = dict(values)

        def log(self, values: dict, step: int | None = None, **kwargs) -> None:
            self.logged.append((step, dict(values)))

    from accelerate import Accelerator

    recorder = Recorder()
    cfg = make_config(steps=6, batch_size=8, log_every=3, trackers=["recorder"])
    train(toy(), make_splits(), cfg, tmp_path, accelerator=Accelerator(log_with=[recorder]))
    assert recorder.config["train.batch_size"] == 8 and recorder.config["run.seed"] == 0
    assert [step for step, _ in recorder.logged] == [3, 6]
    first = set(recorder.logged[0][1])
    assert {"loss/total", "loss/rec", "loss/kl", "lr", "samples_per_s"} <= first
    with pytest.raises(ConfigError, match="train.trackers: 'tensorbored' is not a tracker"):
        make_accelerator(TrainConfig(trackers=["tensorbored"]))


def test_cpu_launch_detection(monkeypatch):
    from harness.training.loop import cpu_launch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert cpu_launch() is False  # one process: nothing to fix
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cpu_launch() is True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cpu_launch() is False  # GPUs: Accelerate picks MULTI_GPU itself
    # asked for the CPU (accelerate launch --cpu), with GPUs, one process or several
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    assert cpu_launch() is True
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert cpu_launch() is True
    monkeypatch.setenv("ACCELERATE_USE_CPU", "False")  # what accelerate launch sets otherwise
    assert cpu_launch() is False
