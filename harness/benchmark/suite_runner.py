"""``harness benchmark``: a suite of runs (models × datasets × seeds, with an optional sweep of
one key), run as isolated ``harness run`` subprocesses, resumable and parallel, then one
report. Suites are described in :mod:`harness.benchmark.suite`, the directory it owns in
:mod:`harness.benchmark.directory`.

Every run takes its model's **preset** for the dataset as its lowest configuration layer, then
the suite's ``set``, ``model_set``, the budget's ``set`` and the command line's ``--set``.

**Sweeps.** For a model in a sweep's ``models`` (each ``[[sweep]]`` of the suite sweeps its own
key for its own models) with more than one value, one sweep run per value
(seed = the first seed, with the sweep's own ``set``, e.g. ``data.validation=0.1`` so the test
split is never read) is trained and scored; the value with the lowest (``rule = "highest"``:
highest) ``sweep.select`` wins, ``sweep.fallback`` deciding when that metric has no value.
The final runs (every seed) then use it. A single value is simply set on the final runs.

**Before anything runs**, every planned run's configuration is resolved and checked as
``harness run`` checks it (keys, types, the model built, the training options against the
data): a bad suite or ``--set`` is one ``Error:`` line, exit 2, and nothing is written.

**Layout** of ``--out DIR``: see :mod:`harness.benchmark.directory`. A run with a ``metrics.json``
is finished and skipped (after checking its ``config.toml`` is the planned one); one with a
``config.toml`` only was interrupted and is resumed (``harness run --resume``) or restarted
by ``harness run`` itself; a run folder another process holds is left alone. A failed run
is listed with its error, the suite goes on, and the command ends with exit status 1.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.benchmark import directory as bdir
from harness.benchmark import suite as bsuite
from harness.benchmark.executors import LocalExecutor, SubmissionRefused
from harness.benchmark.planned_run import RunSpec, not_the_planned_run, run_command
from harness.benchmark.report import final_rows, side_by_side_text, write_report
from harness.benchmark.suite import BUDGETS, Suite, check_name, check_seeds
from harness.errors import ConfigError, HarnessError, one_line
from harness.evaluation.text_table import to_text
from harness.host.plugins import Host, host_or_default

__all__ = ["BUDGETS", "RunSpec", "Suite", "load_suite", "list_suites", "plan", "run_suite",
           "run_command"]

STATE_FILE = bdir.STATE_FILE
#: memory one run is assumed to need when bounding --jobs (RSS of a small CPU run)
RUN_MEMORY_GB = 2.0


def load_suite(name: str, host: Host | None = None) -> Suite:
    return bsuite.load_suite(name, host_or_default(host))


def list_suites(host: Host | None = None) -> list[dict[str, str]]:
    return bsuite.list_suites(host_or_default(host))


def suite_overview(name: str, host: Host | None = None) -> dict[str, Any]:
    """What ``harness benchmark --list`` says of one suite beyond its description: its
    models, datasets and seeds, and per budget how many runs it plans (sweep + final) and
    its note (where a suite says what a budget costs). A suite that cannot be read says why
    instead of hiding the others."""
    try:
        suite = bsuite.load_suite(name, host_or_default(host))
    except HarnessError as exc:
        return {"error": str(exc)}
    seeds = list(range(suite.seeds))
    budgets = []
    for budget in BUDGETS:
        specs = plan(suite, budget, seeds, [])
        n_sweep = sum(s.phase == "sweep" for s in specs)
        budgets.append({"budget": budget, "runs": len(specs), "sweep": n_sweep,
                        "note": str((suite.budgets.get(budget) or {}).get("note", ""))})
    return {"models": list(suite.models), "datasets": list(suite.datasets),
            "seeds": suite.seeds, "budgets": budgets}


# ---------------------------------------------------------------------------------- plan
def value_tag(value: Any) -> str:
    """A run id's part for a swept value: short (``1e-06``) when that names the value
    exactly, else its full ``repr`` (two values differing past 6 digits get two ids)."""
    if isinstance(value, float) and float(f"{value:g}") == value:
        text = f"{value:g}"
    else:
        text = repr(value) if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "_", text)


def normalise_sets(sets: list[str]) -> list[str]:
    """``--set`` items with one entry per key (the last one wins, as in ``harness run``),
    spaces around ``=`` dropped: the same overrides given twice are the same overrides."""
    by_key: dict[str, str] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        by_key.pop(key.strip(), None)
        by_key[key.strip()] = value.strip()
    return [f"{k}={v}" for k, v in by_key.items()]


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def apply_cli_sets(suite: Suite, sets: list[str]) -> tuple[Suite, list[str]]:
    """``models+=NAME`` / ``datasets+=NAME`` / ``models=A,B`` / ``seeds=N`` change the suite
    (checked like the suite's own keys); the rest are run overrides (``section.key=value``)."""
    rest = []
    for item in sets:
        key, sep, value = (p.strip() for p in item.partition("="))
        if key.endswith("+") and key[:-1] in ("models", "datasets"):
            getattr(suite, key[:-1]).extend(_names(value))
        elif key in ("models", "datasets") and sep:
            setattr(suite, key, _names(value))
        elif key == "seeds" and sep:
            if not value.isdigit():
                raise ConfigError(f"--set seeds=N needs a whole number, got {value!r}")
            suite.seeds = check_seeds(int(value), "--set seeds")
        else:
            rest.append(item)
    for key in ("models", "datasets"):
        names = getattr(suite, key)
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"the suite's {key} after --set are {names}: they must be a "
                              "non-empty list without repeats")
        for name in names:
            check_name(name, key[:-1])
    return suite, normalise_sets(rest)


def _base_sets(suite: Suite, budget: str) -> list[str]:
    base = list(suite.set)
    if suite.protocols:
        base.append("eval.protocols=" + json.dumps(suite.protocols))
    if suite.metrics:
        base.append("eval.metrics=" + json.dumps(suite.metrics))
    return base + list(suite.budgets.get(budget, {}).get("set", []))


def _assignment(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value) if isinstance(value, str | bool) else repr(value)}"


def plan(suite: Suite, budget: str, seeds: list[int], extra_sets: list[str]) -> list[RunSpec]:
    """Every run of the suite; the final runs of swept models get their value once chosen."""
    if budget not in BUDGETS:
        raise ConfigError(f"--budget must be one of {', '.join(BUDGETS)}, got '{budget}'")
    if not seeds:
        raise ConfigError("a benchmark needs at least one seed (--seeds N, N >= 1)")
    base, specs = _base_sets(suite, budget), []
    for dataset in suite.datasets:
        for model in suite.models:
            sets = base + list(suite.model_set.get(model, [])) + list(extra_sets)
            sweep, values = suite.sweep_for(model), suite.sweep_values(model, dataset)
            if len(values) > 1:
                assert sweep is not None
                for value in values:
                    specs.append(RunSpec(
                        f"sweep-{dataset}-{model}-{sweep.short}{value_tag(value)}", dataset,
                        model, seeds[0], "sweep", value,
                        sets + [_assignment(sweep.key, value), *sweep.set]))
            final = values[0] if len(values) == 1 else None
            for seed in seeds:
                extra = [_assignment(sweep.key, final)] if sweep and final is not None else []
                specs.append(RunSpec(f"{dataset}-{model}-seed{seed}", dataset, model, seed,
                                     "final", final, sets + extra, seed == seeds[0]))
    ids = [s.id for s in specs]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"suite '{suite.source}': two planned runs would share the folder "
                          f"{twice[0]} (sweep values that name the same folder?)")
    return specs


# ------------------------------------------------------------------------ checks up front
def _resolve(host: Host, spec: RunSpec, sets: list[str]) -> Any:
    from harness.run.build import resolve_config

    return resolve_config(model=spec.model, dataset=spec.dataset, config_file=None,
                                 sets=sets, seed=spec.seed, host=host)


def _planned_config(host: Host, spec: RunSpec, suite: Suite) -> Any:
    sets = list(spec.sets)
    sweep, values = suite.sweep_for(spec.model), suite.sweep_values(spec.model, spec.dataset)
    if spec.phase == "final" and len(values) > 1 and sweep is not None:
        sets.append(_assignment(sweep.key, values[0]))  # checked with a swept value
    return _resolve(host, spec, sets)


def check_plan(host: Host, suite: Suite, specs: list[RunSpec]) -> dict[str, Any]:
    """Resolve every planned run's configuration as ``harness run`` does (unknown keys, bad
    types, a model's own checks): one ``Error:`` naming the run and the suite before any run
    starts. Returns run id -> its configuration."""
    configs: dict[str, Any] = {}
    for spec in specs:
        try:
            configs[spec.id] = _planned_config(host, spec, suite)
        except HarnessError as exc:
            raise ConfigError(f"suite '{suite.source}': run '{spec.id}' ({spec.model} on "
                              f"{spec.dataset}) would be refused by harness run: {exc}. "
                              "Fix the suite or the --set; nothing was run") from None
    return configs


def check_buildable(host: Host, specs: list[RunSpec], configs: dict[str, Any],
                    unavailable: dict[str, str]) -> None:
    """Build each distinct planned model once on its data and check its training options
    against it (batch size vs. training set, optimizer): what ``harness run`` checks before
    training, here before the first run starts. No training."""
    from harness.run.build import build_model, load_data
    from harness.run.preflight import check_eval_sizes, check_optimizer, check_splits
    from harness.training.plan import plan_training

    seen: set[str] = set()
    splits_by: dict[str, Any] = {}
    for spec in specs:
        config = configs[spec.id]
        key = repr((config.as_dict()["model"], config.as_dict()["data"], config.model,
                    config.dataset, config.as_dict()["train"]))
        if spec.dataset in unavailable or key in seen:
            continue
        seen.add(key)
        try:
            data_key = repr((config.dataset, config.as_dict()["data"]))
            if data_key not in splits_by:
                splits_by[data_key] = load_data(host, config)
            splits = splits_by[data_key]
            n_train = check_splits(splits, config.dataset)
            model = build_model(host, config, splits.info)
            plan_training(config.train, n_train, 1, model)
            check_eval_sizes(host, config.eval, splits)
            check_optimizer(model, config.train)
        except HarnessError as exc:
            raise ConfigError(f"run '{spec.id}' ({spec.model} on {spec.dataset}) would be "
                              f"refused by harness run: {exc}; nothing was run") from None


def probe_datasets(host: Host, specs: list[RunSpec]) -> dict[str, str]:
    """The datasets of ``specs`` that cannot be loaded here, each with its loader's message
    (what is missing and where it was looked for). Each is loaded once with the
    configuration of its first run (presets, ``data.*`` settings); this also fills the
    dataset's decode cache for the runs. A run whose configuration is wrong is not a missing
    dataset (the plan check names it)."""
    from harness.run.build import load_data, resolve_config

    missing: dict[str, str] = {}
    for dataset in dict.fromkeys(s.dataset for s in specs):
        spec = next(s for s in specs if s.dataset == dataset)
        try:
            config = resolve_config(model=spec.model, dataset=dataset, config_file=None,
                                           sets=spec.sets, seed=spec.seed, host=host)
        except HarnessError:
            continue
        try:
            load_data(host, config)
        except Exception as exc:  # a dataset that cannot load is reported, never fatal alone
            missing[dataset] = str(exc) if isinstance(exc, HarnessError) else one_line(exc)
    return missing


def max_jobs() -> int:
    """The most runs at once: one per core, and no more than memory holds at
    :data:`RUN_MEMORY_GB` each; ``HARNESS_MAX_JOBS=N`` sets it deliberately."""
    forced = os.environ.get("HARNESS_MAX_JOBS", "")
    if forced.isdigit() and int(forced) >= 1:
        return int(forced)
    cores = os.cpu_count() or 1
    try:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        memory_gb = RUN_MEMORY_GB * cores
    return max(1, min(cores, int(memory_gb // RUN_MEMORY_GB)))


def check_jobs(jobs: Any) -> int:
    limit = max_jobs()
    if not isinstance(jobs, int) or isinstance(jobs, bool) or not 1 <= jobs <= limit:
        raise ConfigError(f"--jobs must be from 1 to {limit} here (one run per core, about "
                          f"{RUN_MEMORY_GB:g} GB of memory each; {os.cpu_count()} cores), got "
                          f"{jobs!r}; to allow more deliberately, set HARNESS_MAX_JOBS=N")
    return jobs


class Progress:
    """``k/N done, M running, ETA`` lines on stderr, a failure as soon as it happens."""

    def __init__(self, total: int, stream: Any = None) -> None:
        self.total, self.done, self.running, self.failed = total, 0, 0, 0
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        # the runs with a wall time: those that trained now, and the finished ones skipped
        # with the time recorded when they trained (a resumed benchmark's ETA from the start)
        self.timed_s, self.timed = 0.0, 0
        self.lock = threading.Lock()

    def started(self) -> None:
        with self.lock:
            self.running += 1

    def eta(self, jobs: int) -> str:
        left = self.total - self.done
        if not self.timed or not left:
            return "ETA unknown" if left else "ETA 0 s"
        seconds = self.timed_s / self.timed * math.ceil(left / max(1, jobs))
        return "ETA " + (f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s")

    def finished(self, spec_id: str, rec: dict[str, Any], jobs: int) -> str:
        with self.lock:
            self.running -= 1
            self.done += 1
            if "wall_s" in rec:
                self.timed += 1
                self.timed_s += float(rec["wall_s"])
            self.failed += rec["status"] == "failed"
            what = ("skipped (done)" if rec.get("skipped") else rec["status"]) + (
                f": {rec.get('error')}" if rec["status"] == "failed" else "")
            line = (f"[{self.done}/{self.total} done, {self.running} running, "
                    f"{self.failed} failed, {self.eta(jobs)}] {spec_id} {what}")
            print(line, file=self.stream, flush=True)
            return line


def _run_all(specs: list[RunSpec], out: Path, executor: Any, resume: bool,
             state: dict[str, Any], progress: Progress, configs: dict[str, Any],
             host: Host) -> None:
    """Every run of ``specs`` through ``executor`` (:mod:`harness.benchmark.executors`: the local pool
    or Slurm); each record goes into ``state`` and a progress line as it arrives."""
    state["threads_per_run"] = executor.threads
    save = threading.Lock()
    begun: set[str] = set()

    def start(spec: RunSpec) -> None:
        with save:
            if spec.id in begun:
                return
            begun.add(spec.id)
        progress.started()

    def one(spec: RunSpec, rec: dict[str, Any]) -> None:
        start(spec)  # a record the executor had without starting the run (a finished one)
        with save:
            previous = state["runs"].get(spec.id, {})
            if rec.get("skipped") and "wall_s" in previous:
                rec["wall_s"] = previous["wall_s"]
            state["runs"][spec.id] = rec
            bdir.save_state(out, state)
        progress.finished(spec.id, rec, executor.parallelism)

    executor.run(specs, out, resume, one, on_start=start, planned=configs, host=host)


# ------------------------------------------------------------------------------ selection
def metric_value(run_dir: Path, key: str) -> float | None:
    """``protocol/metric`` from a run's metrics.json (None when absent or not computed)."""
    path = run_dir / "metrics.json"
    try:
        results = json.loads(path.read_text()).get("results", [])
    except (OSError, ValueError, AttributeError):
        return None
    protocol, _, metric = key.partition("/")
    for rec in results if isinstance(results, list) else []:
        value = rec.get("value") if isinstance(rec, dict) else None
        if rec.get("protocol") == protocol and rec.get("metric") == metric and isinstance(
                value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def choose_value(suite: Suite, specs: list[RunSpec], out: Path, dataset: str,
                 model: str) -> dict[str, Any]:
    """The swept value with the best ``select`` (else ``fallback``) over the sweep runs."""
    sweep = suite.sweep_for(model)
    assert sweep is not None
    runs_ = [s for s in specs if s.phase == "sweep" and s.dataset == dataset and s.model == model]
    sign = 1 if sweep.rule == "lowest" else -1
    where = f" with {', '.join(sweep.set)}" if sweep.set else ""
    for rule in dict.fromkeys([sweep.select, sweep.fallback]):
        values = {json.dumps(s.value): metric_value(out / bdir.RUNS_DIR / s.id, rule)
                  for s in runs_}
        scored = {v: x for v, x in values.items() if x is not None}
        if scored:
            chosen = min(scored, key=lambda v: (sign * scored[v], v))
            return {"dataset": dataset, "model": model, "key": sweep.key, "metric": rule,
                    "rule": f"{sweep.rule} {rule} over the sweep runs{where}",
                    "values": values, "chosen": json.loads(chosen)}
    return {"dataset": dataset, "model": model, "key": sweep.key, "values": {},
            "rule": f"no sweep run produced {' or '.join(dict.fromkeys([sweep.select, sweep.fallback]))}",
            "chosen": None}


def _finals_after_sweep(suite: Suite, specs: list[RunSpec], out: Path,
                        state: dict[str, Any]) -> list[RunSpec]:
    """Choose each swept model's value; its final runs get it (or fail, saying why)."""
    second = []
    state["sweep_selection"] = []
    for dataset in suite.datasets:
        for model in suite.models:
            if len(suite.sweep_values(model, dataset)) < 2:
                continue
            choice = choose_value(suite, specs, out, dataset, model)
            state["sweep_selection"].append(choice)
            for s in specs:
                if s.phase != "final" or s.dataset != dataset or s.model != model:
                    continue
                if choice["chosen"] is None:
                    state["runs"][s.id] = {**asdict(s), "status": "failed",
                                           "error": "no value chosen: " + choice["rule"]}
                    continue
                s.value = choice["chosen"]
                s.sets = s.sets + [_assignment(choice["key"], s.value)]
                second.append(s)
    return second


# -------------------------------------------------------------------------------- suites
def _check_same_benchmark(out: Path, previous: dict[str, Any], suite: Suite,
                          budget: str) -> None:
    """A folder holds one suite at one budget: another one is refused up front."""
    if previous and (previous["suite"].get("name") != suite.name
                     or previous.get("budget") != budget):
        raise HarnessError(f"'{out}' holds benchmark '{previous['suite'].get('name')}' at budget "
                           f"'{previous.get('budget')}'; choose another --out")


def _check_kept_runs(out: Path, specs: list[RunSpec], configs: dict[str, Any], resume: bool,
                     host: Host) -> None:
    """Refuse, before any run starts, a folder whose finished (or resumable) runs were trained
    with other settings than this command plans for them: an edited suite, another budget
    table, another ``--set``. The rule is per run, so a change that leaves a run's
    configuration alone (another dataset's budget, say) continues the folder. A swept model's
    final runs are checked once their value is chosen."""
    swept = {(s.dataset, s.model) for s in specs if s.phase == "sweep"}
    wrong = [f"{s.id} ({why})" for s in specs
             if not (s.phase == "final" and (s.dataset, s.model) in swept)
             and (why := not_the_planned_run(out / bdir.RUNS_DIR / s.id, configs[s.id], host,
                                             resume))]
    if wrong:
        shown = "; ".join(wrong[:3]) + (f"; and {len(wrong) - 3} more" if len(wrong) > 3 else "")
        raise HarnessError(
            f"'{out}' holds {len(wrong)} run(s) made with other settings than this command "
            f"plans: {shown}. Choose another --out, or give the suite file and --set list the "
            f"folder was run with (its benchmark.json records both) to continue it")


def _suite_record(suite: Suite) -> dict[str, Any]:
    """The suite as benchmark.json records it, in its TOML spelling (``sweep``: the list of
    ``[[sweep]]`` tables), so that ``Suite.from_dict`` reads it back."""
    record = json.loads(json.dumps(asdict(suite), default=str))
    record["sweep"] = record.pop("sweeps")
    return record


def prepare(suite: Suite, *, budget: str, seeds: int | None, sets: list[str],
            host: Host) -> tuple[Suite, list[str], list[int], list[RunSpec], dict[str, Any],
                                dict[str, str]]:
    """Everything checked before the first write: the suite after ``--set``, the plan, every
    planned configuration, the datasets available here, the models buildable."""
    suite, run_sets = apply_cli_sets(suite, list(sets))
    suite = suite.with_current_names(host)
    for model in suite.models:
        host.get("model", model)  # unknown names fail before anything runs
    for dataset in suite.datasets:
        host.get("dataset", dataset)
    seed_list = suite.seeds_list(seeds)
    specs = plan(suite, budget, seed_list, run_sets)
    configs = check_plan(host, suite, specs)
    unavailable = probe_datasets(host, specs)
    if len(unavailable) == len(suite.datasets):
        raise HarnessError("none of the suite's datasets is available here ("
                           + "; ".join(f"{d}: {w.splitlines()[0]}" for d, w in
                                       unavailable.items())
                           + "); put one in place or pick others with --set datasets=NAME")
    check_buildable(host, specs, configs, unavailable)
    for dataset, why in unavailable.items():
        print(f"warning: dataset '{dataset}' is not available here; its runs are skipped "
              f"and the report says so. {why}", file=sys.stderr, flush=True)
    suite.datasets = [d for d in suite.datasets if d not in unavailable]
    specs = [s for s in specs if s.dataset not in unavailable]
    return suite, run_sets, seed_list, specs, configs, unavailable


def run_suite(suite: Suite, out: str | Path, *, budget: str = "smoke", seeds: int | None = None,
              jobs: int = 1, sets: list[str] | None = None, resume: bool = True,
              host: Host | None = None, executor: Any = None) -> dict[str, Any]:
    """Run (or resume) every run of ``suite`` into ``out`` through ``executor`` (default: the
    local pool of ``jobs`` processes) and write the report; returns the final state
    (``failed``: the ids of the runs that failed). An executor that only submits (Slurm with
    ``wait = false``) raises :class:`harness.benchmark.executors.Submitted` instead."""
    out, host = Path(out), host_or_default(host)
    check_jobs(jobs)
    executor = executor or LocalExecutor(jobs)
    bdir.check_folder(out)
    previous = bdir.load_state(out, required=False)
    suite, run_sets, seed_list, specs, configs, unavailable = prepare(
        suite, budget=budget, seeds=seeds, sets=list(sets or []), host=host)
    _check_same_benchmark(out, previous, suite, budget)
    _check_kept_runs(out, specs, configs, resume, host)
    written_before = {p.name for p in out.iterdir()} if out.is_dir() else None
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _run_locked(suite, out, budget, jobs, run_sets, seed_list, specs, configs,
                           unavailable, resume, host, executor)
    except SubmissionRefused as exc:
        if exc.nothing_submitted:
            _take_back(out, written_before)
        raise


def _take_back(out: Path, written_before: set[str] | None) -> None:
    """Remove what this command wrote into ``out`` (``written_before``: the names that were
    there; None: the folder did not exist): a refused submission leaves nothing behind."""
    import shutil

    for path in out.iterdir():
        if written_before is None or path.name not in written_before:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    if written_before is None:
        with contextlib.suppress(OSError):
            out.rmdir()


def _run_locked(suite: Suite, out: Path, budget: str, jobs: int, run_sets: list[str],
                seed_list: list[int], specs: list[RunSpec], configs: dict[str, Any],
                unavailable: dict[str, str], resume: bool, host: Host,
                executor: Any) -> dict[str, Any]:
    """:func:`run_suite` once the plan is checked: under the folder's lock."""
    with bdir.BenchmarkLock(out):
        previous = bdir.load_state(out, required=False)  # re-read under the lock
        state: dict[str, Any] = {
            "suite": _suite_record(suite), "budget": budget, "seeds": seed_list, "jobs": jobs,
            "sets": run_sets, "machine": machine(), "runs": previous.get("runs", {}),
            "sweep_selection": [], "unavailable": unavailable,
            "executor": executor.describe(),
            "started": previous.get("started") or time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                time.gmtime()),
            # every run's model, dataset, seed and --set list (a swept model's final runs get
            # their value once it is chosen): what an executor needs per run
            "plan": [asdict(s) for s in specs],
        }
        bdir.save_state(out, state)
        n_sweep = sum(s.phase == "sweep" for s in specs)
        print(f"benchmark {suite.name} ({budget}): {len(specs)} runs planned ({n_sweep} sweep, "
              f"{len(specs) - n_sweep} final), {executor.summary()}, into {out}",
              file=sys.stderr, flush=True)
        _execute(suite, specs, out, executor, resume, state, configs, host)
        state["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        planned = {s.id for s in specs}
        state["failed"] = sorted(i for i, r in state["runs"].items()
                                 if i in planned and r.get("status") != "done")
        bdir.save_state(out, state)
        write_report(out, host)
    return state


def _execute(suite: Suite, specs: list[RunSpec], out: Path, executor: Any, resume: bool,
             state: dict[str, Any], configs: dict[str, Any], host: Host) -> None:
    """Sweeps and the models without a sweep first; the swept models' finals once their
    value is chosen (checked against the plan with that value)."""
    swept = {(s.dataset, s.model) for s in specs if s.phase == "sweep"}
    first = [s for s in specs if not (s.phase == "final" and (s.dataset, s.model) in swept)]
    progress = Progress(len(specs))
    _run_all(first, out, executor, resume, state, progress, configs, host)
    second = _finals_after_sweep(suite, specs, out, state)
    unchosen = [s for s in specs if s.phase == "final" and (s.dataset, s.model) in swept
                and s not in second]
    progress.done += len(unchosen)
    progress.failed += len(unchosen)
    for s in second:
        configs[s.id] = _resolve(host, s, s.sets)
    bdir.save_state(out, state)
    _run_all(second, out, executor, resume, state, progress, configs, host)


def machine() -> dict[str, Any]:
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count() or 0,
                            "python": platform.python_version(), "platform": platform.platform()}
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return info


class BenchmarkFailed(HarnessError):
    """Some planned runs failed: the benchmark is incomplete (exit status 1)."""

    exit_code = 1


def finish(state: dict[str, Any], out: Path, stream: Any = None, host: Host | None = None) -> None:
    """Print the results as terminal tables (one per protocol, 100 columns, numbers named
    in words; the report files hold every key), the suite's side-by-side tables, and where
    the report is; raise :class:`BenchmarkFailed` (exit 1, with how to continue) when a
    planned run failed."""
    stream = stream or sys.stdout
    host = host_or_default(host)
    rows = final_rows(state, Path(out), host)
    print(to_text(rows) if rows else "(no finished run: no results)", file=stream)
    views = side_by_side_text(state, Path(out), host) if rows else ""
    if views:
        print(f"\n{views}", file=stream)
    print(f"benchmark written to {out} (report.md, report.html)", file=stream, flush=True)
    failed = state.get("failed") or []
    if failed:
        shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
        raise BenchmarkFailed(
            f"{len(failed)} of {len(state.get('plan', []))} planned runs failed ({shown}); each "
            f"one's output is in {Path(out) / bdir.RUNS_DIR}/<id>.log and its error in the "
            "report. Fix the cause and run the same command again: finished runs are kept")
