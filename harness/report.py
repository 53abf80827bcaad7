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
from typing import Any

from .config import load_toml
from .rundir_layout import RunLayout
from .runs import read_metrics


def _stamp(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (record.get("stamp") or {}).items() if k != "seed"}


def stamp_key(record: dict[str, Any]) -> str:
    """A short hash of the record's protocol stamp, ignoring the seed."""
    blob = json.dumps(_stamp(record), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def config_key(run_dir: str | Path) -> str:
    """A short hash of the run's saved configuration without its seed and its ``eval``
    section ("" if none saved): evaluation settings that differ show as different protocol
    stamps (columns), not as different rows."""
    path = RunLayout(run_dir).config
    if not path.is_file():
        return ""
    data = load_toml(path)
    data.get("run", {}).pop("seed", None)
    data.pop("eval", None)
    blob = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def collect(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Rows: one per (model, dataset, config, protocol, metric, stamp): mean, std, n, seeds."""
    groups: dict[tuple[str, ...], list[tuple[int, float]]] = defaultdict(list)
    stamps: dict[str, dict[str, Any]] = {}
    for run_dir in run_dirs:
        doc = read_metrics(run_dir)
        run = doc.get("run", {})
        cfg = config_key(run_dir)
        for rec in doc.get("results", []):
            value = rec.get("value")
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            key = (run.get("model", "?"), run.get("dataset", "?"), cfg,
                   rec.get("protocol", "?"), rec.get("metric", "?"), stamp_key(rec))
            stamps[key[-1]] = _stamp(rec)
            groups[key].append((int(run.get("seed", 0)), float(value)))
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
        })
    return rows


def _column(row: dict[str, Any], stamps: dict[tuple[str, str], set[str]]) -> str:
    base = f"{row['protocol']}/{row['metric']}"
    if len(stamps[(row["protocol"], row["metric"])]) > 1:
        base += f" [{row['stamp']}]"
    return base


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
        cell = f"{row['mean']:.{digits}f}"
        if row["n"] > 1:
            cell += f" ± {row['std']:.{digits}f} (n={row['n']})"
        model = row["model"]
        if len(configs[(row["model"], row["dataset"])]) > 1:
            model += f" [{row['config']}]"
        table[(model, row["dataset"])][_column(row, stamps)] = cell
    lines = ["| model | dataset | " + " | ".join(columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for (model, dataset), cells in sorted(table.items()):
        lines.append(f"| {model} | {dataset} | "
                     + " | ".join(cells.get(c, "") for c in columns) + " |")
    return "\n".join(lines + legend(rows)) + "\n"


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
              "seeds"]
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "seeds": " ".join(map(str, row["seeds"]))})
    return out.getvalue()


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2) + "\n"
