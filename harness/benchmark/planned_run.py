"""One planned run of a benchmark: what it is (:class:`RunSpec`), the ``harness run`` command
that trains it, where its record stands, and running it as a local child process.

A module of its own because every executor (the local pool in :mod:`harness.benchmark.suite_runner`, a
Slurm job in :mod:`harness.benchmark.slurm_job`, the waiting side in :mod:`harness.benchmark.executors`) runs and
reads runs the same way, and none of them may import the benchmark that drives them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.benchmark import directory as bdir
from harness.errors import HarnessError
from harness.rundir.contents import RunLock
from harness.training.stopsignal import STOP_SIGNALS

if TYPE_CHECKING:  # the type only: importing the plugin loader here would cost start-up time
    from harness.host.plugins import Host

#: a Slurm job's record of its run (JSON; absent: the job did not finish), under DIR/slurm/
RESULTS_DIR = "results"


@dataclass
class RunSpec:
    id: str
    dataset: str
    model: str
    seed: int
    phase: str  # "sweep" (choosing the swept key's value) or "final"
    value: Any = None  # the swept key's value of this run (None: no sweep)
    sets: list[str] = field(default_factory=list)
    #: export what was scored (RUN_DIR/samples/): the report's sample figures are built
    #: from it, so the first seed's final runs save them
    save_samples: bool = False


def resumes(run_dir: Path, resume: bool) -> bool:
    """Whether the planned run continues ``run_dir`` from its checkpoint (with the settings
    saved there) rather than start it afresh."""
    return resume and (run_dir / "config.toml").is_file() and (
        run_dir / "checkpoints" / "latest").is_file()


def run_command(spec: RunSpec, run_dir: Path, resume: bool) -> list[str]:
    """The ``harness`` argv of one planned run (without the ``harness`` itself): what an
    executor (a local process, a cluster job) runs for it. ``harness run`` restarts a folder
    stopped before its first checkpoint itself, under the run's lock."""
    extra = ["--save-samples"] if spec.save_samples else []
    if resumes(run_dir, resume):
        return ["run", "--resume", "--out", str(run_dir), *extra]
    cmd = ["run", "--model", spec.model, "--dataset", spec.dataset, "--seed", str(spec.seed),
           "--out", str(run_dir), *extra]
    for item in spec.sets:
        cmd += ["--set", item]
    return cmd


#: the exit status of a ``harness run`` stopped by a signal (it saved what it had)
INTERRUPTED_EXIT = 130


class LocalRuns:
    """The ``harness run`` children of this process that still run. A benchmark that is
    interrupted (Ctrl-C, SIGTERM, SIGHUP) stops them with SIGINT, so each saves its checkpoint
    and exits, and launches no more: a signal sent to the benchmark alone (``kill PID``, a
    batch system) would otherwise wait for every queued run to finish."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self.stopping = False

    def launch(self, argv: list[str], log: Path, env: dict[str, str]) -> int:
        with log.open("w") as handle, self._lock:
            if self.stopping:
                return INTERRUPTED_EXIT
            child = subprocess.Popen([sys.executable, "-m", "harness.cli", *argv],
                                     stdout=handle, stderr=subprocess.STDOUT, env=env)
            self._running.add(child)
        try:
            return child.wait()
        finally:
            with self._lock:
                self._running.discard(child)

    def stop(self) -> None:
        """Launch nothing more; ask every running child to stop."""
        with self._lock:
            self.stopping = True
            for child in self._running:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGINT)


def launch_local(argv: list[str], log: Path, threads: int,
                 children: LocalRuns | None = None) -> int:
    """Run ``harness ARGV`` as a child process with its output in ``log``; its exit status.
    torch sizes its thread pool from OMP_NUM_THREADS at start: N runs share the cores."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log.parent.mkdir(parents=True, exist_ok=True)
    return (children or LocalRuns()).launch(argv, log, env)


def run_status(run_dir: Path) -> str:
    """``done`` (results written), ``running`` (no results, its lock held by a live process),
    ``interrupted`` (a config, no results, no live owner) or ``new``."""
    if (run_dir / "metrics.json").is_file():
        return "done"
    if (run_dir / "config.toml").is_file():
        return "running" if RunLock(run_dir).holder() is not None else "interrupted"
    return "new"


def _last_error(log: Path) -> str:
    if not log.is_file():
        return "no output"
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error") or "Error:" in ln]
    return (errors[-1] if errors else (lines[-1] if lines else "no output")).strip()[:500]


def not_the_planned_run(run_dir: Path, planned: Any, host: Host | None,
                        resume: bool = True) -> str | None:
    """Why the run kept in ``run_dir`` cannot stand for the planned run, or None when it can
    (or when nothing there would be kept). A finished run, and an interrupted one that would
    resume, are kept only if their ``config.toml`` is the planned configuration: a resume
    continues with the settings saved there, whatever the plan says now."""
    from harness.configuration import run_config
    from harness.configuration.changes import config_changes

    status = run_status(run_dir)
    finished = status == "done"
    if not finished and not (status == "interrupted" and resumes(run_dir, resume)):
        return None
    try:
        stored = run_config.from_dict(run_config.load_toml(run_dir / "config.toml"), host=host)
    except HarnessError as exc:
        return f"its config.toml cannot be read back ({exc})"
    changes = config_changes(stored, planned)
    if not changes:
        return None
    return (f"it was {'trained' if finished else 'started'} with other settings: "
            + "; ".join(str(c) for c in changes[:4]))


def run_one(spec: RunSpec, out: Path, threads: int, resume: bool,
            planned: Any = None, host: Host | None = None,
            children: LocalRuns | None = None) -> dict[str, Any]:
    """One planned run; returns its record (status, wall time, error). ``children``: the
    executor's :class:`LocalRuns`, which an interruption stops."""
    run_dir = out / bdir.RUNS_DIR / spec.id
    log = out / bdir.RUNS_DIR / f"{spec.id}.log"
    record: dict[str, Any] = {**asdict(spec), "dir": str(run_dir.relative_to(out))}
    busy = RunLock(run_dir).holder()
    if busy is not None:
        return {**record, "status": "failed", "error": f"{run_dir} is in use by PID {busy} "
                "(a harness run still going, e.g. from a killed benchmark): left alone; run "
                "the same command again once it has finished"}
    wrong = not_the_planned_run(run_dir, planned, host, resume) if planned is not None else None
    if wrong:
        return {**record, "status": "failed", "error": f"{run_dir} holds a run that is not "
                f"the planned one: {wrong}; move it aside to train the planned one"}
    if run_status(run_dir) == "done":
        return {**record, "status": "done", "skipped": True}
    cmd = run_command(spec, run_dir, resume)
    start = time.perf_counter()
    code = launch_local(cmd, log, threads, children)
    record.update(wall_s=round(time.perf_counter() - start, 2), returncode=code, command=cmd)
    if code == 0 and run_status(run_dir) == "done":
        return {**record, "status": "done", "skipped": False}
    if code == INTERRUPTED_EXIT or -code in STOP_SIGNALS:  # stopped, not failed on its own
        return {**record, "status": "interrupted", "error": "stopped by a signal; it continues "
                "from its last checkpoint when the benchmark is run again"}
    return {**record, "status": "failed", "error": _last_error(log)}


def result_path(out: Path, run_id: str) -> Path:
    """Where a cluster job writes the record of its run for the waiting benchmark."""
    return out / bdir.SLURM_DIR / RESULTS_DIR / f"{run_id}.json"
