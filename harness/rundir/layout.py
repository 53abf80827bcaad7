"""The names of everything a run directory holds, in one place.

Why a module of its own: the training loop, the checkpoint policy, the run-directory checks,
evaluation, the report and the benchmark all read or write the same files; each used to spell
the names itself. Every module names a run's files through :class:`RunLayout` (or the
constants below, for code that only needs a name), so renaming a file is one line here.

A run directory::

    config.toml            the resolved configuration (``harness run --config`` takes it back)
    environment.json       versions, device, processes, plugins
    log.jsonl              one JSON record per logged step
    checkpoints/           training checkpoints (see harness.rundir.checkpoints)
    model.safetensors      the final weights
    model_config.json      the model's name, config and data description
    metrics.json           every number, stamped
    metrics.prev.json      the metrics.json an evaluation replaced
    images/                the protocols' preview grids (<protocol>.png)
    samples/               what was scored, exported on request
    .harness.lock          held by the command working in the folder
"""

from __future__ import annotations

from pathlib import Path

CONFIG_FILE = "config.toml"
ENVIRONMENT_FILE = "environment.json"
LOG_FILE = "log.jsonl"
CHECKPOINT_DIR = "checkpoints"
WEIGHTS_FILE = "model.safetensors"
MODEL_CONFIG_FILE = "model_config.json"
METRICS_FILE = "metrics.json"
PREVIOUS_METRICS_FILE = "metrics.prev.json"
IMAGES_DIR = "images"
SAMPLES_DIR = "samples"
LOCK_FILE = ".harness.lock"

#: what a run writes; a folder holding only these (and no config.toml) is still a run folder.
#: ``samples/`` is not among them: it is exported on request, beside a finished run.
RUN_FILES = frozenset({CONFIG_FILE, ENVIRONMENT_FILE, METRICS_FILE, WEIGHTS_FILE,
                       MODEL_CONFIG_FILE, LOG_FILE, CHECKPOINT_DIR, IMAGES_DIR, LOCK_FILE,
                       PREVIOUS_METRICS_FILE})
#: the results of a finished run: never deleted or overwritten by a restart
RESULT_FILES = (WEIGHTS_FILE, METRICS_FILE)


class RunLayout:
    """The paths of one run directory: ``RunLayout(path).metrics`` is its metrics.json."""

    __slots__ = ("root",)

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunLayout({str(self.root)!r})"

    def __fspath__(self) -> str:
        return str(self.root)

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def environment(self) -> Path:
        return self.root / ENVIRONMENT_FILE

    @property
    def log(self) -> Path:
        return self.root / LOG_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINT_DIR

    @property
    def weights(self) -> Path:
        return self.root / WEIGHTS_FILE

    @property
    def model_config(self) -> Path:
        return self.root / MODEL_CONFIG_FILE

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def previous_metrics(self) -> Path:
        return self.root / PREVIOUS_METRICS_FILE

    @property
    def images(self) -> Path:
        return self.root / IMAGES_DIR

    def image(self, protocol: str) -> Path:
        """The preview grid of ``protocol``."""
        return self.root / IMAGES_DIR / f"{protocol}.png"

    @property
    def samples(self) -> Path:
        return self.root / SAMPLES_DIR

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE


__all__ = [
    "CHECKPOINT_DIR", "CONFIG_FILE", "ENVIRONMENT_FILE", "IMAGES_DIR", "LOCK_FILE", "LOG_FILE",
    "METRICS_FILE", "MODEL_CONFIG_FILE", "PREVIOUS_METRICS_FILE", "RESULT_FILES", "RUN_FILES",
    "RunLayout", "SAMPLES_DIR", "WEIGHTS_FILE",
]
