"""The benchmark directory (``harness benchmark --out DIR``), owned like a run directory: one
benchmark at a time holds its lock, a folder holding anything a benchmark does not write is
refused, and ``benchmark.json`` (the plan and the runs' records) is written atomically and
checked, with types, when read back.

Layout::

    DIR/
      .harness.lock   the PID of the benchmark working in it
      benchmark.json  the suite, budget, seeds, --set list, plan, every run's record
      runs/<id>/      one run directory per planned run; runs/<id>.log its output
      report.{md,csv,json,html}, figures/   the report
      slurm/          with --executor slurm: the jobs' folders and logs, jobs.json, results/

Both :mod:`harness.benchmark.suite_runner` and :mod:`harness.benchmark.report` import this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.rundir import contents
from harness.rundir.atomic import atomic_write_text

#: the budgets a benchmark runs at (a suite's ``[budgets.NAME]``, a state's ``budget``)
BUDGETS = ("smoke", "cpu", "paper")
STATE_FILE = "benchmark.json"
RUNS_DIR = "runs"
FIGURES_DIR = "figures"
SLURM_DIR = "slurm"  # harness.benchmark.executors: what the Slurm executor keeps
REPORT_FILES = ("report.md", "report.csv", "report.json", "report.html")
#: where the advice for a damaged ``benchmark.json`` moves it (so the folder stays a
#: benchmark directory after following it)
DAMAGED_STATE_FILE = f"{STATE_FILE}.damaged"
OWNED = frozenset({STATE_FILE, DAMAGED_STATE_FILE, RUNS_DIR, FIGURES_DIR, SLURM_DIR,
                   contents.LOCK_FILE, *REPORT_FILES})


def _is_temp_of_owned(name: str) -> bool:
    """A temporary file the atomic writer leaves when killed mid-write (``.NAME.xxxx.tmp``)."""
    return name.startswith(".") and ".tmp" in name and any(
        name.startswith(f".{owned}.") for owned in OWNED)


def check_folder(out: Path) -> None:
    """Refuse ``out`` unless it is new, empty, or a benchmark directory: a folder holding the
    user's own files (notes, a report of their own) is never written into."""
    if not out.exists():
        return
    if not out.is_dir():
        raise HarnessError(f"--out '{out}' is a file, not a folder; choose another --out")
    entries = sorted(p.name for p in out.iterdir())
    foreign = [e for e in entries if e not in OWNED and not _is_temp_of_owned(e)]
    if foreign:
        shown = ", ".join(repr(e) for e in foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise HarnessError(f"--out '{out}' holds files a benchmark does not write ({shown}): "
                           "nothing there is touched; choose a new or empty folder for --out")
    has_state = any((out / name).exists() for name in (STATE_FILE, DAMAGED_STATE_FILE, RUNS_DIR))
    if entries and not has_state and set(entries) - {contents.LOCK_FILE}:
        raise HarnessError(f"--out '{out}' is not a benchmark directory (it has no "
                           f"{STATE_FILE} and no {RUNS_DIR}/) but is not empty either: its "
                           "files are kept; choose a new or empty folder for --out")


class BenchmarkLock(contents.RunLock):
    """``DIR/.harness.lock``: one ``harness benchmark`` at a time per benchmark directory (the
    run lock's code: a dead owner's lock is taken over)."""

    def acquire(self) -> None:
        try:
            super().acquire()
        except HarnessError as exc:
            pid, _ = self._owner()
            raise HarnessError(
                f"benchmark directory '{self.path.parent}' is in use by PID {pid} (another "
                "harness benchmark); wait for it to finish, or stop it first. "
                f"({exc})") from None


def save_state(out: Path, state: dict[str, Any]) -> None:
    atomic_write_text(out / STATE_FILE, json.dumps(state, indent=2, default=str) + "\n")


RUN_KEYS = ("dataset", "model", "phase", "status")
STATE_SHAPE = {"suite": dict, "budget": str, "seeds": list, "sets": list, "plan": list,
               "runs": dict}


def _damaged(path: Path, why: str) -> HarnessError:
    return HarnessError(
        f"'{path}' is damaged ({why}). The runs under {path.parent / RUNS_DIR} are kept: move "
        f"the file aside (mv '{path}' '{path.parent / DAMAGED_STATE_FILE}') and run the same "
        "harness benchmark command again; its finished runs are checked against the plan and kept")


def load_state(out: Path, *, required: bool = True) -> dict[str, Any]:
    """``benchmark.json`` read and checked: every top-level key with its type, the budget,
    the plan's runs and each run's record a table. A damaged file is refused with the way
    out. The one reader of the file: ``benchmark``, ``benchmark report`` and ``benchmark
    status`` all read it here."""
    path = out / STATE_FILE
    if not path.is_file():
        if required:
            raise HarnessError(f"'{out}' is not a benchmark directory ({STATE_FILE} missing)")
        return {}
    try:
        state = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise _damaged(path, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise _damaged(path, f"not valid JSON: {exc}") from None
    if not isinstance(state, dict):
        raise _damaged(path, f"a JSON {type(state).__name__}, not an object")
    for key, kind in STATE_SHAPE.items():
        if not isinstance(state.get(key), kind):
            raise _damaged(path, f"'{key}' is missing or not a {kind.__name__}")
    if state["budget"] not in BUDGETS or not isinstance(state["suite"].get("name"), str):
        raise _damaged(path, "'budget' or 'suite.name' is not valid")
    if not all(isinstance(spec, dict) and isinstance(spec.get("id"), str)
               for spec in state["plan"]):
        raise _damaged(path, "'plan' is not a list of planned runs (tables with an 'id')")
    for run_id, rec in state["runs"].items():
        if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in RUN_KEYS):
            raise _damaged(path, f"contents.{run_id} is not a run record (needs {', '.join(RUN_KEYS)})")
    return state
