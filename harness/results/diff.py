"""``harness diff A B``: are two results comparable, and if not, exactly why, in words.

Two numbers are **comparable** when they are the same task at the same version with the same
pins (:mod:`harness.results.tasks`): same extractor weights, same splits, same reference
statistics, same sample counts and sampler, same preprocessing and definition. Each
difference is named, most important first (what moves a number most: the definition, then
the extractor's weights, the data, the sample counts...).

Other differences do not make the tasks different but can still move the numbers, and are
listed after: the training configuration of a model present on both sides, then the numerical
environment (torch, device, CPU kernels, threads, processes, precision), then other package
versions. ``--strict`` counts those as making the results incomparable too (for checking a
reproduction bit for bit).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.results import tasks as T
from harness.results.documents import NOT_TRAINING

#: the order in which differences are named (most important first)
IMPORTANCE = ("version", T.DEFINITION, *T.PIN_CATEGORIES)
#: categories named in the plural ("extractor weights differ")
PLURAL = ("extractor weights", "reference statistics", "sample counts")
#: the numerical environment, most important first (what changes rounding most)
NUMERICS = ("torch", "device", "cuda", "cpu_capability", "mixed_precision", "num_processes",
            "torch_threads")


def _show(value: Any) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, str) and len(value) > 24 and all(c in "0123456789abcdef" for c in value):
        return value[:12] + "…"
    return str(value) if not isinstance(value, dict) else \
        "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"


def _pair(key: str, a: Any, b: Any) -> str:
    return f"{key} {_show(a)} vs {_show(b)}"


def task_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[int, str]]:
    """What differs between two tasks of one name: ``(rank, words)``, most important first.
    Empty when they are the same task (same id)."""
    out: list[tuple[int, str]] = []
    if a["version"] != b["version"]:
        out.append((0, f"task version differs: {a['version']} vs {b['version']} (a protocol or "
                       "metric changed how it computes the number)"))
    va = T.pinned_values(a["stamp"], a.get("data"))
    vb = T.pinned_values(b["stamp"], b.get("data"))
    for category in (T.DEFINITION, *T.PIN_CATEGORIES):
        if a["pins"].get(category) == b["pins"].get(category):
            continue
        keys = [k for k in dict.fromkeys([*va[category], *vb[category]])
                if va[category].get(k) != vb[category].get(k)
                and k not in ("protocol_version", "metric_version")]
        if not keys and category == T.DEFINITION:
            continue  # the version line says it
        detail = "; ".join(_pair(k, va[category].get(k), vb[category].get(k)) for k in keys)
        verb = "differ" if category in PLURAL else "differs"
        out.append((IMPORTANCE.index(category), f"{category} {verb}: {detail}"))
    return sorted(out, key=lambda r: r[0])


@dataclass
class Side:
    """The pooled tasks and entries of one side's documents."""

    label: str
    docs: list[dict[str, Any]]
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for doc in self.docs:
            self.tasks.update(doc["tasks"])
            self.entries += doc["entries"]

    def by_name(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for task in self.tasks.values():
            out.setdefault(task["name"], []).append(task)
        return out

    def describe(self) -> str:
        kinds = sorted({d["kind"] for d in self.docs})
        models = sorted({e["model"] for e in self.entries})
        datasets = sorted({e["dataset"] for e in self.entries})
        suites = sorted({f"{d['suite']['name']} ({d['suite']['budget']})"
                         for d in self.docs if d.get("suite")})
        labs = sorted({d["lab"] for d in self.docs if d.get("lab")})
        parts = [" + ".join(kinds), ", ".join(models) or "no model",
                 "on " + (", ".join(datasets) or "nothing")]
        if suites:
            parts.append("suite " + ", ".join(suites))
        if labs:
            parts.append("lab " + ", ".join(labs))
        return f"{self.label}: " + "; ".join(parts) + f"; {len(self.tasks)} task(s)"


@dataclass
class Comparison:
    comparable: bool
    reasons: list[str]  # why not, most important first
    same: list[str]  # the task names that agree
    notes: list[str]  # what can still move the numbers
    header: list[str]

    def text(self) -> str:
        lines = list(self.header)
        if self.comparable:
            lines.append(f"comparable: {len(self.same)} task(s) in common with the same "
                         "version and pins")
        else:
            lines.append("not comparable:")
            lines += [f"  {i}. {r}" for i, r in enumerate(self.reasons, 1)]
            if self.same:
                lines.append(f"comparable tasks: {len(self.same)} ({_names(self.same)})")
        if self.notes:
            lines.append("can still move the numbers (they do not make the tasks different):")
            lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"comparable": self.comparable, "reasons": self.reasons,
                "comparable_tasks": self.same, "notes": self.notes}


def _names(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _environments(entries: Iterable[dict[str, Any]]) -> dict[str, list[Any]]:
    values: dict[str, list[Any]] = {}
    for e in entries:
        for env in e["environments"]:
            for key, value in env["environment"].items():
                if key == "packages":
                    for name, version in (value or {}).items():
                        bucket = values.setdefault(f"package {name}", [])
                        if version not in bucket:
                            bucket.append(version)
                    continue
                bucket = values.setdefault(key, [])
                if isinstance(value, (str, int, float, bool)) or value is None:
                    if value not in bucket:
                        bucket.append(value)
    return values


def _joined(values: list[Any]) -> str:
    return _show(values[0]) if len(values) == 1 else "{" + ", ".join(map(_show, values)) + "}"


def environment_notes(a: Side, b: Side) -> list[str]:
    """The numerical environment first (what changes rounding), then package versions."""
    ea, eb = _environments(a.entries), _environments(b.entries)
    numeric: list[str] = []
    packages: list[str] = []
    named = sorted(k for k in set(ea) | set(eb)
                   if k.startswith("package ") and k.removeprefix("package ") not in NUMERICS)
    for key in (*NUMERICS, *named):
        if key not in ea or key not in eb or set(map(str, ea[key])) == set(map(str, eb[key])):
            continue
        text = f"{key.removeprefix('package ')} {_joined(ea[key])} vs {_joined(eb[key])}"
        (packages if key.startswith("package ") else numeric).append(text)
    notes = []
    if numeric:
        notes.append("numerical environment: " + "; ".join(numeric))
    if packages:
        notes.append("package versions: " + "; ".join(packages))
    return notes


def configuration_notes(a: Side, b: Side) -> list[str]:
    """For each model on both sides whose training configurations differ: the keys."""
    notes: list[str] = []
    unknown: dict[str, list[str]] = {"A": [], "B": []}
    for model in sorted({e["model"] for e in a.entries} & {e["model"] for e in b.entries}):
        ca = {e["config_hash"]: e["configuration"] for e in a.entries if e["model"] == model}
        cb = {e["config_hash"]: e["configuration"] for e in b.entries if e["model"] == model}
        if set(ca) == set(cb):
            continue
        left, right = next(iter(ca.values())), next(iter(cb.values()))
        if not left or not right:
            unknown["A" if not left else "B"].append(model)
            continue
        both = [k for k in sorted(set(left) & set(right))
                if not k.startswith("eval.") and k not in NOT_TRAINING]
        keys = [k for k in both if left[k] != right[k]]
        one_side = len([k for k in set(left) ^ set(right)
                        if not k.startswith("eval.") and k not in NOT_TRAINING])
        if keys:
            notes.append(f"training configuration of {model}: "
                         + "; ".join(_pair(k, left[k], right[k]) for k in keys)
                         + (f" ({one_side} key(s) recorded on one side only)" if one_side
                            else ""))
    notes += [f"training configuration of {', '.join(models)}: not recorded on {side}"
              for side, models in unknown.items() if models]
    return notes


def compare(a_docs: list[dict[str, Any]], b_docs: list[dict[str, Any]], *,
            labels: tuple[str, str] = ("A", "B"), strict: bool = False) -> Comparison:
    """Compare two sides, each the documents read from one argument."""
    a, b = Side(labels[0], a_docs), Side(labels[1], b_docs)
    na, nb = a.by_name(), b.by_name()
    common = sorted(set(na) & set(nb))
    ranked: dict[str, tuple[int, list[str]]] = {}  # reason -> (rank, tasks it concerns)
    same = []
    for name in common:
        ids_a, ids_b = {t["id"] for t in na[name]}, {t["id"] for t in nb[name]}
        if ids_a == ids_b:
            same.append(name)
            continue
        for ta in na[name]:
            for tb in nb[name]:
                if ta["id"] in ids_b or tb["id"] in ids_a:
                    continue
                for rank, words in task_differences(ta, tb):
                    ranked.setdefault(words, (rank, []))[1].append(name)
    reasons = [f"{words} (in {_names(sorted(set(where)))})"
               for words, (_, where) in sorted(ranked.items(), key=lambda kv: kv[1][0])]
    if not common:
        reasons.append(f"no task in common: A has {_names(sorted(na)) or 'none'}; "
                       f"B has {_names(sorted(nb)) or 'none'}")
    notes = configuration_notes(a, b) + environment_notes(a, b)
    for letter, names, other in (("A", na, nb), ("B", nb, na)):
        alone = sorted(set(names) - set(other))
        if alone and common:
            notes.append(f"only {letter} has {len(alone)} task(s): {_names(alone)}")
    for side in (a, b):
        upgraded = sorted({u for d in side.docs for u in d["upgraded"]})
        if upgraded:
            notes.append(f"{side.label.split(' ')[0]} was read from older files: "
                         + "; ".join(upgraded))
    comparable = not reasons and not (strict and notes)
    if strict and notes and not reasons:
        reasons = [f"--strict: {n}" for n in notes]
    return Comparison(comparable, reasons, same, notes, [a.describe(), b.describe()])
