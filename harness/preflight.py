"""Checks run before ``harness run`` writes anything, so a refused run leaves no folder behind.

The trainer (:mod:`harness.train`) repeats its own checks; these call the same validators
early, plus the ones only the host can make (the optimizer accepts the values, the splits are
not empty, a resume keeps the settings the data order and the weights depend on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import RunConfig, TrainConfig
from .errors import ConfigError

#: settings a resumed run may change: they do not change the data order or the weights'
#: shapes. ``eval.*`` (evaluation only) may change too.
RESUME_MAY_CHANGE = ("train.lr", "train.grad_clip", "train.steps", "train.epochs",
                     "train.log_every", "train.checkpoint_every", "train.num_workers")


def validate_train_config(cfg: TrainConfig, n_train: int, world: int,
                          model: Any) -> tuple[int, int]:
    """Every ``train`` check the trainer makes, without training: option names, trackers
    installed, batch against data, processes and model (the one batch check,
    :func:`harness.sampling.plan_steps`). Returns (total steps, batches per epoch)."""
    from . import train as trainer
    from .sampling import plan_steps

    cfg.validate()  # numbers: positive batch, lr, ... (also done when the config is built)
    trainer.check_options(cfg)
    trainer.check_trackers(cfg.trackers)
    return plan_steps(cfg, n_train, world, int(getattr(model, "min_batch_size", 1)),
                      str(getattr(model, "min_batch_reason", "")))


def check_optimizer(model: Any, cfg: TrainConfig) -> None:
    """Build the optimizer once on the model's parameters (nothing is stepped): a value the
    optimizer library refuses is a config error here, not a traceback after the run folder
    was written."""
    from . import train as trainer

    try:
        trainer.build_optimizer(model.parameters(), cfg)
    except ConfigError:
        raise
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError(
            f"train.optimizer '{cfg.optimizer}' refuses these settings (train.lr={cfg.lr}, "
            f"train.weight_decay={cfg.weight_decay}): {' '.join(str(exc).split())}"
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


def refuse_resume_changes(changes: list[Change], run_dir: Any) -> None:
    refused = [c for c in changes if not may_change_on_resume(c.key)]
    if refused:
        listed = "; ".join(f"{c.key} is {c.stored!r} in the run but {c.given!r} on the command "
                           "line" for c in refused[:5])
        raise ConfigError(
            f"cannot resume '{run_dir}' with changed settings: {listed}. A resumed run may "
            f"change only {', '.join(RESUME_MAY_CHANGE)} and eval.*; drop the others (or give "
            "the run's values), or start a new run with another --out"
        )
