"""What a resumed run may change, and the one rule that refuses the rest.

Two places need it: ``harness run --resume`` (the command line against the saved run,
:func:`harness.run.resume.resume_config`) and a checkpoint's data order against the run
(:func:`harness.rundir.checkpoints.check_data_order`); it needs nothing but configurations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.configuration.run_config import RunConfig
from harness.errors import ConfigError, HarnessError

#: settings a resumed run may change: they do not change the data order or the weights'
#: shapes. ``eval.*`` (evaluation only) may change too.
RESUME_MAY_CHANGE = ("train.lr", "train.grad_clip", "train.steps", "train.epochs",
                     "train.log_every", "train.checkpoint_every", "train.num_workers")


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
