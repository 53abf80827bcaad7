"""The one training loop: any :class:`harness.api.GenerativeModel`, on Hugging Face Accelerate.

Why it looks the way it does: :func:`train` is meant to be read top to bottom, like
Accelerate's own examples. It builds its collaborators, then each step is
``batch -> loss -> check -> backward -> step -> zero_grad -> log -> checkpoint -> stop?``,
then the model is calibrated. Everything else has one job and a module of its own, which
keeps one of the loop's promises and says how:

* **Same result whatever the number of processes** (:mod:`harness.training.sampling`).
  ``train.batch_size`` is the *global* batch; every process takes its rank's contiguous slice
  of the same seeded per-epoch order, so gathering in rank order rebuilds the one-process
  batch. Models compute the *global* loss on every process (:mod:`harness.distributed`), and
  their noise comes from :class:`StepContext`'s generator seeded by ``(seed, step)``.
* **Resumable bit for bit** (:mod:`harness.training.checkpointing`, files by
  :mod:`harness.rundir.checkpoints`). The data position follows from the step, noise from the step,
  and a checkpoint holds weights, optimizer state, step and every process's RNG states;
  ``resume=True`` continues from the newest one.
* **Fails loudly on NaN/inf** (:mod:`harness.training.lossguard`). Every loss part is checked every
  step *before* the update is applied; the run raises :class:`harness.errors.NonFiniteLoss`
  naming the step, the part and the last good checkpoint, and writes nothing more.
* **Ctrl-C saves** (:mod:`harness.training.stopsignal`). SIGINT/SIGTERM set a flag the processes agree
  on at the next step boundary, a checkpoint is written, and ``KeyboardInterrupt`` is raised
  (the CLI exits 130). A second Ctrl-C stops at once.
* **Device-agnostic** (:mod:`harness.training.accel`). Devices, DDP and mixed precision are
  Accelerate's (``accelerate launch`` / ``accelerate config``); the loop has no device-specific
  branch (CUDA only turns on pinned memory, and :func:`cpu_launch` fixes CPU launches).
* **Says what it is doing** (:mod:`harness.training.steplog`): ``run_dir/log.jsonl``, trackers, the
  ``on_log`` callback (the ``step_logged`` hook), a progress bar or plain progress lines.
* **The paper's optimizer**, exactly (:mod:`harness.training.optim`).
* **Or the model's own step** (:class:`harness.training.accel.ModelOwnedStep`): a model with
  ``configure_optimizers`` and ``training_step`` (a GAN's alternating updates, a diffusion
  model's EMA) gets its named optimizers, each update through Accelerate, checkpointed and
  resumed like the one optimizer; the host does not know the model's family.

"Same" means within float tolerance: one process and N processes sum in different orders, so
results agree to rounding at first; over a long run the trajectories can drift apart (a model's
gradient may amplify rounding differences), as two machines would.

The loop's own per-step cost is one host sync (reading the loss parts, needed for the NaN
check), a flag all-reduce when there are several processes, and bookkeeping; see
``benchmarks/bench_overhead.py`` for its measured overhead against a bare PyTorch loop.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.api import DataSplits, StepContext
from harness.configuration.run_config import RunConfig, TrainConfig
from harness.rundir.layout import CHECKPOINT_DIR, LOG_FILE
from harness.training.accel import (
    MIXED_PRECISION,
    check_accelerator,
    check_mixed_precision,
    check_trackers,
    cpu_launch,
    make_accelerator,
    prepare_update,
    unwrap_model,
)
from harness.training.checkpointing import CheckpointPolicy
from harness.training.compile import maybe_compile
from harness.training.lossguard import LossGuard
from harness.training.optim import OPTIMIZERS, build_optimizer
from harness.training.plan import TrainPlan, plan_training
from harness.training.sampling import (
    ShardedBatchSampler,
    epoch_permutation,
    make_calibration_loader,
    make_train_loader,
    timed_batches,
)
from harness.training.steplog import LOG_FLUSH_S, PLAIN_PROGRESS_EVERY_S, StepLogger
from harness.training.stopsignal import StopRequest


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device). Call it before building the model, on
    every process, so the initial weights are identical everywhere (DDP would broadcast rank
    0's anyway, but the one-process run must start from the same weights as the N-process one).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds CUDA (and other accelerators) too


# -------------------------------------------------------------------------------- results
@dataclass
class TrainResult:
    """What :func:`train` returns. Every field but ``model`` is JSON-able (it goes into the
    run's metrics.json)."""

    steps: int  # optimizer steps done in total (including those before a resume)
    start_step: int  # where this call started (0, or the resumed checkpoint's step)
    total_steps: int  # the planned number of steps
    epochs: float  # passes over the training set done in total
    losses: dict[str, float]  # the loss parts of the last step
    wall_time: float  # seconds spent in the training loop by this call
    samples_per_s: float  # global samples per second in this call's loop
    data_wait: float  # share of the loop's time spent waiting for a batch
    calibration_time: float  # seconds spent in model.calibrate
    world_size: int
    checkpoint: str | None  # the last checkpoint written (or resumed from)
    model: Any = field(default=None, repr=False)  # the unwrapped, trained, calibrated model

    @classmethod
    def of(cls, plan: TrainPlan, cfg: TrainConfig, *, start: int, step: int, logger: Any,
           loop_time: float, calibration_time: float, checkpoint: str | None,
           model: Any) -> TrainResult:
        """The result of a loop that ran ``start .. step`` of ``plan`` in ``loop_time``."""
        done = step - start
        return cls(steps=step, start_step=start, total_steps=plan.total_steps,
                   epochs=step / plan.batches_per_epoch, losses=logger.last_values,
                   wall_time=loop_time,
                   samples_per_s=done * cfg.batch_size / loop_time if done else 0.0,
                   data_wait=logger.wait_total / loop_time if done else 0.0,
                   calibration_time=calibration_time, world_size=plan.world_size,
                   checkpoint=checkpoint, model=model)


# ------------------------------------------------------------------------------ the loop
def train(
    model: torch.nn.Module,
    splits: DataSplits,
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    accelerator: Any = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    plan: TrainPlan | None = None,
) -> TrainResult:
    """Train ``model`` on ``splits.train`` as ``config.train`` says, then calibrate it.

    Call it on every process (it is collective). ``accelerator`` is an
    ``accelerate.Accelerator`` built from ``config.train`` (one is made when None); the model
    must have been built after :func:`seed_everything`. Log records go to
    ``run_dir/log.jsonl`` and ``on_log`` (main process only); checkpoints to
    ``run_dir/checkpoints/``. ``resume=True`` continues from the newest checkpoint and
    refuses when there is none. ``plan``: the preflight's :class:`TrainPlan` for this data,
    these processes and this model (made here when None, e.g. from Python). Raises
    :class:`NonFiniteLoss` on a NaN/inf loss part and
    re-raises ``KeyboardInterrupt`` after saving a checkpoint on Ctrl-C.
    """
    cfg, run_dir, seed = config.train, Path(run_dir), config.seed
    acc = accelerator if accelerator is not None else make_accelerator(cfg, run_dir)
    check_accelerator(acc)
    check_mixed_precision(acc.mixed_precision, acc.device)
    device, world, rank = acc.device, acc.num_processes, acc.process_index
    if plan is None:
        plan = plan_training(cfg, len(splits.train), world, model)  # type: ignore[arg-type]
    n_train, total, bpe = plan.n_train, plan.total_steps, plan.batches_per_epoch
    if acc.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = CheckpointPolicy(run_dir, config, acc, plan)
    start = checkpoints.load_weights(model) if resume else 0  # before prepare, see its doc
    model, update = prepare_update(acc, model, cfg)
    maybe_compile(unwrap_model(acc, model), cfg, device)  # train.compile: compiled in place
    logger = StepLogger(run_dir, config, accelerator=acc, start=start, total=total,
                        batches_per_epoch=bpe, lr=update.lr, on_log=on_log)
    checkpoints.attach(unwrap_model(acc, model), update.optimizer,  # type: ignore[arg-type]
                       flush_log=logger.flush)  # an OptimizerSet saves and loads like one
    if resume:
        checkpoints.load_state()  # optimizer, scaler, RNG; the log cut back to the checkpoint
    acc.wait_for_everyone()
    sampler = ShardedBatchSampler(n_train, cfg.batch_size, world, rank, seed=seed,
                                  start_step=start, total_steps=total)
    loader = make_train_loader(splits.train, sampler, num_workers=cfg.num_workers,
                               device=device, seed=seed)
    guard = LossGuard(bpe, last_checkpoint=lambda: checkpoints.last, write_event=logger.write)

    step = start
    model.train()
    with StopRequest(acc) as stop, logger:
        try:
            for x, wait in timed_batches(loader, device):
                ctx = StepContext(step=step, seed=seed, device=device)
                # forward, the NaN/inf check before anything is applied, backward, the
                # (clipped) update; or the model's own updates, each checked first
                values = update.run(x, ctx, step + 1, guard)
                step += 1
                update.zero_grad()
                logger.log(step, values, wait)
                checkpoints.maybe_save(step)
                if stop.agreed():  # a signal reached some process: all stop at this step
                    checkpoints.save(step)
                    raise stop.interrupt(step, total, checkpoints.last)
            checkpoints.save_final(step)
        except KeyboardInterrupt:  # a second Ctrl-C, or one that bypassed the handler
            if not stop.flag and update.settled(step - start):
                checkpoints.save_interrupted(step)
            raise
    loop_time = logger.elapsed

    calibration_time = _calibrate(unwrap_model(acc, model), splits, cfg, acc, step, seed)
    if accelerator is None:
        acc.end_training()
    return TrainResult.of(plan, cfg, start=start, step=step, logger=logger,
                          loop_time=loop_time, calibration_time=calibration_time,
                          checkpoint=checkpoints.last,
                          model=unwrap_model(acc, model, keep_fp32_wrapper=False))


def _calibrate(model: Any, splits: DataSplits, cfg: TrainConfig, acc: Any, step: int,
               seed: int) -> float:
    """Run ``model.calibrate`` (if it has one) in eval mode without gradients, over every
    image of the training set exactly once across all processes; returns the seconds spent."""
    model.eval()
    t0 = time.perf_counter()
    calibrate = getattr(model, "calibrate", None)
    if callable(calibrate):
        loader = make_calibration_loader(splits.train, splits.info.shape,
                                         batch_size=cfg.batch_size, world=acc.num_processes,
                                         rank=acc.process_index, num_workers=cfg.num_workers,
                                         device=acc.device)
        ctx = StepContext(step=step, seed=seed, device=acc.device)
        with torch.no_grad():
            calibrate((b.to(acc.device, non_blocking=True) for b in loader), ctx)
    acc.wait_for_everyone()
    return time.perf_counter() - t0


__all__ = [
    "CHECKPOINT_DIR",
    "LOG_FILE",
    "LOG_FLUSH_S",
    "MIXED_PRECISION",
    "OPTIMIZERS",
    "PLAIN_PROGRESS_EVERY_S",
    "ShardedBatchSampler",
    "TrainResult",
    "build_optimizer",
    "check_mixed_precision",
    "check_trackers",
    "cpu_launch",
    "epoch_permutation",
    "make_accelerator",
    "seed_everything",
    "train",
]
