"""Checks run before ``harness run`` writes anything, so a refused run leaves no folder behind.

Every configuration section checks its own values when it is built
(:mod:`harness.configuration.run_config`); what is checked here needs more than one section
and the data or the model: the batch against the data, the processes and the model (the
:class:`~harness.training.plan.TrainPlan` the trainer then follows as it is), the trackers,
the optimizer accepting the values, the splits not being empty, the evaluation sizes fitting
the memory and the data (:func:`check_eval_sizes`) and each protocol's word on the model. A
resume keeping the settings the data order and the weights depend on is
:mod:`harness.configuration.changes`'s one rule.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from harness.api import EVAL_MEMORY_ENV, EvalSizes
from harness.configuration.run_config import RunConfig, TrainConfig
from harness.errors import ConfigError, one_line
from harness.evaluation import evaluate as evaluation
from harness.host.plugins import Host
from harness.training.accel import check_trackers as check_tracker_names
from harness.training.accel import model_optimizers
from harness.training.optim import build_optimizer
from harness.training.plan import TrainPlan, plan_training


def check_trackers(cfg: TrainConfig) -> None:
    """The trackers ``train.trackers`` names are known to Accelerate and installed (checked
    before ``harness run`` writes anything; an Accelerator given by Python code may bring
    trackers of its own)."""
    check_tracker_names(cfg.trackers)


def check_optimizer(model: Any, cfg: TrainConfig) -> None:
    """Build the optimizer once on the model's parameters (nothing is stepped): a value the
    optimizer library refuses is a config error here, not a traceback after the run folder
    was written."""
    try:
        if callable(getattr(model, "training_step", None)):  # the model's own optimizers
            model_optimizers(model, cfg)
        else:
            build_optimizer(model.parameters(), cfg)
    except ConfigError:
        raise
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError(
            f"train.optimizer '{cfg.optimizer}' refuses these settings (train.lr={cfg.lr}, "
            f"train.weight_decay={cfg.weight_decay}): {one_line(exc, with_type=False)}"
        ) from exc


def check_splits(splits: Any, dataset: str) -> int:
    """The training and test splits must hold images; returns the training set's size."""
    try:
        n_train = len(splits.train)
        n_test = len(splits.test)
    except TypeError as exc:
        raise ConfigError(f"dataset '{dataset}' returned splits without a length: {exc}") from exc
    for name, n in (("training", n_train), ("test", n_test)):
        if n == 0:
            raise ConfigError(
                f"dataset '{dataset}' has an empty {name} split (0 images): check data.root and "
                "data.n_train / data.n_test"
            )
    return n_train


def eval_memory_bytes() -> int:
    """The memory an evaluation may fill: ``$HARNESS_EVAL_MEMORY_GB`` when set (a deliberate
    choice), else half of this machine's physical memory."""
    given = os.environ.get(EVAL_MEMORY_ENV, "").strip()
    if given:
        try:
            value = float(given)
        except ValueError:
            value = float("nan")
        if not value > 0 or value == float("inf"):
            raise ConfigError(f"{EVAL_MEMORY_ENV}={given!r} must be a positive number of GB")
        return int(value * 1e9)
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small machine
        total = 8 * 10**9
    return int(total // 2)


def check_eval_sizes(host: Host, eval_cfg: Any, splits: Any) -> None:
    """Every selected protocol's and metric's sizes against the memory and the data, before
    training: each that defines ``check_sizes(sizes)`` (see :class:`harness.api.EvalSizes`)
    refuses what no evaluation here could hold or score (a metric: a reference too small
    for it, a weights file made for other images)."""
    sizes = EvalSizes(n_train=len(splits.train), n_test=len(splits.test),
                      image_shape=tuple(int(s) for s in splits.info.shape),
                      memory_bytes=eval_memory_bytes())
    protocols = evaluation.build_protocols(eval_cfg, host=host)
    scoring = [metric for _name, metric in evaluation.build_metrics(eval_cfg, host=host)
               if evaluation.applies(metric, splits.info)
               and any(evaluation.metric_scores(metric, name, p, host) for name, p in protocols)]
    for checked in (*(p for _name, p in protocols), *scoring):
        check = getattr(checked, "check_sizes", None)
        if callable(check):
            check(sizes)


def check_before_training(host: Host, config: RunConfig, splits: Any, model: Any,
                          n_train: int, world: int, *, evaluate: bool) -> TrainPlan:
    """What needs the data and the model, before anything is written: the training plan
    (batch against model and processes), the trackers, the optimizer, the evaluation sizes
    and each protocol's word on the model. Returns the plan ``train()`` follows."""
    train_plan = plan_training(config.train, n_train, world, model)
    check_trackers(config.train)
    check_optimizer(model, config.train)
    check_eval_sizes(host, config.eval, splits)
    if evaluate:  # a protocol that cannot evaluate this model refuses it before training
        skipped = evaluation.check_protocols(
            model, evaluation.build_protocols(config.eval, host=host), config.model)
        from accelerate import PartialState

        if skipped and PartialState().is_main_process:
            for protocol, why in skipped.items():
                print(f"harness: protocol {protocol} {why}; it is listed, not run",
                      file=sys.stderr)
    return train_plan
