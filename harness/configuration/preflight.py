"""Checks run before ``harness run`` writes anything, so a refused run leaves no folder behind.

Every configuration section checks its own values when it is built (:mod:`harness.configuration.run_config`);
what is checked here needs more than one section: the batch against the data, the processes
and the model (:func:`plan_training`, whose :class:`TrainPlan` the trainer then uses as it is),
the optimizer accepting the values, the splits not being empty, the evaluation sizes fitting
the memory and the data (:func:`check_eval_sizes`), and a resume keeping the settings the data
order and the weights depend on (:func:`refuse_resume_changes`, the one resume check, for the
command line against the saved run and for the checkpoint against this run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.configuration.run_config import RunConfig, TrainConfig
from harness.errors import ConfigError, HarnessError, one_line

#: settings a resumed run may change: they do not change the data order or the weights'
#: shapes. ``eval.*`` (evaluation only) may change too.
RESUME_MAY_CHANGE = ("train.lr", "train.grad_clip", "train.steps", "train.epochs",
                     "train.log_every", "train.checkpoint_every", "train.num_workers")


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


def check_trackers(cfg: TrainConfig) -> None:
    """The trackers ``train.trackers`` names are known to Accelerate and installed (checked
    before ``harness run`` writes anything; an Accelerator given by Python code may bring
    trackers of its own)."""
    from harness.training.accel import check_trackers as check

    check(cfg.trackers)


def plan_training(cfg: TrainConfig, n_train: int, world: int, model: Any) -> TrainPlan:
    """Every ``train`` check that needs the data, the processes or the model, without
    training; returns the plan :func:`harness.training.loop.train` follows. The batch is checked
    here once (:func:`harness.training.sampling.plan_steps`)."""
    from harness.training.sampling import plan_steps

    total, bpe = plan_steps(cfg, n_train, world, int(getattr(model, "min_batch_size", 1)),
                            str(getattr(model, "min_batch_reason", "")))
    return TrainPlan(total_steps=total, batches_per_epoch=bpe,
                     per_process_batch=cfg.batch_size // world, n_train=n_train,
                     world_size=world)


def check_optimizer(model: Any, cfg: TrainConfig) -> None:
    """Build the optimizer once on the model's parameters (nothing is stepped): a value the
    optimizer library refuses is a config error here, not a traceback after the run folder
    was written."""
    from harness.training.optim import build_optimizer  # torch: imported only when a run is planned

    try:
        if callable(getattr(model, "training_step", None)):  # the model's own optimizers
            from harness.training.accel import model_optimizers

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


@dataclass
class Change:
    key: str
    stored: Any
    given: Any

    def __str__(self) -> str:
        return f"{self.key}: {self.stored!r} -> {self.given!r}"


def config_changes(stored: RunConfig, new: RunConfig) -> list[Change]:
    """The settings whose values differ between two configurations, as ``section.key``."""

    def flat(cfg: RunConfig) -> dict[str, Any]:
        return {f"{section}.{key}": value for section, values in cfg.as_dict().items()
                for key, value in values.items()}

    a, b = flat(stored), flat(new)
    return [Change(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def may_change_on_resume(key: str) -> bool:
    return key in RESUME_MAY_CHANGE or key.startswith("eval.")


def refuse_resume_changes(changes: list[Change], run_dir: Any, *, stored_in: str = "the run",
                          given_in: str = "on the command line",
                          error: type[HarnessError] = ConfigError) -> None:
    """The one resume-compatibility rule: a resumed run may change only
    :data:`RESUME_MAY_CHANGE` and ``eval.*``. Serves the command line against the saved run
    (``harness run --resume``) and a checkpoint's data order against this run
    (:func:`harness.rundir.checkpoints.check_data_order`); raises ``error`` naming every refusal."""
    refused = [c for c in changes if not may_change_on_resume(c.key)]
    if refused:
        listed = "; ".join(f"{c.key} is {c.stored!r} in {stored_in} but {c.given!r} {given_in}"
                           for c in refused[:5])
        raise error(
            f"cannot resume '{run_dir}' with changed settings: {listed}. A resumed run may "
            f"change only {', '.join(RESUME_MAY_CHANGE)} and eval.*; drop the others (or give "
            "the run's values), or start a new run with another --out"
        )


def eval_memory_bytes() -> int:
    """The memory an evaluation may fill: ``$HARNESS_EVAL_MEMORY_GB`` when set (a deliberate
    choice), else half of this machine's physical memory."""
    import os

    from harness.api import EVAL_MEMORY_ENV

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


def check_eval_sizes(host: Any, eval_cfg: Any, splits: Any) -> None:
    """Every selected protocol's and metric's sizes against the memory and the data, before
    training: each that defines ``check_sizes(sizes)`` (see :class:`harness.api.EvalSizes`)
    refuses what no evaluation here could hold or score (a metric: a reference too small
    for it, a weights file made for other images)."""
    from harness.api import EvalSizes
    from harness.evaluation.evaluate import _applies, build_metrics, build_protocols, metric_scores

    sizes = EvalSizes(n_train=len(splits.train), n_test=len(splits.test),
                      image_shape=tuple(int(s) for s in splits.info.shape),
                      memory_bytes=eval_memory_bytes())
    protocols = build_protocols(eval_cfg, host=host)
    scoring = [metric for _name, metric in build_metrics(eval_cfg, host=host)
               if _applies(metric, splits.info)
               and any(metric_scores(metric, name, p, host) for name, p in protocols)]
    for checked in (*(p for _name, p in protocols), *scoring):
        check = getattr(checked, "check_sizes", None)
        if callable(check):
            check(sizes)
