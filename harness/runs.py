"""The run directory: everything a run leaves behind, written atomically.

Layout::

    RUN_DIR/
      config.toml        the resolved configuration (re-runnable with --config)
      environment.json   package versions, git revision, device, number of processes
      log.jsonl          one JSON record per logged training step (written by the trainer)
      checkpoints/       training state for --resume (written by the trainer)
      model.safetensors  final weights; model_config.json beside them
      metrics.json       every value stamped with the protocol that produced it
      metrics.prev.json  the metrics.json a later `harness evaluate` replaced
      images/            PNG grids of reconstructions, random samples, interpolations
      samples/           with --save-samples: the scored images (.npz + PNGs), reference stats

Files are written to a temporary name in the same directory and renamed into place, so an
interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from .atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from .config import RunConfig
from .errors import HarnessError
from .modelfiles import MODEL_CONFIG_FILE, WEIGHTS_FILE, load_weights, save_model

METRICS_SCHEMA = 1
CONFIG_FILE = "config.toml"
ENVIRONMENT_FILE = "environment.json"
METRICS_FILE = "metrics.json"
PREVIOUS_METRICS_FILE = "metrics.prev.json"  # the one an evaluation replaced
SAMPLES_DIR = "samples"  # what was scored, exported by --save-samples / `harness samples`


# -------------------------------------------------------------------------------- environment
def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_revision(path: str | Path | None = None) -> str | None:
    """The git commit of the checkout holding ``path`` (default: this package), if any."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
        if out.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where, capture_output=True, text=True, timeout=5,
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(*, device: str | None = None, num_processes: int = 1,
                mixed_precision: str = "no", plugins: Iterable[Any] = ()) -> dict[str, Any]:
    """Everything needed to tell whether two runs are comparable."""
    import torch

    packages = {
        name: _version(name)
        for name in (
            "vrrae-harness", "torch", "torchvision", "accelerate", "datasets", "pytorch-fid",
            "scikit-learn", "numpy", "scipy", "pytorch-optimizer",
            "safetensors", "pluggy",
        )
    }
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": packages,
        "git_revision": git_revision(),
        "device": device,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "num_processes": num_processes,
        "mixed_precision": mixed_precision,
        "torch_threads": torch.get_num_threads(),
        "plugins": [p.as_dict() for p in plugins],
        "argv": sys.argv,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------------- run dir
def default_run_dir(config: RunConfig, root: str | Path = "runs") -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{config.model}-{config.dataset}-seed{config.seed}-{stamp}"


def prepare_run_dir(path: Path, *, resume: bool) -> Path:
    """Create ``path`` for a new run, or check it holds a run to resume."""
    check_run_dir(path, resume=resume)
    if not resume:
        path.mkdir(parents=True, exist_ok=True)
    return path


def check_run_dir(path: Path, *, resume: bool) -> None:
    """Refuse to start a new run over an old one, or to resume a directory with no run."""
    if resume:
        if not (path / CONFIG_FILE).is_file():
            raise HarnessError(
                f"cannot resume: '{path}' holds no run ({CONFIG_FILE} missing); "
                "pass the --out directory of an earlier `harness run`"
            )
        return
    if path.exists() and (path / CONFIG_FILE).exists():
        raise HarnessError(
            f"run directory '{path}' already holds a run; pass --resume to continue it, "
            "or choose another --out"
        )


def write_config(run_dir: Path, config: RunConfig) -> None:
    header = (
        "# Resolved configuration of this run; re-run it with\n"
        f"#   harness run --config {run_dir / CONFIG_FILE}\n"
    )
    atomic_write_text(run_dir / CONFIG_FILE, header + config.to_toml())


def metrics_document(config: RunConfig, records: list[dict[str, Any]],
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "schema": METRICS_SCHEMA,
        "run": {"model": config.model, "dataset": config.dataset, "seed": config.seed},
        "results": records,
        **(extra or {}),
    }


def write_metrics(run_dir: Path, doc: dict[str, Any]) -> None:
    """Write metrics.json atomically, keeping the one it replaces as metrics.prev.json."""
    path = run_dir / METRICS_FILE
    if path.is_file():
        atomic_write_bytes(run_dir / PREVIOUS_METRICS_FILE, path.read_bytes())
    atomic_write_json(path, doc)


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise HarnessError(f"'{run_dir}' has no {METRICS_FILE}: is it a finished harness run?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise HarnessError(f"'{path}' is not valid JSON: {exc}") from exc


__all__ = [
    "CONFIG_FILE", "ENVIRONMENT_FILE", "METRICS_FILE", "MODEL_CONFIG_FILE", "WEIGHTS_FILE",
    "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "check_run_dir",
    "default_run_dir", "environment", "load_weights", "metrics_document", "prepare_run_dir",
    "read_metrics", "save_model", "write_config", "write_metrics",
]
