"""The training plan: how long training runs and how batches are cut, decided once before any
work (:func:`harness.run.preflight.check_before_training`) and then followed as it is by
:func:`harness.training.loop.train` and the checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.configuration.run_config import TrainConfig
from harness.training.sampling import plan_steps


@dataclass(frozen=True)
class TrainPlan:
    """How long training runs and how batches are cut, decided once before any work:
    ``total_steps`` optimizer steps, ``batches_per_epoch`` full global batches per pass over
    the ``n_train`` training images, each process taking ``per_process_batch`` of them."""

    total_steps: int
    batches_per_epoch: int
    per_process_batch: int
    n_train: int
    world_size: int


def plan_training(cfg: TrainConfig, n_train: int, world: int, model: Any) -> TrainPlan:
    """Every ``train`` check that needs the data, the processes or the model, without
    training; returns the plan :func:`harness.training.loop.train` follows. The batch is checked
    here once (:func:`harness.training.sampling.plan_steps`)."""
    total, bpe = plan_steps(cfg, n_train, world, int(getattr(model, "min_batch_size", 1)),
                            str(getattr(model, "min_batch_reason", "")))
    return TrainPlan(total_steps=total, batches_per_epoch=bpe,
                     per_process_batch=cfg.batch_size // world, n_train=n_train,
                     world_size=world)
