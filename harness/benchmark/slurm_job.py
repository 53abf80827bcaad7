"""What one Slurm job-array element of ``harness benchmark --executor slurm`` runs.

A module of its own because it imports submitit at the top (its class must be importable
by name where the job unpickles it), and the harness imports submitit only when Slurm is
used. The job runs the same ``benchmark_run.run_one`` a local benchmark runs (one ``harness run``
subprocess, ``--resume`` when the run has a checkpoint), then writes the run's record as JSON
for the waiting ``harness benchmark`` (or ``status``) to read.

A run stopped by a signal (Slurm's SIGTERM at a time limit or preemption; the harness saves
a checkpoint and exits 130) or killed outright writes no record: its job raises, and the
benchmark submits it again, to resume. ``SlurmRun`` is a submitit ``Checkpointable``: when the
time limit nears, submitit requeues the same job, which resumes the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from submitit.helpers import Checkpointable

#: exit codes of a run stopped by a signal: 130 (the harness saved a checkpoint and stopped),
#: 128 + SIGTERM/SIGKILL as a shell reports them; a negative code is Python's "killed by N"
SIGNAL_EXITS = {130, 137, 143}


class RunKilled(RuntimeError):
    """The run was stopped by a signal, not by an error of its own: to be resumed."""


class SlurmRun(Checkpointable):
    """The job's callable: ``SlurmRun()(spec, out, threads, resume)``."""

    def __call__(self, spec: dict[str, Any], out: str, threads: int,
                 resume: bool) -> dict[str, Any]:
        from harness.benchmark.planned_run import RunSpec, result_path, run_one
        from harness.rundir.atomic import atomic_write_text

        record = run_one(RunSpec(**spec), Path(out), threads, resume)
        code = record.get("returncode")
        if record["status"] != "done" and isinstance(code, int) and (
                code < 0 or code in SIGNAL_EXITS):
            raise RunKilled(f"run {spec['id']} stopped by a signal (exit {code}); it resumes "
                            "from its last checkpoint when submitted again")
        path = result_path(Path(out), spec["id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=2, default=str) + "\n")
        return record
