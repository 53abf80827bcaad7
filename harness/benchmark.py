"""``harness benchmark``: a suite of runs (models × datasets × seeds, with a β sweep), run as
isolated ``harness run`` subprocesses, resumable and parallel, then one report.

A **suite** is a TOML file (built-ins under ``benchmarks/suites/``; plugins add more with the
``register_suites`` hook)::

    name = "paper-synthetic"
    description = "..."
    datasets = ["bumps"]
    models = ["ae", "vae", "rrae", "vrrae"]
    seeds = 5
    protocols = []            # empty: the plugins' default protocols
    metrics = []              # empty: every metric (each skips datasets it does not fit)
    set = []                  # --set overrides for every run
    [model_set]               # --set overrides per model
    vae = ["model.beta=1e-3"]
    [beta]                    # the β sweep (paper appendix A.3)
    models = ["vae", "vrrae"]
    values = [0.0, 1e-4, 1e-3]
    validation = 0.1          # fraction of the training split held out to choose β
    select = "random_generation/fid"   # protocol/metric, lowest wins
    fallback = "reconstruction/rec_error_percent"
    [budgets.smoke]           # --set overrides per budget (steps, sample counts)
    set = ["train.steps=20", "eval.random_generation.n_samples=64"]
    [published]               # the paper's numbers, printed beside ours
    source = "paper Table 2"
    columns = ["interpolation/fid", "random_generation/fid", "reconstruction/rec_error_percent"]
    [published.values.mnist]
    vrrae = [5.89, 38.77, 26.00]
    [[claims]]                # the paper's claims, judged from our numbers
    text = "VRRAE has a lower test reconstruction error than VAE and RRAE"
    metric = "reconstruction/rec_error_percent"
    model = "vrrae"
    than = ["vae", "rrae"]
    test = "lower"            # model's mean below each of `than`'s; "wider": its std above

Every run takes its model's **preset** for the dataset (the paper's L, k, batch, lr, epochs)
as its lowest configuration layer, then the suite's ``set``, ``model_set``, the budget's
``set`` and the command line's ``--set``.

**β selection.** For a model in ``beta.models`` with more than one value, one sweep run per β
(seed = the suite's first seed) trains on the training split minus a ``beta.validation``
fraction (``data.validation``: that held-out slice replaces the test split, so the test set is
never read) and the β with the lowest ``beta.select`` value wins; when that metric has no value
(e.g. no FID weights offline) ``beta.fallback`` decides, and the report says which one did.
The final runs (every seed) then train on the whole training split with the chosen β and are
scored on the test split.

**Layout** of ``--out DIR``: ``runs/<id>/`` one run directory per run (``<id>`` =
``dataset-model[-beta…]-seedN`` or ``sweep-…``), ``runs/<id>.log`` its output,
``benchmark.json`` the plan, statuses, errors, wall times and β choices, and the report files.
A run with a ``metrics.json`` is finished and skipped; one with a ``config.toml`` only was
interrupted and is resumed (``harness run --resume``); a failed run is listed with its error
and the suite goes on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, HarnessError
from .executors import LocalExecutor

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BUDGETS = ("smoke", "cpu", "paper")
STATE_FILE = "benchmark.json"
SUITE_KEYS = {"name", "description", "paper", "datasets", "models", "seeds", "protocols",
              "metrics", "set", "model_set", "beta", "budgets", "published", "claims",
              "executor", "slurm"}
BETA_KEYS = {"models", "values", "validation", "select", "fallback"}
PUBLISHED_KEYS = {"source", "columns", "values"}
CLAIM_KEYS = {"text", "metric", "model", "than", "test", "datasets", "skip", "evidence", "note"}
CLAIM_TESTS = ("lower", "wider")


def builtin_suite_dir() -> Path:
    """``benchmarks/suites`` of the source tree this package runs from."""
    return Path(__file__).resolve().parent.parent / "benchmarks" / "suites"


@dataclass
class Suite:
    name: str
    description: str = ""
    paper: str = ""
    datasets: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    seeds: int = 1
    protocols: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    set: list[str] = field(default_factory=list)
    model_set: dict[str, list[str]] = field(default_factory=dict)
    beta: dict[str, Any] = field(default_factory=dict)
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)
    published: dict[str, Any] = field(default_factory=dict)
    claims: list[dict[str, Any]] = field(default_factory=list)
    executor: dict[str, Any] = field(default_factory=dict)  # [executor]: harness.executors
    slurm: dict[str, Any] = field(default_factory=dict)  # [slurm]: harness.executors
    source: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> Suite:
        unknown = set(data) - SUITE_KEYS
        if unknown:
            raise ConfigError(f"suite '{source}': unknown key(s) {sorted(unknown)}; valid: "
                              f"{', '.join(sorted(SUITE_KEYS))}")
        for key in ("name", "datasets", "models"):
            if not data.get(key):
                raise ConfigError(f"suite '{source}' must set '{key}'")
        beta = dict(data.get("beta", {}))
        if set(beta) - BETA_KEYS:
            raise ConfigError(f"suite '{source}': unknown [beta] key(s) "
                              f"{sorted(set(beta) - BETA_KEYS)}; valid: {sorted(BETA_KEYS)}")
        for name, budget in dict(data.get("budgets", {})).items():
            if name not in BUDGETS or set(budget) - {"set", "note"}:
                raise ConfigError(f"suite '{source}': [budgets.{name}] must be one of "
                                  f"{', '.join(BUDGETS)} with keys set, note")
        _check_published(dict(data.get("published", {})), source)
        for i, claim in enumerate(data.get("claims", [])):
            _check_claim(claim, f"suite '{source}': [[claims]] #{i + 1}")
        return cls(**{k: v for k, v in data.items() if k in SUITE_KEYS}, source=source)

    def seeds_list(self, n: int | None = None) -> list[int]:
        return list(range(int(n if n is not None else self.seeds)))

    def sweep_values(self, model: str, dataset: str) -> list[float]:
        """The β values of ``model`` on ``dataset``: ``beta.values`` is a list, or a table
        dataset -> list (the paper's sweep differs per dataset; key ``"*"`` for the rest)."""
        if model not in self.beta.get("models", []):
            return []
        values = self.beta.get("values", [])
        if isinstance(values, dict):
            values = values.get(dataset, values.get("*", []))
        return [float(v) for v in values]


def _check_published(published: dict[str, Any], source: str) -> None:
    """``[published]``: ``columns`` (protocol/metric keys) and ``values.<dataset>.<model>``, a
    list with one number per column."""
    if not published:
        return
    where = f"suite '{source}': [published]"
    if set(published) - PUBLISHED_KEYS:
        raise ConfigError(f"{where}: unknown key(s) {sorted(set(published) - PUBLISHED_KEYS)}; "
                          f"valid: {sorted(PUBLISHED_KEYS)}")
    columns = published.get("columns")
    if not isinstance(columns, list) or not all(isinstance(c, str) and "/" in c
                                                for c in columns) or not columns:
        raise ConfigError(f"{where}: columns must be a list of 'protocol/metric' keys")
    for dataset, models in dict(published.get("values", {})).items():
        for model, numbers in dict(models).items():
            if not isinstance(numbers, list) or len(numbers) != len(columns) or not all(
                    isinstance(x, int | float) for x in numbers):
                raise ConfigError(f"{where}: values.{dataset}.{model} must be {len(columns)} "
                                  f"numbers, one per column ({', '.join(columns)})")


def _check_claim(claim: Any, where: str) -> None:
    if not isinstance(claim, dict):
        raise ConfigError(f"{where} must be a table")
    if set(claim) - CLAIM_KEYS:
        raise ConfigError(f"{where}: unknown key(s) {sorted(set(claim) - CLAIM_KEYS)}; valid: "
                          f"{sorted(CLAIM_KEYS)}")
    for key in ("text", "metric", "model", "than"):
        if not claim.get(key):
            raise ConfigError(f"{where} must set '{key}'")
    if claim.get("test", "lower") not in CLAIM_TESTS:
        raise ConfigError(f"{where}: test must be one of {', '.join(CLAIM_TESTS)}, got "
                          f"'{claim['test']}'")
    if "/" not in str(claim["metric"]):
        raise ConfigError(f"{where}: metric must be 'protocol/metric', got '{claim['metric']}'")


def _registered_suites() -> dict[str, tuple[Any, str]]:
    """Suites from plugins' ``register_suites`` hooks: name -> (path or dict, description)."""
    from .plugins import get_host

    host = get_host()
    found: dict[str, tuple[Any, str]] = {}

    def register(name: str, suite: Any, description: str = "") -> None:
        found[name] = (suite, description)

    for impl in host.pm.hook.register_suites.get_hookimpls():
        try:
            impl.function(register=register)
        except Exception as exc:  # one plugin's broken hook must not hide the others
            if host.strict:
                raise
            print(f"warning: a plugin's register_suites failed: {exc}", file=sys.stderr)
    return found


def list_suites() -> list[dict[str, str]]:
    rows = []
    folder = builtin_suite_dir()
    for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
        data = tomllib.loads(path.read_text())
        rows.append({"name": data.get("name", path.stem), "description":
                     data.get("description", ""), "source": str(path)})
    for name, (_, description) in sorted(_registered_suites().items()):
        rows.append({"name": name, "description": description, "source": "plugin"})
    return rows


def load_suite(name: str) -> Suite:
    """A suite by name (built-in or plugin-registered) or by path to a TOML file."""
    path = Path(name)
    if path.suffix == ".toml" and path.is_file():
        return Suite.from_dict(tomllib.loads(path.read_text()), str(path))
    builtin = builtin_suite_dir() / f"{name}.toml"
    if builtin.is_file():
        return Suite.from_dict(tomllib.loads(builtin.read_text()), str(builtin))
    registered = _registered_suites()
    if name in registered:
        suite = registered[name][0]
        if isinstance(suite, dict):
            return Suite.from_dict(suite, f"plugin:{name}")
        return Suite.from_dict(tomllib.loads(Path(suite).read_text()), str(suite))
    known = [r["name"] for r in list_suites()]
    raise ConfigError(f"suite '{name}' is not known; known: {', '.join(known) or '(none)'} "
                      "(or pass the path of a suite .toml)")


# ---------------------------------------------------------------------------------- plan
@dataclass
class RunSpec:
    id: str
    dataset: str
    model: str
    seed: int
    phase: str  # "sweep" (β selection on the validation split) or "final"
    beta: float | None = None
    sets: list[str] = field(default_factory=list)


def _beta_tag(beta: float) -> str:
    return f"beta{beta:g}"


def apply_cli_sets(suite: Suite, sets: list[str]) -> tuple[Suite, list[str]]:
    """``models+=NAME`` / ``datasets+=NAME`` / ``seeds=N`` change the suite; the rest are
    run overrides (``section.key=value``)."""
    rest = []
    for item in sets:
        key, sep, value = item.partition("=")
        if key.endswith("+") and key[:-1] in ("models", "datasets"):
            getattr(suite, key[:-1]).extend(v.strip() for v in value.split(",") if v.strip())
        elif key in ("models", "datasets") and sep:
            setattr(suite, key, [v.strip() for v in value.split(",") if v.strip()])
        else:
            rest.append(item)
    return suite, rest


def plan(suite: Suite, budget: str, seeds: list[int], extra_sets: list[str]) -> list[RunSpec]:
    """Every run of the suite; the final runs of swept models get their β once chosen."""
    if budget not in BUDGETS:
        raise ConfigError(f"--budget must be one of {', '.join(BUDGETS)}, got '{budget}'")
    base = list(suite.set)
    if suite.protocols:
        base.append("eval.protocols=" + json.dumps(suite.protocols))
    if suite.metrics:
        base.append("eval.metrics=" + json.dumps(suite.metrics))
    base += list(suite.budgets.get(budget, {}).get("set", []))
    specs = []
    for dataset in suite.datasets:
        for model in suite.models:
            sets = base + list(suite.model_set.get(model, [])) + list(extra_sets)
            values = suite.sweep_values(model, dataset)
            if len(values) > 1:
                frac = float(suite.beta.get("validation", 0.1))
                for beta in values:
                    specs.append(RunSpec(f"sweep-{dataset}-{model}-{_beta_tag(beta)}", dataset,
                                         model, seeds[0], "sweep", beta,
                                         sets + [f"model.beta={beta!r}",
                                                 f"data.validation={frac!r}"]))
                beta_final: float | None = None
            elif len(values) == 1:
                beta_final = values[0]
            else:
                beta_final = None
            for seed in seeds:
                extra = [f"model.beta={beta_final!r}"] if beta_final is not None else []
                specs.append(RunSpec(f"{dataset}-{model}-seed{seed}", dataset, model, seed,
                                     "final", beta_final, sets + extra))
    return specs


# ----------------------------------------------------------------------------- execution
def _status(run_dir: Path) -> str:
    if (run_dir / "metrics.json").is_file():
        return "done"
    if (run_dir / "config.toml").is_file():
        return "interrupted"
    return "new"


def _last_error(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error") or "Error:" in ln]
    return (errors[-1] if errors else (lines[-1] if lines else "no output")).strip()[:500]


def run_one(spec: RunSpec, out: Path, threads: int, resume: bool) -> dict[str, Any]:
    """One ``harness run`` subprocess; returns its record (status, wall time, error)."""
    run_dir = out / "runs" / spec.id
    log = out / "runs" / f"{spec.id}.log"
    state = _status(run_dir)
    record: dict[str, Any] = {**asdict(spec), "dir": str(run_dir.relative_to(out))}
    if state == "done":
        return {**record, "status": "done", "skipped": True}
    if state == "interrupted" and resume and (run_dir / "checkpoints" / "latest").is_file():
        cmd = ["run", "--resume", "--out", str(run_dir)]
    else:
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)  # an interrupted run without checkpoint: start over
        cmd = ["run", "--model", spec.model, "--dataset", spec.dataset, "--seed",
               str(spec.seed), "--out", str(run_dir)]
        for item in spec.sets:
            cmd += ["--set", item]
    # torch sizes its thread pool from OMP_NUM_THREADS at start: N runs share the cores
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as handle:
        proc = subprocess.run([sys.executable, "-m", "harness.cli", *cmd], stdout=handle,
                              stderr=subprocess.STDOUT, env=env, check=False)
    wall = time.perf_counter() - start
    record.update(wall_s=round(wall, 2), returncode=proc.returncode, command=cmd)
    if proc.returncode == 0 and _status(run_dir) == "done":
        return {**record, "status": "done", "skipped": False}
    return {**record, "status": "failed", "error": _last_error(log)}


def _run_all(specs: list[RunSpec], out: Path, executor: Any, resume: bool,
             state: dict[str, Any]) -> None:
    """Every run of ``specs`` through ``executor`` (harness.executors: the local pool or
    Slurm); each finished record goes into ``state`` as it arrives."""
    state["threads_per_run"] = executor.threads

    def one(spec: RunSpec, rec: dict[str, Any]) -> None:
        previous = state["runs"].get(spec.id, {})
        if rec.get("skipped") and "wall_s" in previous:
            rec["wall_s"] = previous["wall_s"]
        state["runs"][spec.id] = rec
        _save_state(out, state)
        tag = "skipped (done)" if rec.get("skipped") else rec["status"]
        print(f"[{spec.id}] {tag}" + (f": {rec.get('error')}" if rec["status"] == "failed"
                                      else ""), file=sys.stderr, flush=True)

    executor.run(specs, out, resume, one)


def _save_state(out: Path, state: dict[str, Any]) -> None:
    from .atomic import atomic_write_text

    atomic_write_text(out / STATE_FILE, json.dumps(state, indent=2, default=str) + "\n")


def metric_value(run_dir: Path, key: str) -> float | None:
    """``protocol/metric`` from a run's metrics.json (None when absent or not computed)."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    protocol, _, metric = key.partition("/")
    for rec in json.loads(path.read_text()).get("results", []):
        value = rec.get("value")
        if rec.get("protocol") == protocol and rec.get("metric") == metric and isinstance(
                value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def choose_beta(suite: Suite, specs: list[RunSpec], out: Path, dataset: str,
                model: str) -> dict[str, Any]:
    """The β of the lowest ``beta.select`` (else ``beta.fallback``) over the sweep runs."""
    sweep = [s for s in specs if s.phase == "sweep" and s.dataset == dataset and s.model == model]
    rules = [suite.beta.get("select", "reconstruction/rec_error_percent"),
             suite.beta.get("fallback", "reconstruction/rec_error_percent")]
    for rule in dict.fromkeys(rules):
        values = {s.beta: metric_value(out / "runs" / s.id, rule) for s in sweep}
        scored = {b: v for b, v in values.items() if v is not None}
        if scored:
            chosen = min(scored, key=lambda b: (scored[b], b))
            return {"dataset": dataset, "model": model, "rule": f"lowest {rule} on the "
                    f"validation split ({suite.beta.get('validation', 0.1)} of train)",
                    "metric": rule, "values": {repr(b): values[b] for b in values},
                    "chosen": chosen}
    return {"dataset": dataset, "model": model, "rule": "no sweep run produced "
            f"{' or '.join(rules)}", "values": {}, "chosen": None}


def run_suite(suite: Suite, out: str | Path, *, budget: str = "smoke", seeds: int | None = None,
              jobs: int = 1, sets: list[str] | None = None, resume: bool = True,
              executor: Any = None) -> Path:
    """Run (or resume) every run of ``suite`` into ``out`` and write the report; the runs go
    through ``executor`` (default: the local pool of ``jobs`` processes)."""
    out = Path(out)
    executor = executor or LocalExecutor(jobs)
    suite, run_sets = apply_cli_sets(suite, list(sets or []))
    from .plugins import get_host

    host = get_host()
    for model in suite.models:
        host.get("model", model)  # unknown names fail before anything runs
    for dataset in suite.datasets:
        host.get("dataset", dataset)
    seed_list = suite.seeds_list(seeds)
    specs = plan(suite, budget, seed_list, run_sets)
    unavailable = probe_datasets(host, specs)
    for dataset, why in unavailable.items():
        print(f"warning: dataset '{dataset}' is not available here; its runs are skipped "
              f"and the report says so. {why}", file=sys.stderr, flush=True)
    if len(unavailable) == len(suite.datasets):
        raise HarnessError("none of the suite's datasets is available here ("
                           + "; ".join(f"{d}: {w.splitlines()[0]}" for d, w in
                                       unavailable.items())
                           + "); put one in place or pick others with --set datasets=NAME")
    suite.datasets = [d for d in suite.datasets if d not in unavailable]
    specs = [s for s in specs if s.dataset not in unavailable]
    out.mkdir(parents=True, exist_ok=True)
    previous = json.loads((out / STATE_FILE).read_text()) if (out / STATE_FILE).is_file() else {}
    if previous and (previous.get("suite", {}).get("name") != suite.name
                     or previous.get("budget") != budget):
        raise HarnessError(f"'{out}' holds benchmark '{previous.get('suite', {}).get('name')}' "
                           f"at budget '{previous.get('budget')}'; choose another --out")
    if previous and sorted(previous.get("sets") or []) != sorted(run_sets):
        raise HarnessError(f"'{out}' was run with --set {previous.get('sets') or '(none)'}, this "
                           f"command has {run_sets or '(none)'}: its finished runs would be "
                           "mixed with different settings; choose another --out, or repeat "
                           "the same --set to continue it")
    state: dict[str, Any] = {
        "suite": asdict(suite), "budget": budget, "seeds": seed_list, "jobs": jobs,
        "sets": run_sets, "machine": machine(), "runs": previous.get("runs", {}),
        "executor": executor.describe(),
        "beta_selection": [], "unavailable": unavailable,
        # the first start; a continued benchmark keeps it (wall times are per run)
        "started": previous.get("started") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # every run's model, dataset, seed and --set list (a swept model's final runs get
        # their model.beta once it is chosen): what `accelerate launch` needs per run
        "plan": [asdict(s) for s in specs],
    }
    _save_state(out, state)
    # sweeps and the models without a sweep first; the swept models' finals once β is chosen
    first = [s for s in specs
             if not (s.phase == "final" and len(suite.sweep_values(s.model, s.dataset)) > 1)]
    _run_all(first, out, executor, resume, state)
    second = []
    for dataset in suite.datasets:
        for model in suite.models:
            if len(suite.sweep_values(model, dataset)) > 1:
                choice = choose_beta(suite, specs, out, dataset, model)
                state["beta_selection"].append(choice)
                for s in specs:
                    if s.phase == "final" and s.dataset == dataset and s.model == model:
                        if choice["chosen"] is None:
                            state["runs"][s.id] = {**asdict(s), "status": "failed",
                                                   "error": "no beta chosen: " + choice["rule"]}
                            continue
                        s.beta = choice["chosen"]
                        s.sets = s.sets + [f"model.beta={s.beta!r}"]
                        second.append(s)
    _save_state(out, state)
    _run_all(second, out, executor, resume, state)
    state["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    _save_state(out, state)
    from .benchmark_report import write_report

    write_report(out)
    return out


def probe_datasets(host: Any, specs: list[RunSpec]) -> dict[str, str]:
    """The datasets of ``specs`` that cannot be loaded here, each with its loader's message
    (what is missing and where it was looked for). Each is loaded once with the
    configuration of its first run (presets, ``data.*`` settings); this also fills the
    dataset's decode cache for the runs. A run whose configuration is wrong is not a missing
    dataset: its runs fail with that error, listed in the report."""
    from . import runner

    missing: dict[str, str] = {}
    for dataset in dict.fromkeys(s.dataset for s in specs):
        spec = next(s for s in specs if s.dataset == dataset)
        try:
            config = runner.resolve_config(model=spec.model, dataset=dataset, config_file=None,
                                           sets=spec.sets, seed=spec.seed, host=host)
        except HarnessError:
            continue
        try:
            runner.load_data(host, config)
        except Exception as exc:  # a dataset that cannot load is reported, never fatal alone
            missing[dataset] = (str(exc) if isinstance(exc, HarnessError)
                                else f"{type(exc).__name__}: {exc}")
    return missing


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
