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
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.configuration.run_config import RunConfig
from harness.errors import HarnessError
from harness.rundir.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from harness.rundir.layout import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    ENVIRONMENT_FILE,
    IMAGES_DIR,
    LOCK_FILE,
    LOG_FILE,
    METRICS_FILE,
    MODEL_CONFIG_FILE,
    PREVIOUS_METRICS_FILE,
    RESULT_FILES,
    RUN_FILES,
    SAMPLES_DIR,
    WEIGHTS_FILE,
    RunLayout,
)
from harness.rundir.modelfiles import load_weights, save_model
from harness.rundir.schema import to_json, validate

METRICS_SCHEMA = 1


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
        # the CPU kernel set torch dispatches to (AVX2, AVX512, ...): it changes the rounding
        "cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)(),
        "plugins": [p.as_dict() for p in plugins],
        "argv": sys.argv,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------------- run dir
def path_part(name: str) -> str:
    """A component name as one path component: anything but letters, digits, ``.``, ``_``
    and ``-`` becomes ``_`` (a plugin's ``../../x`` or ``plugin:name`` never leaves the
    folder it names a child of)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".") or "_"


def default_run_dir(config: RunConfig, root: str | Path = "runs") -> Path:
    """``runs/MODEL-DATASET-seedN-TIMESTAMP``, always a child of ``root``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{path_part(config.model)}-{path_part(config.dataset)}-seed{config.seed}-{stamp}"
    return Path(root) / name


@dataclass
class RunDirState:
    """What a would-be run directory holds (read-only inspection)."""

    path: Path
    exists: bool
    has_config: bool
    checkpoint: Path | None  # the newest usable checkpoint
    results: list[str]  # result files present (model.safetensors, metrics.json)
    foreign: list[str]  # entries a run does not write
    harness_entries: list[str]  # entries a run writes
    checkpoint_problem: str | None = None  # why the newest complete checkpoint is unusable

    @property
    def empty(self) -> bool:
        return not self.foreign and not [e for e in self.harness_entries if e != LOCK_FILE]

    @property
    def is_run(self) -> bool:
        return self.has_config or (not self.foreign and not self.empty)

    @property
    def restartable(self) -> bool:
        """A run folder with nothing to lose: no usable checkpoint and no results."""
        return self.is_run and self.checkpoint is None and not self.results


def inspect_run_dir(path: Path, *, quiet: bool = True) -> RunDirState:
    from harness.rundir import checkpoints

    path = Path(path)
    if not path.is_dir():
        return RunDirState(path, path.exists(), False, None, [], [], [])
    entries = sorted(p.name for p in path.iterdir())
    harness_entries = [e for e in entries if e in RUN_FILES or e.startswith(".")
                       and e.endswith(".tmp")]
    foreign = [e for e in entries if e not in harness_entries]
    layout = RunLayout(path)
    checkpoint = checkpoints.latest_checkpoint(layout.checkpoints, quiet=quiet)
    problem = None
    complete = checkpoints.list_checkpoints(layout.checkpoints)
    if checkpoint is None and complete:
        try:
            checkpoints.verify_checkpoint(complete[-1])
        except checkpoints.CheckpointError as exc:
            problem = str(exc)
    results = [f for f in RESULT_FILES if (path / f).exists()]
    return RunDirState(path, True, layout.config.is_file(), checkpoint, results, foreign,
                       harness_entries, problem)


def check_out_path(path: Path) -> None:
    """Refuse an --out that cannot become a directory (a file, or a file or an unwritable
    folder on the way), before anything is loaded or written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HarnessError(f"--out '{path}' is a file, not a directory; choose a folder")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise HarnessError(
            f"--out '{path}' cannot be created: '{probe}' is a file, not a directory"
        )
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        where = "is not writable" if probe == path else f"cannot be created in '{probe}' (not writable)"
        raise HarnessError(f"--out '{path}' {where}; choose another folder")


def prepare_run_dir(path: Path, *, resume: bool) -> Path:
    """Create ``path`` for a new run (a restartable one is cleared, results never), or check
    it holds a run to resume."""
    state = check_run_dir(path, resume=resume)
    if not resume:
        path.mkdir(parents=True, exist_ok=True)
        if state.is_run:  # restartable: nothing trained, nothing to lose
            clear_restartable(path)
    # temporary files of a run killed mid-write (we hold the lock: nobody else writes)
    for tmp in path.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    return path


def clear_restartable(path: Path) -> None:
    """Remove what an unfinished run with no usable checkpoint left (log, environment,
    checkpoint debris), so a fresh run starts over cleanly. Results are never removed."""
    for name in (LOG_FILE, ENVIRONMENT_FILE, IMAGES_DIR, CHECKPOINT_DIR):
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists() or target.is_symlink():
            target.unlink(missing_ok=True)
    for tmp in path.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def check_run_dir(path: Path, *, resume: bool) -> RunDirState:
    """Refuse to start a new run over an old one or over a folder of other files, or to
    resume a directory with nothing to resume. Read-only. The messages never send the user
    in a circle: a folder with no usable checkpoint and no results is restartable."""
    state = inspect_run_dir(path)
    if resume:
        if not state.exists or state.empty:
            raise HarnessError(
                f"cannot resume: '{path}' holds no run; start one with `harness run` without "
                "--resume"
            )
        if not state.is_run:
            raise HarnessError(
                f"cannot resume: '{path}' is not a harness run directory ({CONFIG_FILE} "
                f"missing; it holds {_names(state.foreign)}); pass the --out of an earlier run"
            )
        if state.checkpoint is None:
            why = f" ({state.checkpoint_problem})" if state.checkpoint_problem else ""
            if state.results:
                raise HarnessError(
                    f"cannot resume: '{path}' holds a finished run ({_names(state.results)}) but "
                    f"no usable checkpoint to continue from{why}; re-evaluate it with `harness "
                    f"evaluate {path}`, or train again with another --out"
                )
            if why:
                raise HarnessError(
                    f"nothing to resume in '{path}': no usable checkpoint{why}. Run the same "
                    "command without --resume: a run folder with no usable checkpoint and no "
                    "results starts over"
                )
            raise HarnessError(
                f"nothing to resume in '{path}': it stopped before its first checkpoint. Run "
                "the same command without --resume: a run folder with no checkpoint starts over"
            )
        return state
    if not state.exists or state.empty:
        return state
    if not state.is_run:
        raise HarnessError(
            f"--out '{path}' is not empty and is not a harness run directory (it holds "
            f"{_names(state.foreign)}); nothing was written. Choose a new or empty folder"
        )
    if not state.restartable:
        if state.checkpoint is None:  # finished, and nothing to resume from
            raise HarnessError(
                f"run directory '{path}' already holds a finished run ({_names(state.results)}); "
                f"re-evaluate it with `harness evaluate {path}`, or choose another --out"
            )
        raise HarnessError(
            f"run directory '{path}' already holds a run with a checkpoint "
            f"({state.checkpoint.name}); continue it with --resume (same command, --resume "
            "appended), or choose another --out"
        )
    return state


def _names(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# ------------------------------------------------------------------------------------- lock
class RunLock:
    """``RUN_DIR/.harness.lock``: one command at a time per run directory.

    The file holds the owner's PID and host. A lock whose PID is dead (on this host) is stale,
    left by a killed run, and is taken over. Use as a context manager."""

    def __init__(self, run_dir: Path) -> None:
        self.path = RunLayout(run_dir).lock
        self.held = False

    def _owner(self) -> tuple[int | None, str]:
        try:
            pid_text, _, host = self.path.read_text().partition("@")
            return int(pid_text.strip()), host.strip()
        except (OSError, ValueError, UnicodeDecodeError):
            return None, ""

    def holder(self) -> int | None:
        """The PID of a live owner (another process), None when free or stale: a run in
        progress, told from one that was killed; such a folder is never deleted nor
        restarted."""
        pid, host = self._owner()
        return pid if pid is not None and _alive(pid, host) else None

    def acquire(self) -> None:
        me = f"{os.getpid()}@{platform.node()}"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, host = self._owner()
                if pid is not None and _alive(pid, host):
                    raise HarnessError(
                        f"run directory '{self.path.parent}' is in use by PID {pid}"
                        f"{' on ' + host if host and host != platform.node() else ''} (another "
                        f"harness command); wait for it to finish, or delete {self.path} if "
                        "that process is gone"
                    ) from None
                # stale (dead PID, or unreadable): take it over
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(me + "\n")
            self.held = True
            return
        raise HarnessError(f"could not lock '{self.path.parent}': {self.path} keeps reappearing")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(pid: int, host: str) -> bool:
    if host and host != platform.node():
        return True  # another machine's process: cannot tell, assume it runs
    if pid == os.getpid():
        return False  # our own leftover
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def write_config(run_dir: Path, config: RunConfig, notes: Iterable[str] = ()) -> None:
    """Write ``config.toml`` atomically; ``notes`` become comment lines (e.g. the settings a
    resume changed)."""
    header = (
        "# Resolved configuration of this run; re-run it with\n"
        f"#   harness run --config {RunLayout(run_dir).config}\n"
    )
    header += "".join(f"# {' '.join(note.split())}\n" for note in notes)
    atomic_write_text(RunLayout(run_dir).config, header + config.to_toml())


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
    layout = RunLayout(run_dir)
    path = layout.metrics
    doc, _ = to_json(doc, strict=False)  # valid JSON whatever a component returned: no NaN
    validate(doc, "metrics_file", where=str(path), writing=True)
    if path.is_file():
        atomic_write_bytes(layout.previous_metrics, path.read_bytes())
    atomic_write_json(path, doc)


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    path = RunLayout(run_dir).metrics
    if not path.is_file():
        raise HarnessError(f"'{run_dir}' has no {METRICS_FILE}: is it a finished harness run?")
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise HarnessError(f"'{path}' is not valid JSON ({exc}); re-create it with "
                           f"`harness evaluate {run_dir}`") from exc
    except OSError as exc:
        raise HarnessError(f"'{path}' cannot be read: {exc.strerror or exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list) \
            or not isinstance(doc.get("run"), dict):
        raise HarnessError(f"'{path}' is not a harness metrics document (it needs 'run' and "
                           f"'results'); re-create it with `harness evaluate {run_dir}`")
    return doc


def previous_training(run_dir: str | Path) -> dict[str, Any]:
    """The ``training`` record of the run's ``metrics.json`` that an evaluation replaces
    (``{}`` when there is none). A damaged or foreign file is no reason to refuse: the
    evaluation rewrites it (the advice for such a file is `harness evaluate`), keeping it as
    ``metrics.prev.json``; a warning names it."""
    if not RunLayout(run_dir).metrics.is_file():
        return {}
    try:
        training = read_metrics(run_dir).get("training")
    except HarnessError:
        print(f"harness: warning: '{RunLayout(run_dir).metrics}' is damaged or not a harness "
              f"metrics document: it is replaced (kept as {PREVIOUS_METRICS_FILE}); its "
              "training record is lost", file=sys.stderr)
        return {}
    return training if isinstance(training, dict) else {}


__all__ = [
    "CHECKPOINT_DIR", "CONFIG_FILE", "ENVIRONMENT_FILE", "IMAGES_DIR", "LOCK_FILE", "LOG_FILE",
    "METRICS_FILE", "MODEL_CONFIG_FILE", "PREVIOUS_METRICS_FILE", "RESULT_FILES", "RUN_FILES",
    "RunLayout", "SAMPLES_DIR", "WEIGHTS_FILE",
    "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "check_run_dir",
    "default_run_dir", "environment", "load_weights", "metrics_document", "prepare_run_dir",
    "previous_training", "read_metrics", "repair_log", "save_model", "write_config", "write_metrics",
]


def repair_log(path: Path) -> int:
    """Drop lines of ``log.jsonl`` that are not JSON records (a damaged or half-written
    log), so resuming can cut it back to the checkpoint's step. Returns the lines dropped."""
    if not path.is_file():
        return 0
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict) and isinstance(record.get("step", 0), int) \
                and not isinstance(record.get("step", 0), bool):
            kept.append(line)
    dropped = len(lines) - len(kept)
    if dropped:
        atomic_write_text(path, "".join(k + "\n" for k in kept))
        print(f"harness: warning: dropped {dropped} damaged line(s) from {path}", file=sys.stderr)
    return dropped


