"""Benchmark suites: the TOML a ``harness benchmark`` runs, read and checked with types before
anything runs. Both :mod:`harness.benchmark.suite_runner` (which runs a suite) and
:mod:`harness.benchmark.report` (which reports one) import this module; it imports neither
(only :mod:`harness.benchmark.executors`, when a suite is read, to check its ``[executor]`` tables).

The host ships no suite of its own: suites come from plugins (``register_suites``; the
built-in plugin ``harness_plugins.suites`` ships its suites as package data) or from a path.

A suite's keys::

    name = "paper-synthetic"          # letters, digits, '.', '_', '-' (it names a folder)
    description = "..."
    datasets = ["bumps"]
    models = ["ae", "vae", "rrae", "vrrae"]
    seeds = 5
    protocols = []                    # empty: the plugins' default protocols
    metrics = []                      # empty: every metric
    set = []                          # --set overrides for every run
    [model_set]                       # --set overrides per model
    vae = ["model.beta=1e-3"]
    [[sweep]]                         # one key swept over values, the best value kept;
                                      # one [[sweep]] per key ([sweep] when there is one)
    key = "model.beta"                # any section.key
    models = ["vae", "vrrae"]
    values = [0.0, 1e-4, 1e-3]        # or a table dataset -> list ("*": the others)
    set = ["data.validation=0.1"]     # extra overrides of the sweep runs only
    select = "random-generation/fid"  # protocol/metric deciding the winner
    fallback = "reconstruction/rec_error_percent"   # when select has no value
    rule = "lowest"                   # or "highest"
    [budgets.smoke]                   # --set overrides per budget
    set = ["train.steps=20"]
    [published] / [[claims]]          # numbers to print beside ours, claims to judge
    [[side_by_side]]                  # one metric of several protocols in one report table
    title = "FID: reconstructions, prior samples, GMM samples"
    metric = "fid"
    columns = ["reconstruction-samples", "prior-samples", "random-generation"]
    [executor]                        # where the runs execute: name = "local" or "slurm"
    [slurm]                           # partition, time, cpus, gpus, mem, ... (harness.benchmark.executors)

Each ``[[sweep]]`` applies to its ``models``; a model is in one sweep at most (one key swept
per model, never a grid). A ``[beta]`` table (``models``, ``values``, ``validation``,
``select``, ``fallback``) is the older spelling of a sweep of ``model.beta`` whose runs set
``data.validation``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.benchmark.directory import BUDGETS
from harness.configuration.run_config import read_toml
from harness.errors import ConfigError

if TYPE_CHECKING:  # the type only: importing the plugin loader here would cost start-up time
    from harness.host.plugins import Host

#: the most seeds a suite or ``--seeds`` may ask for (each seed is one run per model and
#: dataset, and one record in benchmark.json)
MAX_SEEDS = 100
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SWEEP_RULES = ("lowest", "highest")
CLAIM_TESTS = ("lower", "wider")
SCALAR = (str, int, float, bool)

# key -> kind; kinds: str, int, list[str], table, list[table], sweep values
SUITE_KEYS = {"name": "str", "description": "str", "paper": "str", "datasets": "list[str]",
              "models": "list[str]", "seeds": "int", "protocols": "list[str]",
              "metrics": "list[str]", "set": "list[str]", "model_set": "table",
              "beta": "table", "sweep": "table or list[table]", "budgets": "table",
              "published": "table",
              "claims": "list[table]", "side_by_side": "list[table]", "executor": "table",
              "slurm": "table"}
SWEEP_KEYS = {"key": "str", "models": "list[str]", "values": "values", "set": "list[str]",
              "select": "str", "fallback": "str", "rule": "str"}
BETA_KEYS = {"models": "list[str]", "values": "values", "validation": "float",
             "select": "str", "fallback": "str"}
BUDGET_KEYS = {"set": "list[str]", "note": "str"}
PUBLISHED_KEYS = {"source": "str", "columns": "list[str]", "values": "table"}
SIDE_BY_SIDE_KEYS = {"title": "str", "metric": "str", "columns": "list[str]", "note": "str"}
CLAIM_KEYS = {"text": "str", "metric": "str", "model": "str", "than": "list[str]",
              "test": "str", "datasets": "list[str]", "skip": "list[str]",
              "evidence": "list[str]", "note": "str"}
_KIND_WORDS = {"str": "a string", "int": "an integer", "float": "a number",
               "list[str]": "a list of strings", "table": "a table",
               "list[table]": "a list of tables ([[...]])",
               "table or list[table]": "a table ([...]) or a list of tables ([[...]])",
               "values": "a list of values or a table dataset -> list"}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind_ok(value: Any, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return _is_number(value) and math.isfinite(value)
    if kind == "list[str]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "table":
        return isinstance(value, dict)
    if kind == "list[table]":
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    if kind == "table or list[table]":
        return _kind_ok(value, "table") or _kind_ok(value, "list[table]")
    if kind == "values":
        return isinstance(value, list | dict)
    raise AssertionError(kind)


def check_table(data: Any, schema: dict[str, str], where: str) -> dict[str, Any]:
    """``data`` is a table whose keys are in ``schema`` and whose values have its kinds; a
    string where a list is expected is refused, never split into letters."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table, got {data!r}")
    unknown = sorted(set(data) - set(schema))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid: {', '.join(sorted(schema))}")
    for key, value in data.items():
        if not _kind_ok(value, schema[key]):
            raise ConfigError(f"{where}: '{key}' must be {_KIND_WORDS[schema[key]]}, got "
                              f"{value!r} ({type(value).__name__})")
    return data


def check_name(name: str, what: str) -> str:
    """A name that becomes a folder name: no separators, no '..', nothing hidden."""
    if not SAFE_NAME.match(name) or ".." in name:
        raise ConfigError(f"{what} {name!r} cannot name a folder: use letters, digits, '.', '_' "
                          "and '-' (at most 100, not starting with '.' or '-', no '..')")
    return name


def check_seeds(n: Any, where: str) -> int:
    if not (isinstance(n, int) and not isinstance(n, bool)) or not 1 <= n <= MAX_SEEDS:
        raise ConfigError(f"{where} must be a whole number from 1 to {MAX_SEEDS}, got {n!r} "
                          "(more seeds: raise harness.benchmark.suite.MAX_SEEDS deliberately; "
                          "each seed is one run per model and dataset)")
    return n


@dataclass
class Sweep:
    """One key swept over values for some models; the best value by ``select`` (``fallback``
    when it has none) under ``rule`` is what the final runs use."""

    key: str
    models: list[str]
    values: list[Any] | dict[str, list[Any]]
    set: list[str] = field(default_factory=list)
    select: str = "reconstruction/rec_error_percent"
    fallback: str = "reconstruction/rec_error_percent"
    rule: str = "lowest"

    def values_for(self, model: str, dataset: str) -> list[Any]:
        if model not in self.models:
            return []
        values = self.values
        if isinstance(values, dict):
            values = values.get(dataset, values.get("*", []))
        return list(values)

    @property
    def short(self) -> str:
        """The key's last part, for run ids (``model.beta`` -> ``beta``)."""
        return re.sub(r"[^A-Za-z0-9_]", "_", self.key.rpartition(".")[2])


def _check_values(values: Any, where: str, numbers_only: bool) -> None:
    lists = values.items() if isinstance(values, dict) else [("", values)]
    for dataset, items in lists:
        at = f"{where}.{dataset}" if dataset else where
        if not isinstance(items, list) or not items:
            raise ConfigError(f"{at} must be a non-empty list of values, got {items!r}")
        for v in items:
            ok = (_is_number(v) and math.isfinite(v)) if numbers_only else (
                isinstance(v, SCALAR) and not (isinstance(v, float) and not math.isfinite(v)))
            if not ok:
                raise ConfigError(f"{at}: {v!r} is not {'a finite number' if numbers_only else 'a number, string or boolean'}")
        if len({repr(v) for v in items}) != len(items):
            raise ConfigError(f"{at} lists a value twice: {items!r}")


def parse_sweeps(data: dict[str, Any], where: str) -> list[Sweep]:
    """``[[sweep]]`` (one table per swept key), ``[sweep]`` (one), or the older ``[beta]`` (a
    sweep of ``model.beta`` on a validation split) converted to one. A model is swept by one
    of them at most: the suite sweeps one key per model, never a grid."""
    if "sweep" in data and "beta" in data:
        raise ConfigError(f"{where}: set [sweep] or the older [beta], not both")
    if "beta" in data:
        sweep = _parse_beta(data["beta"], where)
        found = [] if sweep is None else [sweep]
    else:
        tables = data.get("sweep") or []
        tables = [tables] if isinstance(tables, dict) else tables
        found = [_parse_sweep(raw, f"{where}: [[sweep]] #{i + 1}" if len(tables) > 1
                              else f"{where}: [sweep]") for i, raw in enumerate(tables)]
    owner: dict[str, str] = {}
    for sweep in found:
        for model in sweep.models:
            if model in owner:
                raise ConfigError(f"{where}: model '{model}' is in the sweeps of {owner[model]} "
                                  f"and {sweep.key}; a suite sweeps one key per model (list "
                                  "it in one [[sweep]] only)")
            owner[model] = sweep.key
    return found


def _parse_beta(beta: Any, where: str) -> Sweep | None:
    beta = check_table(beta, BETA_KEYS, f"{where}: [beta]")
    if not beta:
        return None
    _check_values(beta.get("values", []), f"{where}: [beta] values", numbers_only=True)
    frac = beta.get("validation", 0.1)
    if not 0 < frac < 1:
        raise ConfigError(f"{where}: [beta] validation must be strictly between 0 and 1, "
                          f"got {frac!r}")
    sweep = Sweep("model.beta", beta.get("models", []), beta["values"],
                  [f"data.validation={frac!r}"],
                  beta.get("select", Sweep.select), beta.get("fallback", Sweep.fallback))
    _check_sweep(sweep, f"{where}: [beta]")
    return sweep


def _parse_sweep(raw: Any, where: str) -> Sweep:
    raw = check_table(raw, SWEEP_KEYS, where)
    if "key" not in raw or "values" not in raw:
        raise ConfigError(f"{where} must set 'key' (section.key) and 'values'")
    _check_values(raw["values"], f"{where} values", numbers_only=False)
    sweep = Sweep(**{"models": [], **raw})
    _check_sweep(sweep, where)
    return sweep


def _check_sweep(sweep: Sweep, where: str) -> None:
    section, dot, name = sweep.key.partition(".")
    if not dot or not name or section == "run":
        raise ConfigError(f"{where}: key must be section.key (e.g. model.beta, train.lr), "
                          f"got {sweep.key!r}")
    if sweep.rule not in SWEEP_RULES:
        raise ConfigError(f"{where}: rule must be one of {', '.join(SWEEP_RULES)}, got "
                          f"{sweep.rule!r}")
    for key in ("select", "fallback"):
        if "/" not in getattr(sweep, key):
            raise ConfigError(f"{where}: {key} must be 'protocol/metric', got "
                              f"{getattr(sweep, key)!r}")
    if not sweep.models:
        raise ConfigError(f"{where}: models must list the models the sweep applies to")


def _check_published(published: dict[str, Any], where: str) -> None:
    """``[published]``: ``columns`` (protocol/metric keys) and ``values.<dataset>.<model>``, a
    list with one number per column."""
    if not published:
        return
    where = f"{where}: [published]"
    check_table(published, PUBLISHED_KEYS, where)
    columns = published.get("columns")
    if not isinstance(columns, list) or not columns or not all("/" in c for c in columns):
        raise ConfigError(f"{where}: columns must be a list of 'protocol/metric' keys")
    for dataset, models in published.get("values", {}).items():
        check_table(models, dict.fromkeys(models, "values"), f"{where}: values.{dataset}")
        for model, numbers in models.items():
            if not isinstance(numbers, list) or len(numbers) != len(columns) or not all(
                    _is_number(x) for x in numbers):
                raise ConfigError(f"{where}: values.{dataset}.{model} must be {len(columns)} "
                                  f"numbers, one per column ({', '.join(columns)})")


def _check_claim(claim: Any, where: str) -> None:
    check_table(claim, CLAIM_KEYS, where)
    for key in ("text", "metric", "model", "than"):
        if not claim.get(key):
            raise ConfigError(f"{where} must set '{key}'")
    if claim.get("test", "lower") not in CLAIM_TESTS:
        raise ConfigError(f"{where}: test must be one of {', '.join(CLAIM_TESTS)}, got "
                          f"'{claim['test']}'")
    if "/" not in claim["metric"]:
        raise ConfigError(f"{where}: metric must be 'protocol/metric', got '{claim['metric']}'")


def _check_side_by_side(view: Any, where: str, protocols: list[str]) -> None:
    """``[[side_by_side]]``: a ``title``, one ``metric`` (its key, e.g. ``fid``) and two or
    more protocols as ``columns``, each run by the suite (when it names its protocols)."""
    check_table(view, SIDE_BY_SIDE_KEYS, where)
    for key in ("title", "metric", "columns"):
        if not view.get(key):
            raise ConfigError(f"{where} must set '{key}'")
    columns = view["columns"]
    if len(columns) < 2 or len(set(columns)) != len(columns):
        raise ConfigError(f"{where}: columns must name two protocols or more, each once; got "
                          f"{columns}")
    if "/" in view["metric"]:
        raise ConfigError(f"{where}: metric is the metric's key alone (e.g. 'fid'): the "
                          f"columns name the protocols; got '{view['metric']}'")
    missing = [c for c in columns if protocols and c not in protocols]
    if missing:
        raise ConfigError(f"{where}: columns {missing} are not among the suite's protocols "
                          f"({', '.join(protocols)}); add them to protocols or drop them")


def _check_lists(data: dict[str, Any], where: str) -> None:
    for key in ("datasets", "models"):
        if not data.get(key):
            raise ConfigError(f"{where} must set '{key}' (a non-empty list)")
        twice = sorted({v for v in data[key] if data[key].count(v) > 1})
        if twice:
            raise ConfigError(f"{where}: '{key}' lists {twice} more than once")
        for name in data[key]:
            check_name(name, f"{where}: {key[:-1]}")
    model_set = data.get("model_set", {})
    check_table(model_set, dict.fromkeys(model_set, "list[str]"), f"{where}: [model_set]")
    for name, budget in data.get("budgets", {}).items():
        if name not in BUDGETS:
            raise ConfigError(f"{where}: [budgets.{name}]: the budgets are {', '.join(BUDGETS)}")
        check_table(budget, BUDGET_KEYS, f"{where}: [budgets.{name}]")


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
    sweeps: list[Sweep] = field(default_factory=list)  # one key per model at most
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)
    published: dict[str, Any] = field(default_factory=dict)
    claims: list[dict[str, Any]] = field(default_factory=list)
    #: report tables of one metric over several protocols, side by side (``[[side_by_side]]``)
    side_by_side: list[dict[str, Any]] = field(default_factory=list)
    #: where the runs execute: ``[executor] name`` and the ``[slurm]`` options
    #: (harness.benchmark.executors; the command line and --executor-config override them)
    executor: dict[str, Any] = field(default_factory=dict)
    slurm: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def from_dict(cls, data: Any, source: str) -> Suite:
        """A suite from its TOML content; every key and value checked, with types."""
        where = f"suite '{source}'"
        check_table(data, SUITE_KEYS, where)
        if "name" not in data:
            raise ConfigError(f"{where} must set 'name'")
        check_name(data["name"], f"{where}: name")
        check_seeds(data.get("seeds", 1), f"{where}: seeds")
        _check_lists(data, where)
        _check_published(data.get("published", {}), where)
        for i, claim in enumerate(data.get("claims", [])):
            _check_claim(claim, f"{where}: [[claims]] #{i + 1}")
        for i, view in enumerate(data.get("side_by_side", [])):
            _check_side_by_side(view, f"{where}: [[side_by_side]] #{i + 1}",
                                data.get("protocols", []))
        sweeps = parse_sweeps(data, where)
        from harness.benchmark.executors import (
            executor_tables,  # here: executors imports the folder layout
        )

        executor_tables({k: data[k] for k in ("executor", "slurm") if k in data}, where)
        kept = {k: v for k, v in data.items() if k not in ("beta", "sweep")}
        return cls(**kept, sweeps=sweeps, source=source)

    def with_current_names(self, host: Host) -> Suite:
        """This suite with every former component name (a protocol or metric renamed since
        the suite was written) replaced by the current one, each reported once: its
        ``protocol/metric`` keys must match the rows the runs write."""
        def key(text: str) -> str:
            protocol, slash, rest = text.partition("/")
            return host.canonical("protocol", protocol, warn=True) + slash + rest

        self.protocols = [host.canonical("protocol", n, warn=True) for n in self.protocols]
        self.metrics = [host.canonical("metric", n, warn=True) for n in self.metrics]
        for sweep in self.sweeps:
            sweep.select, sweep.fallback = key(sweep.select), key(sweep.fallback)
        if self.published.get("columns"):
            self.published = {**self.published,
                              "columns": [key(c) for c in self.published["columns"]]}
        self.claims = [{**c, **{k: key(c[k]) for k in ("metric",) if k in c},
                        **({"evidence": [key(e) for e in c["evidence"]]} if "evidence" in c
                           else {})} for c in self.claims]  # fmt: skip
        self.side_by_side = [{**v, "columns": [host.canonical("protocol", c, warn=True)
                                                for c in v["columns"]]}
                             for v in self.side_by_side]
        return self

    def seeds_list(self, n: int | None = None) -> list[int]:
        return list(range(check_seeds(self.seeds if n is None else n, "--seeds")))

    def sweep_for(self, model: str) -> Sweep | None:
        """The sweep that applies to ``model`` (None: it runs as configured)."""
        return next((s for s in self.sweeps if model in s.models), None)

    def sweep_values(self, model: str, dataset: str) -> list[Any]:
        sweep = self.sweep_for(model)
        return sweep.values_for(model, dataset) if sweep is not None else []


# ------------------------------------------------------------------------------- finding
def read_suite_file(path: Any, source: str | None = None) -> Suite:
    """A suite from a TOML file (a path, or an ``importlib.resources`` file)."""
    source = source or str(path)
    data = read_toml(path, "suite", source)
    return Suite.from_dict(data, source)


def registered_suites(host: Host) -> dict[str, tuple[Any, str]]:
    """Suites from plugins' ``register_suites`` hooks: name -> (file or dict, description).
    The hook goes through the host's one failure policy (a broken plugin is reported and the
    others still register)."""
    return {str(name): (suite, str(description))
            for name, (suite, description) in host.suites().items()}


def list_suites(host: Host) -> list[dict[str, str]]:
    return [{"name": name, "description": description,
             "source": "plugin" if isinstance(suite, dict) else str(suite)}
            for name, (suite, description) in sorted(registered_suites(host).items())]


def published_values(model: str, dataset: str,
                     host: Host) -> dict[str, list[tuple[float, str]]]:
    """``"protocol/metric"`` -> [(value, source)] from every registered suite's
    ``[published]`` table for this model and dataset (distinct values only)."""
    found: dict[str, list[tuple[float, str]]] = {}
    try:
        names = [row["name"] for row in list_suites(host)]
    except Exception:
        return found
    for name in names:
        try:
            published = load_suite(name, host).published
        except Exception:  # a broken suite must not break a run's summary
            continue
        numbers = (published.get("values") or {}).get(dataset, {}).get(model)
        if not numbers:
            continue
        for column, value in zip(published.get("columns", []), numbers, strict=False):
            entry = (float(value), str(published.get("source", name)))
            if all(v != entry[0] for v, _ in found.get(column, [])):
                found.setdefault(column, []).append(entry)
    return found


def load_suite(name: str, host: Host) -> Suite:
    """A suite by name (registered by a plugin) or by path to a TOML file, in the components'
    current names."""
    return _find_suite(name, host).with_current_names(host)


def _find_suite(name: str, host: Host) -> Suite:
    path = Path(name)
    if path.suffix == ".toml" and path.is_file():
        return read_suite_file(path)
    registered = registered_suites(host)
    if name in registered:
        suite = registered[name][0]
        if isinstance(suite, dict):
            return Suite.from_dict(suite, f"plugin:{name}")
        return read_suite_file(suite if hasattr(suite, "read_bytes") else Path(suite))
    if path.suffix == ".toml":
        raise ConfigError(f"suite file '{name}' does not exist")
    raise ConfigError(f"suite '{name}' is not known; known: "
                      f"{', '.join(sorted(registered)) or '(none)'} "
                      "(or pass the path of a suite .toml)")
