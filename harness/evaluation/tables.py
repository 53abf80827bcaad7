"""Tables across runs: one row per (model, dataset, configuration), one column per
(protocol, metric), mean ± std over the runs (seeds) that share everything else.

Runs are only averaged when they differ by nothing but ``run.seed``: a different training
configuration (steps, lr, model.k...) gets its own row, and a different protocol stamp
(number of samples, feature extractor...) its own column, each marked with a short hash, so a
number always means one configuration and one protocol.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.configuration.run_config import load_toml
from harness.errors import HarnessError
from harness.rundir.contents import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    ENVIRONMENT_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    read_metrics,
)

if TYPE_CHECKING:  # the type only: importing the plugin loader here would cost start-up time
    from harness.host.plugins import Host


def _stamp(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (record.get("stamp") or {}).items() if k != "seed"}


def stamp_key(record: dict[str, Any]) -> str:
    """A short hash of the record's protocol stamp, ignoring the seed."""
    blob = json.dumps(_stamp(record), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def _config_data(run_dir: str | Path) -> dict[str, Any] | None:
    """The saved configuration without its seed and its ``eval`` section (None if none)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    data = load_toml(path)
    data.get("run", {}).pop("seed", None)
    data.pop("eval", None)
    return data


def config_key(run_dir: str | Path) -> str:
    """A short hash of the run's saved configuration without its seed and its ``eval``
    section ("" if none saved): evaluation settings that differ show as different protocol
    stamps (columns), not as different rows."""
    data = _config_data(run_dir)
    if data is None:
        return ""
    blob = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _read_finished(run_dir: str | Path) -> dict[str, Any]:
    """metrics.json of a run; a run stopped before it was written gets an error naming the
    command that finishes it."""
    folder = Path(run_dir)
    if not (folder / METRICS_FILE).is_file() and (folder / CONFIG_FILE).is_file():
        if (folder / WEIGHTS_FILE).is_file():
            raise HarnessError(
                f"'{run_dir}' was stopped during its evaluation (the trained weights are "
                f"saved, {METRICS_FILE} is not written yet): run `harness evaluate {run_dir}`, "
                "then report it")
        if (folder / CHECKPOINT_DIR).is_dir():
            raise HarnessError(
                f"'{run_dir}' was stopped during training: continue it with `harness run "
                f"--resume --out {run_dir}`, then report it")
    return read_metrics(run_dir)


#: what a run's environment.json holds that decides its float rounding: the same
#: configuration and seed give other numbers when one of these differs (measured: a 2-thread
#: and a 1-thread run of one AE seed end 0.7 points of test error apart)
NUMERICS = ("torch", "device", "cuda", "cpu_capability", "torch_threads", "num_processes",
            "mixed_precision")


def numerics(run_dir: str | Path) -> dict[str, Any]:
    """The :data:`NUMERICS` a run recorded (``{}`` for a run without a readable
    environment.json: an old or copied folder)."""
    try:
        env = json.loads((Path(run_dir) / ENVIRONMENT_FILE).read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(env, dict):
        return {}
    found = env.get("packages")
    packages: dict[str, Any] = found if isinstance(found, dict) else {}
    return {k: packages.get("torch") if k == "torch" else env.get(k)
            for k in NUMERICS if k in env or (k == "torch" and "torch" in packages)}


def collect(run_dirs: Iterable[str | Path], host: Host | None = None) -> list[dict[str, Any]]:
    """Rows: one per (model, dataset, config, protocol, metric, stamp): mean, std, n, seeds.
    ``host`` names the numbers in words (:func:`harness.evaluation.display.describe`); None:
    from what the runs recorded only."""
    from harness.evaluation.display import describe

    groups: dict[tuple[str, ...], list[tuple[int, float]]] = defaultdict(list)
    environments: dict[tuple[str, ...], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    stamps: dict[str, dict[str, Any]] = {}
    shown: dict[tuple[str, ...], dict[str, Any]] = {}
    configs: dict[str, dict[str, Any]] = {}
    for run_dir in dict.fromkeys(Path(d).resolve() for d in run_dirs):  # a folder counts once
        doc = _read_finished(run_dir)
        run = doc.get("run", {})
        cfg = config_key(run_dir)
        configs[cfg] = _flat(_config_data(run_dir) or {})
        env = numerics(run_dir)
        for rec in doc.get("results", []):
            value = rec.get("value")
            if not isinstance(value, int | float) or isinstance(value, bool) \
                    or not math.isfinite(value):  # an old metrics.json may hold NaN
                continue
            protocol = str(rec.get("protocol", "?"))
            if host is not None:  # a run from before a protocol's rename
                protocol = host.canonical("protocol", protocol)
            key = (run.get("model", "?"), run.get("dataset", "?"), cfg,
                   protocol, rec.get("metric", "?"), stamp_key(rec))
            stamps[key[-1]] = _stamp(rec)
            shown[key[3:5]] = rec
            groups[key].append((int(run.get("seed", 0)), float(value)))
            environments[key].append((int(run.get("seed", 0)), env))
    rows = []
    for (model, dataset, cfg, protocol, metric, stamp), values in sorted(groups.items()):
        xs = [v for _, v in values]
        mean = sum(xs) / len(xs)
        std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
        rows.append({
            "model": model, "dataset": dataset, "config": cfg, "protocol": protocol,
            "metric": metric,
            "stamp": stamp, "mean": mean, "std": std, "n": len(xs),
            "seeds": sorted(s for s, _ in values), "stamp_values": stamps[stamp],
            # each run's number, so a per-seed reproduction can be checked and claims paired
            "values": sorted([s, v] for s, v in values),
            "environments": _distinct(environments[(model, dataset, cfg, protocol, metric,
                                                    stamp)]),
            "config_values": configs.get(cfg, {}),
            "display": vars(describe(shown[(protocol, metric)], host)),
        })
    return rows


def repeated_seeds(rows: list[dict[str, Any]]) -> list[str]:
    """One line per (model, dataset, configuration) whose runs share a seed: they are averaged
    like independent seeds, but a repeat of one seed is not one (its spread is only the
    machine's nondeterminism), so the user is told rather than shown a smaller std."""
    seen: dict[tuple[str, str, str], list[int]] = {}
    for row in rows:
        seeds = row["seeds"]
        repeats = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeats:
            seen.setdefault((row["model"], row["dataset"], row["config"]), repeats)
    return [f"{model} on {dataset} (config {cfg}): several runs have seed "
            f"{', '.join(map(str, repeats))}; they are averaged as if independent seeds (n "
            "counts each run). Pass one folder per seed, or give the repeats other seeds "
            "(harness run --seed N)" for (model, dataset, cfg), repeats in seen.items()]


def _distinct(seeded: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """``[{"numerics": {...}, "seeds": [...]}, ...]``: the runs of one row by environment."""
    by: dict[str, dict[str, Any]] = {}
    for seed, env in seeded:
        entry = by.setdefault(json.dumps(env, sort_keys=True, default=str),
                              {"numerics": env, "seeds": []})
        entry["seeds"].append(seed)
    return [{**e, "seeds": sorted(e["seeds"])} for e in by.values()]


def mixed_environments(rows: list[dict[str, Any]]) -> list[str]:
    """One line per (model, dataset, configuration) whose runs were trained in different
    numerical environments (:data:`NUMERICS`): each run is a fair sample, but the set is not
    what a rerun in one environment gives, so the user is told which runs differ in what."""
    seen: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if len(row.get("environments", [])) > 1:
            seen.setdefault((row["model"], row["dataset"], row["config"]), row["environments"])
    lines = []
    for (model, dataset, cfg), envs in seen.items():
        recorded = set.intersection(*(set(e["numerics"]) for e in envs))  # by every run
        differing = [k for k in sorted(recorded)
                     if len({json.dumps(e["numerics"][k], default=str) for e in envs}) > 1]
        if not differing:
            continue
        by_values: dict[str, list[int]] = {}
        for e in envs:
            shown = ", ".join(f"{k}={e['numerics'][k]}" for k in differing)
            by_values.setdefault(shown, []).extend(e["seeds"])
        parts = "; ".join(f"{shown}: seed{'s' if len(seeds) > 1 else ''} "
                          + ", ".join(map(str, sorted(seeds)))
                          for shown, seeds in by_values.items())
        lines.append(f"{model} on {dataset} (config {cfg}): its runs were trained in different "
                     f"numerical environments ({parts}); these round differently, so the "
                     "numbers are not those one environment gives. Rerun them alike (harness "
                     "benchmark --jobs sets the threads per run) to compare bit for bit")
    return lines


ARROWS = {True: " ↑", False: " ↓", None: ""}


def header(row: dict[str, Any], *, with_protocol: bool = True) -> str:
    """A column's header in words: ``random-generation: FID ↓``, ``...: Reconstruction
    error (%) ↓`` (↑ higher is better, ↓ lower is better); the raw key goes in the legend."""
    shown = row.get("display") or {}
    unit = f" ({shown['unit']})" if shown.get("unit") else ""
    name = shown.get("name") or row["metric"]
    words = f"{name}{unit}{ARROWS[shown.get('higher_is_better')]}"
    return f"{row['protocol']}: {words}" if with_protocol else words


def _column(row: dict[str, Any], stamps: dict[tuple[str, str], set[str]]) -> str:
    base = header(row)
    if len(stamps[(row["protocol"], row["metric"])]) > 1:
        base += f" [{row['stamp']}]"
    return base


def _cell(row: dict[str, Any], digits: int) -> str:
    """mean ± std over seeds; a per-run spread (a ``_std`` key) is shown as its mean only,
    so no number carries two spreads."""
    cell = f"{row['mean']:.{digits}f}"
    if row["n"] > 1 and not str(row["metric"]).endswith("_std"):
        cell += f" ± {row['std']:.{digits}f}"
    return cell + (f" (n={row['n']})" if row["n"] > 1 else "")


def to_markdown(rows: list[dict[str, Any]], digits: int = 2) -> str:
    if not rows:
        return "(no numeric results)\n"
    stamps: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in rows:
        stamps[(row["protocol"], row["metric"])].add(row["stamp"])
    columns = sorted({_column(r, stamps) for r in rows})
    configs: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in rows:
        configs[(row["model"], row["dataset"])].add(row["config"])
    table: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for row in rows:
        cell = _cell(row, digits)
        model = row["model"]
        if len(configs[(row["model"], row["dataset"])]) > 1:
            model += f" [{row['config']}]"
        table[(model, row["dataset"])][_column(row, stamps)] = cell
    lines = ["| model | dataset | " + " | ".join(columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for (model, dataset), cells in sorted(table.items()):
        lines.append(f"| {model} | {dataset} | "
                     + " | ".join(cells.get(c, "") for c in columns) + " |")
    return "\n".join(lines + column_keys(rows) + legend(rows) + config_legend(rows)) + "\n"


def column_keys(rows: list[dict[str, Any]]) -> list[str]:
    """The raw ``protocol/metric`` key (as in metrics.json and the CSV) of every header."""
    keys = {header(r): f"{r['protocol']}/{r['metric']}" for r in rows}
    out = ["", "Columns (↑ higher is better, ↓ lower is better; mean ± std over seeds, n runs):"]
    return out + [f"- {h}: `{k}`" for h, k in sorted(keys.items())]


def config_legend(rows: list[dict[str, Any]]) -> list[str]:
    """For every model and dataset split over several configurations (rows ``model
    [hash]``), the settings that differ between them: ``[d64d6450] train.steps=100``."""
    by_pair: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        by_pair[(row["model"], row["dataset"])][row["config"]] = row.get("config_values", {})
    out: list[str] = []
    for (model, dataset), variants in sorted(by_pair.items()):
        if len(variants) < 2:
            continue
        keys = sorted({k for v in variants.values() for k in v})
        differing = [k for k in keys if len({json.dumps(v.get(k), sort_keys=True, default=str)
                                             for v in variants.values()}) > 1]
        if not out:
            out += ["", "Rows split by training configuration (what differs between them):"]
        out.append(f"- {model} on {dataset}:")
        for cfg, values in sorted(variants.items()):
            shown = ", ".join(f"{k}={values.get(k, '(absent)')}" for k in differing)
            out.append(f"  - [{cfg or 'no config.toml'}] {shown or '(same settings)'}")
    return out


def legend(rows: list[dict[str, Any]]) -> list[str]:
    """For every metric split over several columns, what differs between their stamps:
    ``[1a2b3c4d] n_samples=1250`` rather than a bare hash."""
    by_metric: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        by_metric[(row["protocol"], row["metric"])][row["stamp"]] = row.get("stamp_values", {})
    out: list[str] = []
    for (protocol, metric), variants in sorted(by_metric.items()):
        if len(variants) < 2:
            continue
        keys = sorted({k for v in variants.values() for k in v})
        differing = [k for k in keys
                     if len({json.dumps(v.get(k), sort_keys=True, default=str)
                             for v in variants.values()}) > 1]
        if not out:
            out.append("")
            out.append("Columns split by protocol stamp (what differs between them):")
        out.append(f"- {protocol}/{metric}:")
        for stamp, values in sorted(variants.items()):
            shown = ", ".join(f"{k}={values.get(k, '(absent)')}" for k in differing)
            out.append(f"  - [{stamp}] {shown}")
    return out


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    fields = ["model", "dataset", "config", "protocol", "metric", "stamp", "mean", "std", "n",
              "seeds", "values"]
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:  # values: each run's number as seed:value
        writer.writerow({**row, "seeds": " ".join(map(str, row["seeds"])),
                         "values": " ".join(f"{s}:{v!r}" for s, v in row.get("values", []))})
    return out.getvalue()


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2, allow_nan=False) + "\n"
