"""Where the runs of ``harness benchmark`` execute: a pool of local processes
(:class:`LocalExecutor`, the default) or a Slurm cluster, one job-array element per run
(:class:`SlurmExecutor`, through submitit).

Why a module of its own: the benchmark plans runs and writes the report; how a run reaches a
CPU is a separate concern with one small interface, ``run(specs, out, resume, on_result)``:
the executor gets each planned run to a finished record (the one ``benchmark_run.run_one``
returns: status, wall time, error) and hands it to ``on_result``; ``on_start`` hears when a
run is started (locally) or handed to the cluster, ``planned`` (run id -> the configuration
the plan resolved) lets a finished run be checked against the plan before it is kept. Both executors run the very
same ``harness run`` command per run, so the records, and the report made from them, are the
same whichever executed them.

On Slurm, a run killed by the cluster (time limit, preemption, node failure, ``scancel``)
leaves no record of its own; it is submitted again and ``harness run --resume`` continues it
from its last checkpoint, up to ``max_requeues`` times. A run that failed for a reason of its
own (its command exited with an error) is listed with its log and not resubmitted while the
benchmark waits; a finished run (``metrics.json``) is never submitted again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness.benchmark import directory as bdir
from harness.benchmark.planned_run import LocalRuns, not_the_planned_run, result_path, run_one
from harness.benchmark.planned_run import run_status as _status
from harness.errors import ConfigError, HarnessError, one_line

if TYPE_CHECKING:  # the type only: importing the plugin loader here would cost start-up time
    from harness.host.plugins import Host

EXECUTORS = ("local", "slurm")
SLURM_DIR = bdir.SLURM_DIR  # submitit's job folders (logs), jobs.json, results/
JOBS_FILE = "jobs.json"
#: squeue states of a job that has not started yet / is running; anything else has ended
QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD",
          "SPECIAL_EXIT", "SUSPENDED", "RESIZING", "REVOKED"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "STOPPED"}

OnResult = Callable[[Any, dict[str, Any]], None]
OnStart = Callable[[Any], None]


def _ignore(spec: Any) -> None:
    """The default ``on_start``: nobody listens."""


class Executor(Protocol):
    """Runs planned runs to finished records (see the module docstring)."""

    name: str

    @property
    def threads(self) -> int:
        """CPU threads of one run (``OMP_NUM_THREADS``)."""
        ...

    @property
    def parallelism(self) -> int:
        """Runs at once (for the ETA of the progress lines)."""
        ...

    def run(self, specs: list[Any], out: Path, resume: bool, on_result: OnResult, *,
            on_start: OnStart = _ignore, planned: dict[str, Any] | None = None,
            host: Host | None = None) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    def summary(self) -> str:
        """How the runs execute, for the benchmark's first line."""
        ...


class Submitted(Exception):  # noqa: N818 - not an error: the jobs were handed to the cluster
    """``--no-wait``: the runs were submitted; the benchmark continues without this process."""

    def __init__(self, out: Path, pending: int) -> None:
        super().__init__(f"{pending} run(s) queued on Slurm for {out}")
        self.out = out
        self.pending = pending


# ---------------------------------------------------------------------------------- local
@dataclass
class LocalExecutor:
    """``jobs`` runs at once on this machine, each with ``cores // jobs`` CPU threads."""

    jobs: int = 1
    name: str = "local"

    @property
    def threads(self) -> int:
        return max(1, (os.cpu_count() or 1) // max(1, self.jobs))

    @property
    def parallelism(self) -> int:
        return max(1, self.jobs)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "jobs": self.jobs}

    def summary(self) -> str:
        return f"{self.jobs} at a time"

    def run(self, specs: list[Any], out: Path, resume: bool, on_result: OnResult, *,
            on_start: OnStart = _ignore, planned: dict[str, Any] | None = None,
            host: Host | None = None) -> None:

        children = LocalRuns()

        def one(spec: Any) -> None:
            on_start(spec)
            on_result(spec, run_one(spec, out, self.threads, resume,
                                    (planned or {}).get(spec.id), host, children))

        pool = ThreadPoolExecutor(max_workers=max(1, self.jobs))
        try:
            for future in [pool.submit(one, spec) for spec in specs]:
                future.result()
        except KeyboardInterrupt:
            # stop the running children (they checkpoint), start no queued run, and wait
            # for their records before the interruption goes on to the command line
            children.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)


# ---------------------------------------------------------------------------------- slurm
@dataclass
class SlurmOptions:
    """What a cluster asks for, per run (one job-array element)."""

    partition: str | None = None
    time: int = 60  # minutes: the job's time limit
    gpus: int = 0
    cpus: int = 1
    mem: str | None = None  # memory per run, sbatch syntax: "8G", "16000M"
    array_parallelism: int = 64  # array elements running at once
    sbatch: list[str] = field(default_factory=list)  # extra options: "--qos=low", "--constraint=a100"
    max_requeues: int = 3  # resubmissions of a run the cluster killed
    poll: float = 10.0  # seconds between squeue calls while waiting
    wait: bool = True  # False: submit and return (`harness benchmark status DIR` follows)

    @classmethod
    def from_table(cls, table: dict[str, Any], where: str) -> SlurmOptions:
        """Options from a ``[slurm]`` table, every key and type checked."""
        known = {f.name: f for f in fields(cls)}
        unknown = set(table) - set(known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid: "
                              f"{', '.join(sorted(known))}")
        opts = cls()
        for key, value in table.items():
            setattr(opts, key, value)
        opts.check(where)
        return opts

    def merged(self, overrides: dict[str, Any], where: str) -> SlurmOptions:
        """A copy with the non-None ``overrides`` (the command line) applied, checked."""
        opts = SlurmOptions(**{**asdict(self), **{k: v for k, v in overrides.items()
                                                   if v is not None and v != ()}})
        opts.sbatch = list(opts.sbatch)
        opts.check(where)
        return opts

    def check(self, where: str) -> None:
        ints = {"time": 1, "gpus": 0, "cpus": 1, "array_parallelism": 1, "max_requeues": 0}
        for key, low in ints.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{where}: slurm {key} must be an integer >= {low}, got "
                                  f"{value!r}")
        if isinstance(self.poll, bool) or not isinstance(self.poll, int | float) or self.poll <= 0:
            raise ConfigError(f"{where}: slurm poll must be a number of seconds > 0")
        for key in ("partition", "mem"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{where}: slurm {key} must be a non-empty string")
        if not isinstance(self.sbatch, list) or not all(
                isinstance(s, str) and s.startswith("--") and len(s) > 2 for s in self.sbatch):
            raise ConfigError(f"{where}: slurm sbatch must be a list of options like "
                              "'--qos=low' (each starting with --)")
        if not isinstance(self.wait, bool):
            raise ConfigError(f"{where}: slurm wait must be true or false")

    def submitit_parameters(self) -> dict[str, Any]:
        """The parameters of ``submitit.SlurmExecutor.update_parameters``."""
        extra: dict[str, Any] = {}
        for option in self.sbatch:
            key, sep, value = option[2:].partition("=")
            extra[key.replace("-", "_")] = value if sep else True
        params: dict[str, Any] = {"time": self.time, "cpus_per_task": self.cpus, "ntasks_per_node": 1,
                                  "array_parallelism": self.array_parallelism,
                                  "additional_parameters": extra}
        if self.partition:
            params["partition"] = self.partition
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        if self.mem:
            params["mem"] = self.mem
        return params


def load_executor_file(path: str | Path) -> tuple[str | None, dict[str, Any]]:
    """``[executor] name = "slurm"`` and a ``[slurm]`` table from a TOML file (a cluster's
    settings, kept apart from the suites)."""
    from harness.configuration.run_config import read_toml

    data = read_toml(Path(path), "--executor-config")
    unknown = set(data) - {"executor", "slurm"}
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {sorted(unknown)}; valid: executor, slurm")
    return executor_tables(data, str(path))


def executor_tables(data: dict[str, Any], where: str) -> tuple[str | None, dict[str, Any]]:
    """The executor name of an ``[executor]`` table (``name = "local" | "slurm"``) and the
    ``[slurm]`` table, both checked."""
    table = data.get("executor", {})
    if not isinstance(table, dict) or set(table) - {"name"}:
        raise ConfigError(f"{where}: [executor] takes one key, name = \"local\" or \"slurm\"")
    name = table.get("name")
    if name is not None and name not in EXECUTORS:
        raise ConfigError(f"{where}: [executor] name must be one of {', '.join(EXECUTORS)}, "
                          f"got {name!r}")
    slurm = data.get("slurm", {})
    if not isinstance(slurm, dict):
        raise ConfigError(f"{where}: [slurm] must be a table")
    SlurmOptions.from_table(slurm, f"{where}: [slurm]")
    return name, dict(slurm)


def check_slurm_available() -> None:
    """submitit installed and ``sbatch``/``squeue`` on PATH, before anything is planned."""
    import shutil

    try:
        import submitit  # noqa: F401
    except ImportError:
        raise HarnessError("--executor slurm needs submitit: pip install "
                           "'vrrae-harness[slurm]' (or pip install submitit)") from None
    missing = [b for b in ("sbatch", "squeue", "scancel") if shutil.which(b) is None]
    if missing:
        raise HarnessError(f"--executor slurm: {', '.join(missing)} not found on PATH; run "
                           "harness benchmark on a Slurm login node (or use --executor local)")


@dataclass
class JobBook:
    """``slurm/jobs.json``: per run id, its current job id and how often it was submitted."""

    path: Path
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, out: Path) -> JobBook:
        path = out / SLURM_DIR / JOBS_FILE
        jobs = json.loads(path.read_text()) if path.is_file() else {}
        return cls(path, jobs)

    def save(self) -> None:
        from harness.rundir.atomic import atomic_write_text

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self.jobs, indent=2, sort_keys=True) + "\n")



def queue_entries(job_ids: list[str]) -> dict[str, tuple[str, str]] | None:
    """``squeue``'s ``(state, reason)`` of each of this user's jobs (array elements one by
    one), for the ``job_ids`` asked; an id it no longer lists has ended. The reason says why
    a job waits (``Priority``, ``ReqNodeNotAvail``: a drained node, ...). None when squeue
    itself failed (controller unreachable): nothing can be concluded, and nothing is
    resubmitted."""
    if not job_ids:
        return {}
    import getpass

    try:
        proc = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T|%r", "-u", getpass.getuser()],
                              capture_output=True, text=True, check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    wanted = set(job_ids)
    entries = {}
    for line in proc.stdout.splitlines():
        job, _, rest = line.strip().partition("|")
        state, _, reason = rest.partition("|")
        if job in wanted:
            entries[job] = (state.strip(), reason.strip())
    return entries


def queue_states(job_ids: list[str]) -> dict[str, str] | None:
    """``squeue``'s state of each job asked (:func:`queue_entries` without the reasons)."""
    entries = queue_entries(job_ids)
    return None if entries is None else {job: state for job, (state, _) in entries.items()}


def _squeue(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """:func:`queue_entries`, or an error saying squeue failed."""
    entries = queue_entries(job_ids)
    if entries is None:
        raise HarnessError("squeue failed: the Slurm controller cannot be reached from here, "
                           "so which runs are still queued or running is unknown; try again")
    return entries


def classify(state: str | None) -> str:
    """``queued``, ``running`` or ``ended`` for a squeue state (None: no longer listed)."""
    if state in QUEUED:
        return "queued"
    if state in RUNNING:
        return "running"
    return "ended"


class SubmissionRefused(HarnessError):
    """sbatch refused a job array (a bad partition, ``--mem lots``, an array above the
    cluster's limit). ``nothing_submitted``: no job of this benchmark directory was ever
    accepted, so what the command wrote can be taken back (:func:`run_suite`)."""

    def __init__(self, message: str, *, nothing_submitted: bool) -> None:
        super().__init__(message)
        self.nothing_submitted = nothing_submitted


@dataclass
class SlurmExecutor:
    """Each run one element of a Slurm job array, submitted through submitit; waits (with a
    progress line whenever the counts change) or, with ``wait = false``, returns at once."""

    options: SlurmOptions = field(default_factory=SlurmOptions)
    name: str = "slurm"
    #: set by run(): the plan's configurations (a finished run is checked against them)
    _planned: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _host: Host | None = field(default=None, init=False, repr=False)

    @property
    def threads(self) -> int:
        return self.options.cpus

    @property
    def parallelism(self) -> int:
        return self.options.array_parallelism

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self.options)}

    def summary(self) -> str:
        return f"as Slurm jobs, up to {self.options.array_parallelism} at a time"

    def run(self, specs: list[Any], out: Path, resume: bool, on_result: OnResult, *,
            on_start: OnStart = _ignore, planned: dict[str, Any] | None = None,
            host: Host | None = None) -> None:

        out = Path(out).resolve()
        self._planned, self._host = planned or {}, host
        book = JobBook.load(out)
        pending: dict[str, Any] = {}
        submit: list[Any] = []
        for spec in specs:
            if _status(out / bdir.RUNS_DIR / spec.id) == "done":
                on_result(spec, self._done_record(spec, out))
                continue
            pending[spec.id] = spec
            on_start(spec)
        live = _squeue([book.jobs[r]["job_id"] for r in pending if r in book.jobs])
        for run_id, spec in pending.items():
            job = book.jobs.get(run_id, {}).get("job_id")
            if not (job and classify(live.get(job, (None,))[0]) != "ended"):
                submit.append(spec)  # not on the cluster: submit (again: a new command)
        self._submit(submit, out, resume, book, fresh=True)
        self._watch(pending, out, resume, book, on_result)

    def _done_record(self, spec: Any, out: Path) -> dict[str, Any]:
        """A finished run's record: the one its job wrote, else the skipped-run record (a
        finished run whose settings are not the planned ones is failed, as locally)."""

        path = result_path(out, spec.id)
        planned = self._planned.get(spec.id)
        if path.is_file():
            rec = json.loads(path.read_text())
            if rec.get("status") == "done" and (
                    planned is None or not_the_planned_run(out / bdir.RUNS_DIR / spec.id,
                                                           planned, self._host) is None):
                return rec
        return run_one(spec, out, self.threads, True, planned, self._host)

    def _submit(self, specs: list[Any], out: Path, resume: bool, book: JobBook,
                fresh: bool) -> None:
        """One job array for ``specs``; ``fresh``: a new command (the count starts over)."""
        if not specs:
            return
        import submitit

        from harness.benchmark.slurm_job import SlurmRun

        for spec in specs:
            result_path(out, spec.id).unlink(missing_ok=True)
        executor = submitit.SlurmExecutor(folder=out / SLURM_DIR / "%j", max_num_timeout=
                                          self.options.max_requeues)
        executor.update_parameters(**self.options.submitit_parameters())
        executor.update_parameters(job_name=f"harness-{out.name}"[:64])
        try:
            jobs = executor.map_array(SlurmRun(), [asdict(s) for s in specs],
                                      [str(out)] * len(specs), [self.threads] * len(specs),
                                      [resume] * len(specs))
        except Exception as exc:  # sbatch refused (partition, limits): its message says why
            raise SubmissionRefused(
                f"sbatch refused the job array: {one_line(exc, 800, with_type=False)}",
                nothing_submitted=not book.jobs) from exc
        for spec, job in zip(specs, jobs, strict=True):
            entry = book.jobs.get(spec.id, {})
            count = 1 if fresh else int(entry.get("submissions", 0)) + 1
            book.jobs[spec.id] = {"job_id": str(job.job_id), "submissions": count,
                                  "log": str(Path(job.paths.stdout).relative_to(out)),
                                  "submitted": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        book.save()
        kind = "job array" if len(jobs) > 1 else "job"
        print(f"[slurm] submitted {len(specs)} run(s): {kind} {jobs[0].job_id.split('_')[0]}",
              file=sys.stderr, flush=True)

    def _watch(self, pending: dict[str, Any], out: Path, resume: bool, book: JobBook,
               on_result: OnResult) -> None:
        """Poll squeue until every pending run has a record; resubmit runs the cluster
        killed. With ``wait = false``, raise :class:`Submitted` instead of waiting."""
        if pending and not self.options.wait:
            raise Submitted(out, len(pending))
        try:
            self._poll(pending, out, resume, book, on_result)
        except KeyboardInterrupt:
            print(f"[slurm] stopped waiting; the jobs go on. See them with: harness benchmark "
                  f"status {out}; the same command again collects them", file=sys.stderr,
                  flush=True)
            raise

    def _poll(self, pending: dict[str, Any], out: Path, resume: bool, book: JobBook,
              on_result: OnResult) -> None:
        last = ""
        while pending:
            states = queue_states([book.jobs[r]["job_id"] for r in pending])
            if states is None:  # squeue failed this time: try again, conclude nothing
                print("[slurm] squeue failed; trying again", file=sys.stderr, flush=True)
                time.sleep(self.options.poll)
                continue
            again = []
            for run_id in list(pending):
                job = book.jobs[run_id]
                if classify(states.get(job["job_id"])) != "ended":
                    continue
                rec = self._ended(pending[run_id], out, job, states.get(job["job_id"]))
                if rec is None:
                    again.append(pending[run_id])
                    continue
                on_result(pending.pop(run_id), rec)
            self._submit(again, out, resume, book, fresh=False)
            line = progress_line(pending, book, states)
            if line != last and pending:
                print(line, file=sys.stderr, flush=True)
                last = line
            if pending:
                time.sleep(self.options.poll)

    def _ended(self, spec: Any, out: Path, job: dict[str, Any],
               state: str | None) -> dict[str, Any] | None:
        """The record of a run whose job ended; None when it is to be submitted again."""

        path = result_path(out, spec.id)
        if path.is_file():
            rec = json.loads(path.read_text())
            if rec.get("status") != "done":
                rec["slurm_log"] = job["log"]
                rec["job_id"] = job["job_id"]
            return rec
        if _status(out / bdir.RUNS_DIR / spec.id) == "done":
            return self._done_record(spec, out)
        if int(job.get("submissions", 1)) <= self.options.max_requeues:
            print(f"[{spec.id}] job {job['job_id']} ended ({state or 'gone from squeue'}) "
                  "before its run finished: resubmitted, it resumes from its last checkpoint",
                  file=sys.stderr, flush=True)
            return None
        return {**asdict(spec), "dir": f"{bdir.RUNS_DIR}/{spec.id}", "status": "failed",
                "job_id": job["job_id"], "slurm_log": job["log"],
                "error": f"killed by Slurm {job['submissions']} time(s) (last job "
                         f"{job['job_id']}: {state or 'ended'}); see {job['log']}"}


def progress_line(pending: dict[str, Any], book: JobBook, states: dict[str, str]) -> str:
    """``[slurm] 2 queued, 1 running, 5 done, 0 failed; running: 12_3 (id), ...``."""
    counts = {"queued": [], "running": []}  # type: dict[str, list[str]]
    for run_id in pending:
        job = book.jobs[run_id]["job_id"]
        kind = classify(states.get(job))
        if kind in counts:
            counts[kind].append(f"{job} ({run_id})")
    ended = [r for r in book.jobs if r not in pending]
    failed = [r for r in ended if _failed(book.path.parent.parent, r)]
    text = (f"[slurm] {len(counts['queued'])} queued, {len(counts['running'])} running, "
            f"{len(ended) - len(failed)} done, {len(failed)} failed")
    if counts["running"]:
        text += "; running: " + ", ".join(counts["running"][:8])
    if counts["queued"]:
        text += "; queued: " + ", ".join(counts["queued"][:4])
    return text


def _failed(out: Path, run_id: str) -> bool:
    path = result_path(out, run_id)
    return path.is_file() and json.loads(path.read_text()).get("status") != "done"


def status_rows(out: str | Path) -> list[dict[str, Any]]:
    """Per planned run of a benchmark directory: status (done / failed / queued / running /
    interrupted / new), job id and log, from its files and, for Slurm jobs, squeue (with
    the reason a queued job waits)."""

    out = Path(out)
    state = bdir.load_state(out)
    book = JobBook.load(out)
    live = _squeue([j["job_id"] for j in book.jobs.values()])
    rows = []
    for spec in state["plan"]:
        run_id = spec["id"]
        rec = state["runs"].get(run_id, {})
        job = book.jobs.get(run_id, {})
        status = _status(out / bdir.RUNS_DIR / run_id)
        if status != "done" and rec.get("status") == "failed":
            status = "failed"
        reason = ""
        if job and status != "done":
            queue_state, reason = live.get(job["job_id"], (None, ""))
            kind = classify(queue_state)
            status = kind if kind != "ended" else (
                "failed" if _failed(out, run_id) else status)
        rows.append({"id": run_id, "status": status, "job_id": job.get("job_id", ""),
                     "submissions": job.get("submissions", 0),
                     "log": job.get("log") or f"{bdir.RUNS_DIR}/{run_id}.log",
                     "reason": reason if status == "queued" and reason not in ("", "None")
                     else "",
                     "error": rec.get("error", "") if status == "failed" else ""})
    return rows


def format_status(rows: list[dict[str, Any]]) -> str:
    """The table ``harness benchmark status`` prints, with a count line; a queued job shows
    why Slurm holds it (``waiting: ReqNodeNotAvail``)."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    lines = [", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    width = max([len(row["id"]) for row in rows] or [0])  # long sweep ids stay in line
    for row in rows:
        job = f"job {row['job_id']}" + (f" (x{row['submissions']})"
                                        if row["submissions"] > 1 else "") if row["job_id"] else ""
        line = f"{row['id']:<{width}} {row['status']:<11} {job:<18} {row['log']}"
        if row.get("reason"):
            line += f" (waiting: {row['reason']})"
        if row["error"]:
            line += f"\n{'':<{width}} {row['error']}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def make_executor(name: str, jobs: int, slurm: SlurmOptions | None) -> Executor:
    if name == "slurm":
        check_slurm_available()
        return SlurmExecutor(slurm or SlurmOptions())
    return LocalExecutor(jobs)


__all__ = ["EXECUTORS", "Executor", "choose_executor", "LocalExecutor", "SlurmExecutor", "SlurmOptions",
           "SubmissionRefused", "Submitted", "format_status", "load_executor_file", "make_executor", "status_rows",
]


def choose_executor(suite_tables: dict[str, Any], name: str | None, config_file: str | None,
                    overrides: dict[str, Any], jobs: int, where: str) -> Executor:
    """The executor of a ``harness benchmark`` command: the command line over the
    ``--executor-config`` file over the suite's ``[executor]``/``[slurm]`` tables; local
    when none names one. Slurm options given without ``--executor slurm`` are an error."""
    suite_name, slurm = executor_tables(suite_tables, where)
    file_name, file_slurm = (load_executor_file(config_file) if config_file else (None, {}))
    chosen = name or file_name or suite_name or "local"
    given = {k: v for k, v in overrides.items() if v is not None and v != ()}
    if chosen != "slurm" and given:
        raise ConfigError(f"--{next(iter(given)).replace('_', '-')} is a Slurm option: add "
                          "--executor slurm (or [executor] name = \"slurm\")")
    if chosen != "slurm":
        return make_executor("local", jobs, None)
    opts = SlurmOptions.from_table({**slurm, **file_slurm}, config_file or where)
    return make_executor("slurm", jobs, opts.merged(given, "the command line"))
