"""Result documents: a run folder, a benchmark folder or an exported result read into the
result schema (:mod:`harness.rundir.schema`), validated on read.

Older folders are read and **upgraded in memory** (what had to be filled in is listed in the
document's ``upgraded``); nothing on disk is rewritten.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from harness.errors import HarnessError
from harness.results import tasks as T
from harness.rundir.schema import SCHEMA_VERSION, validate

if TYPE_CHECKING:  # the type only: importing the plugin loader here would cost start-up time
    from harness.host.plugins import Host

#: the file ``harness export`` writes, and that a folder of exported results is read from
RESULTS_FILE = "results.json"


#: configuration keys that say where or how often, not what is trained (another lab's
#: folders, logging), and the seed: left out of an entry's ``config_hash``
NOT_TRAINING = ("run.seed", "data.root", "data.cache", "train.checkpoint_every",
                "train.log_every", "train.trackers", "train.num_workers")


def training_hash(flat: dict[str, Any]) -> str:
    """The training configuration's hash: the runs of one lab that differ only in their
    seed (or where their data lives) share it, and their seeds are pooled."""
    return T.digest({k: v for k, v in flat.items()
                     if k not in NOT_TRAINING and not k.startswith("eval.")}, 8)


# ------------------------------------------------------------------------------ numbers
def summary(values: list[float]) -> dict[str, Any]:
    """mean, sample std and the 95 % Student-t interval of the mean (None for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"n": n, "mean": mean, "std": None, "ci95": None}
    std = math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1))
    return {"n": n, "mean": mean, "std": std, "ci95": ci95(mean, std, n)}


def ci95(mean: float, std: float | None, n: int) -> list[float] | None:
    from scipy.stats import t

    if std is None or n < 2:
        return None
    half = float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return [mean - half, mean + half]


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# ----------------------------------------------------------------------------- runs
def _environment(run_dir: Path) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(the run's environment.json or None, its numerical part + packages for the schema)."""
    from harness.evaluation.tables import numerics

    try:
        env = json.loads((run_dir / "environment.json").read_bytes())
    except (OSError, ValueError):
        return None, {}
    if not isinstance(env, dict):
        return None, {}
    out = dict(numerics(run_dir))
    for key in ("python", "platform", "git_revision"):
        out[key] = env.get(key)
    if isinstance(env.get("packages"), dict):
        out["packages"] = dict(env["packages"])
    return env, out


def _canonical(protocol: str, host: Host | None, upgraded: list[str]) -> str:
    """A protocol's current name (a result from before a rename names the same task)."""
    canonical = host.canonical("protocol", protocol) if host is not None else protocol
    if canonical != protocol:
        upgraded.append(f"protocol '{protocol}' read under its new name '{canonical}'")
    return canonical


def read_run(run_dir: str | Path, host: Host | None = None) -> dict[str, Any]:
    """The result document of one finished run folder (validated; older folders upgraded in
    memory)."""
    from harness.configuration.run_config import load_toml
    from harness.evaluation.display import describe
    from harness.evaluation.tables import _flat, _read_finished

    folder = Path(run_dir)
    doc = _read_finished(folder)
    validate(doc, "metrics_file", where=str(folder / "metrics.json"))
    upgraded = []
    if "schema" not in doc:
        upgraded.append("metrics.json without a schema number: read as schema 1")
    config: dict[str, Any] = {}
    if (folder / "config.toml").is_file():
        config = load_toml(folder / "config.toml")
    else:
        upgraded.append("no config.toml: the configuration is unknown")
    env, numeric = _environment(folder)
    if env is None:
        upgraded.append("no readable environment.json: the environment is unknown")
    run = doc.get("run") or {}
    model = str(run.get("model") or config.get("run", {}).get("model", "?"))
    dataset = str(run.get("dataset") or config.get("run", {}).get("dataset", "?"))
    seed = int(run.get("seed", config.get("run", {}).get("seed", 0)))
    data = dict(config.get("data") or {})
    recorded = (doc.get("training") or {}).get("wall_time")
    wall = float(recorded) if _number(recorded) else None
    task_table: dict[str, Any] = {}
    entries = []
    for rec in doc.get("results", []):
        if not _number(rec.get("value")):
            continue  # a list (code variances), or a number not computed
        protocol = _canonical(str(rec["protocol"]), host, upgraded)
        stamp = dict(rec.get("stamp") or {})
        if "protocol_version" not in stamp:
            stamp["protocol_version"] = 1
            upgraded.append(f"{protocol}/{rec['metric']}: no protocol_version, read as 1")
        task = T.describe_task(dataset, protocol, str(rec["metric"]), stamp, data)
        task_table[task["id"]] = task
        entries.append({
            "task": task["id"], "model": model, "dataset": dataset,
            "config_hash": training_hash(_flat(config)) if config else "",
            "configuration": _flat(config),
            "seeds": [seed], "values": [float(rec["value"])],
            **summary([float(rec["value"])]),
            "higher_is_better": describe(rec, host).higher_is_better,
            "wall_time_s": wall,
            "environments": [{"environment": numeric, "seeds": [seed]}] if numeric else [],
        })
    machine = None if env is None else {k: env.get(k) for k in ("platform", "machine", "cuda")}
    out = {"schema": "vrrae-harness/result", "schema_version": SCHEMA_VERSION, "kind": "run",
           "source": str(folder), "upgraded": list(dict.fromkeys(upgraded)), "lab": None,
           "machine": machine, "suite": None, "tasks": task_table, "entries": entries,
           "wall_time_s": wall}
    validate(out, where=str(folder))
    return out


# ----------------------------------------------------------------------------- benchmarks
def _merge(docs: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Entries of several documents, one per (task, model, configuration): the seeds of one
    configuration pooled, their summary recomputed from the per-seed values."""
    task_table: dict[str, Any] = {}
    pooled: dict[tuple[str, ...], dict[str, Any]] = {}
    for doc in docs:
        task_table.update(doc["tasks"])
        for e in doc["entries"]:
            key = (e["task"], e["model"], e["dataset"], e["config_hash"])
            if key not in pooled:
                pooled[key] = {**e, "seeds": [], "values": [], "environments": [],
                               "wall_time_s": None}
            p = pooled[key]
            p["seeds"] += e["seeds"]
            p["values"] += e["values"] or []
            p["environments"] += e["environments"]
            if e["wall_time_s"] is not None:
                p["wall_time_s"] = (p["wall_time_s"] or 0.0) + e["wall_time_s"]
    entries = []
    for p in pooled.values():
        order = sorted(range(len(p["seeds"])), key=lambda i: p["seeds"][i])
        p["seeds"] = [p["seeds"][i] for i in order]
        p["values"] = [p["values"][i] for i in order]
        p.update(summary(p["values"]))
        entries.append(p)
    return task_table, entries


def _row_entry(row: dict[str, Any], upgraded: list[str], host: Host | None = None,
               sets: Mapping[tuple[str, str], dict[str, Any]] | None = None,
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A task and an entry from one report.json row (the summary only: no per-seed values)."""
    config = dict(row.get("config_values") or {})
    if not config:
        config = dict((sets or {}).get((row["dataset"], row["model"]), {}))
        upgraded.append("report rows without config_values (an older report): the "
                        "configuration is the benchmark's --set list only, and the data "
                        "section is taken as the defaults")
    data = {k[len("data."):]: v for k, v in config.items() if k.startswith("data.")}
    stamp = dict(row["stamp_values"])
    protocol = _canonical(row["protocol"], host, upgraded)
    task = T.describe_task(row["dataset"], protocol, row["metric"], stamp, data)
    display = row.get("display") or {}
    environments = [{"environment": e.get("numerics", {}), "seeds": e.get("seeds", [])}
                    for e in row.get("environments") or []]
    if not row.get("environments"):
        upgraded.append("report rows without environments: the per-run environment is unknown")
    n = int(row["n"])
    std = float(row["std"]) if n > 1 else None
    entry = {"task": task["id"], "model": row["model"], "dataset": row["dataset"],
             "config_hash": str(row["config"]), "configuration": config,
             "seeds": list(row["seeds"]), "values": None, "n": n, "mean": float(row["mean"]),
             "std": std, "ci95": ci95(float(row["mean"]), std, n),
             "higher_is_better": display.get("higher_is_better"), "wall_time_s": None,
             "environments": environments}
    return task, entry


def _run_sets(runs: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(dataset, model) -> the ``--set`` values its final runs had (``KEY=VALUE``, a value
    read as JSON where it is JSON): what an older report knows of a configuration."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        values = out.setdefault((run["dataset"], run["model"]), {})
        for item in run.get("sets") or []:
            key, _, text = str(item).partition("=")
            try:
                values[key] = json.loads(text)
            except ValueError:
                values[key] = text
    return out


def read_benchmark(folder: str | Path, host: Host | None = None) -> dict[str, Any]:
    """The result document of a benchmark folder: from its runs' folders when they are
    there (per-seed values, full configurations and environments), else from its
    ``report.json`` (the summary a committed benchmark keeps)."""
    folder = Path(folder)
    try:
        state = json.loads((folder / "benchmark.json").read_bytes())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"'{folder}/benchmark.json' cannot be read ({exc}); pass a "
                           "benchmark folder written by `harness benchmark`") from None
    validate(state, "benchmark_state", where=str(folder / "benchmark.json"))
    upgraded: list[str] = []
    finals = [r for r in state["runs"].values()
              if r.get("phase", "final") == "final" and r.get("status", "done") == "done"]
    present = [r for r in finals if r.get("dir") and (folder / r["dir"] / "metrics.json").is_file()]
    if finals and len(present) == len(finals):
        wall_of = {r["dir"]: r.get("wall_s") for r in present}
        docs = []
        for r in present:
            doc = read_run(folder / r["dir"], host)
            for e in doc["entries"]:  # the whole run process's time, as the benchmark saw it
                e["wall_time_s"] = wall_of[r["dir"]] if _number(wall_of[r["dir"]]) else \
                    e["wall_time_s"]
            upgraded += doc["upgraded"]
            docs.append(doc)
        task_table, entries = _merge(docs)
    else:
        try:
            report = json.loads((folder / "report.json").read_bytes())
        except (OSError, ValueError):
            raise HarnessError(f"'{folder}' holds neither its runs' folders nor a readable "
                               f"report.json; write it with `harness benchmark report "
                               f"{folder}`") from None
        validate(report, "benchmark_report", where=str(folder / "report.json"))
        upgraded.append("read from report.json: per-seed values are not kept there")
        task_table, entries = {}, []
        for row in report["rows"]:
            task, entry = _row_entry(row, upgraded, host, _run_sets(finals))
            task_table[task["id"]] = task
            entries.append(entry)
    walls = [r["wall_s"] for r in state["runs"].values() if _number(r.get("wall_s"))]
    if len(walls) < len(state["runs"]):
        upgraded.append("some runs have no wall time recorded (skipped or older runs)")
    out = {"schema": "vrrae-harness/result", "schema_version": SCHEMA_VERSION,
           "kind": "benchmark", "source": str(folder), "upgraded": list(dict.fromkeys(upgraded)),
           "lab": None, "machine": state.get("machine"),
           "suite": {"name": state["suite"]["name"], "budget": state["budget"],
                     "seeds": list(state["seeds"])},
           "tasks": task_table, "entries": entries,
           "wall_time_s": float(sum(walls)) if walls else None}
    validate(out, where=str(folder))
    return out


# ----------------------------------------------------------------------------- any input
def load(path: str | Path, host: Host | None = None) -> list[dict[str, Any]]:
    """The result documents at ``path``: a run folder, a benchmark folder, a folder written
    by ``harness export`` or its ``results.json``. Every document is validated."""
    path = Path(path)
    if path.is_file():
        return _read_exported(path)
    if not path.is_dir():
        raise HarnessError(f"'{path}' does not exist; pass a run folder, a benchmark folder or "
                           "an exported result (a folder or its results.json)")
    if (path / "benchmark.json").is_file():
        return [read_benchmark(path, host)]
    if (path / RESULTS_FILE).is_file():
        return _read_exported(path / RESULTS_FILE)
    if (path / "metrics.json").is_file() or (path / "config.toml").is_file():
        return [read_run(path, host)]
    raise HarnessError(f"'{path}' is neither a run folder (metrics.json), a benchmark folder "
                       f"(benchmark.json) nor an exported result ({RESULTS_FILE})")


def _read_exported(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise HarnessError(f"'{path}' is not a readable JSON file ({exc})") from None
    docs = data.get("results") if isinstance(data, dict) and "results" in data else data
    if not isinstance(docs, list):
        docs = [docs]
    for i, doc in enumerate(docs):
        validate(doc, where=f"{path} (result {i + 1})")
    return docs


def load_all(paths: Iterable[str | Path], host: Host | None = None) -> list[dict[str, Any]]:
    return [doc for p in paths for doc in load(p, host)]
