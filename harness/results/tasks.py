"""Versioned tasks: what a number means, in a form that travels between labs.

A **task** is one number of one evaluation: dataset × protocol × metric × value key
(``fashion-mnist/random-generation/fid``). Its **version** is made of the versions its
components declare (``p1.m2``: protocol version 1, metric version 2), and its **pins** are
content hashes of everything the number depends on, read from the record's stamp (what the
protocol and the metric say defines it) and from the run's ``data`` section (which decides
the splits): one hash per :data:`PIN_CATEGORIES` entry, so two numbers that differ say *what*
differs (the extractor's weights, the reference split, the sample counts...).

Why both a version and hashes: the hashes see what a stamp records (a changed extractor, a
smaller sample); the version sees what no stamp can (a changed formula). A component must
bump its ``version`` whenever a change can move its numbers; :func:`defaults_fingerprints`
and :func:`unbumped_changes` let a test catch the commonest slip, a changed default without a
bump, against a recorded table (``tests/task_defaults.json`` for the built-in plugins).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the type only: importing the plugin loader here would cost start-up time
    from harness.host.plugins import Host

#: stamp and ``data`` keys by what they pin, most important first (the order in which
#: ``harness diff`` names differences). A stamp key in none of them is in ``definition``.
PIN_CATEGORIES: dict[str, tuple[str, ...]] = {
    "extractor weights": ("feature_extractor", "feature_weights_sha256", "extractor_dataset",
                          "extractor_accuracy", "extractor_n_fit", "extractor_n_holdout"),
    "dataset split": ("dataset", "image_size", "data.n_train", "data.n_test", "data.size",
                      "data.seed", "data.hub_id", "data.validation", "split"),
    "reference statistics": ("reference", "reference_dataset", "n_reference", "subset_seed"),
    "sample counts": ("n_samples", "n_images", "n_pairs", "n_interp", "n_codes", "subsets",
                      "subset_size", "n_training_centres"),
    "sampler": ("sampler", "gmm_components", "codes", "pairs", "t"),
    "preprocessing": ("clamp", "standardization", "resize", "preprocessing"),
}
#: the rest of the stamp: the component versions, formulas, thresholds, k...
DEFINITION = "definition"
#: stamp keys that never define a number: the seed varies over the runs of one task
NOT_PINNED = frozenset({"seed"})
#: ``data`` keys that locate the data without changing it (another lab's paths)
DATA_LOCATION = frozenset({"root", "cache"})

_CATEGORY_OF = {key: cat for cat, keys in PIN_CATEGORIES.items() for key in keys}


def digest(value: Any, length: int = 16) -> str:
    """A short SHA-256 of ``value`` as canonical JSON (sorted keys): the same on every
    machine for the same content."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def task_name(dataset: str, protocol: str, key: str) -> str:
    return f"{dataset}/{protocol}/{key}"


def task_version(stamp: Mapping[str, Any]) -> str:
    """``p<protocol version>.m<metric version>`` (``p1`` for a protocol's own value)."""
    version = f"p{stamp.get('protocol_version', 1)}"
    if stamp.get("metric") is not None:
        version += f".m{stamp.get('metric_version', 1)}"
    return version


def pinned_values(stamp: Mapping[str, Any],
                  data: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The stamp's keys (and the ``data`` section's, as ``data.KEY``) by pin category."""
    out: dict[str, dict[str, Any]] = {cat: {} for cat in (*PIN_CATEGORIES, DEFINITION)}
    for key, value in stamp.items():
        if key not in NOT_PINNED:
            out[_CATEGORY_OF.get(key, DEFINITION)][key] = value
    for key, value in pinned_data(data).items():
        out["dataset split"][f"data.{key}"] = value
    return out


def pinned_data(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``data`` keys that decide the splits and differ from the harness's defaults: a
    default pins nothing, so a run that wrote its defaults, one that left them out and an
    older report that recorded no configuration name the same task (docs/results.md)."""
    from harness.api import DataConfig

    defaults = {f.name: f.default for f in dataclasses.fields(DataConfig)}
    return {k: v for k, v in (data or {}).items()
            if k not in DATA_LOCATION and not (k in defaults and defaults[k] == v)}


def pins(stamp: Mapping[str, Any], data: Mapping[str, Any] | None = None) -> dict[str, str]:
    """One content hash per pin category."""
    return {cat: digest(values) for cat, values in pinned_values(stamp, data).items()}


def describe_task(dataset: str, protocol: str, key: str, stamp: Mapping[str, Any],
                  data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The task of one recorded number, as the result schema's ``task`` object; ``id`` is
    its name and a hash of its version and pins (two ids are equal exactly when the numbers
    are comparable)."""
    stamp = {k: v for k, v in stamp.items() if k not in NOT_PINNED}
    version = task_version(stamp)
    hashes = pins(stamp, data)
    whole = digest({"version": version, "pins": hashes}, 12)
    name = task_name(dataset, protocol, key)
    return {"id": f"{name}@{whole}", "name": name, "dataset": dataset, "protocol": protocol,
            "metric": stamp.get("metric"), "key": key, "version": version, "hash": whole,
            "pins": hashes, "stamp": dict(stamp),
            "data": pinned_data(data)}


# --------------------------------------------------------------- defaults and versions
#: options that change speed, memory or where a file is, never the number (the weights'
#: hash is in the stamp): left out of the fingerprints
NOT_NUMBER_MOVING = frozenset({"batch_size", "chunk", "fid_weights"})


def defaults_fingerprint(factory: Any) -> dict[str, Any]:
    """``{"version", "defaults"}`` of one protocol or metric: its declared version (1 when
    it declares none, as its stamps say) and a hash of its ``Config`` defaults."""
    config = getattr(factory, "Config", None)
    defaults: dict[str, Any] = {}
    if config is not None and dataclasses.is_dataclass(config):
        for f in dataclasses.fields(config):
            if f.name in NOT_NUMBER_MOVING:
                continue
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                defaults[f.name] = f.default_factory()
    return {"version": getattr(factory, "version", None) or 1, "defaults": digest(defaults),
            "values": defaults}


def defaults_fingerprints(host: Host, *, builtin_only: bool = True) -> dict[str, dict[str, Any]]:
    """``kind:name`` -> :func:`defaults_fingerprint` of every registered protocol and metric
    (the built-in ones only by default)."""
    out = {}
    for kind in ("protocol", "metric"):
        for component in host.registry(kind):
            if builtin_only and not component.builtin:
                continue
            out[f"{kind}:{component.name}"] = defaults_fingerprint(component.load())
    return out


def unbumped_changes(current: Mapping[str, Mapping[str, Any]],
                     recorded: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What is wrong with ``current`` against the ``recorded`` table, one line each: a
    default changed without a version bump (the number moves, the version says it did not),
    a bump not recorded, a component not recorded, a recorded one gone."""
    problems = []
    for name, now in sorted(current.items()):
        was = recorded.get(name)
        if was is None:
            problems.append(f"{name} is not recorded: add it with version {now['version']} "
                            f"and defaults {now['defaults']}")
        elif _moved(was, now) and now["version"] == was["version"]:
            problems.append(
                f"{name}: its defaults changed ({was.get('values')} -> {now['values']}) but "
                f"its version is still {now['version']}: bump the component's `version` (and "
                "its stamp's), then record the new version and defaults")
        elif now["version"] != was["version"] or now["defaults"] != was["defaults"]:
            problems.append(f"{name}: version {was['version']} -> {now['version']}, defaults "
                            f"{was['defaults']} -> {now['defaults']}: record them")
    problems += [f"{name} is recorded but no longer registered: remove it"
                 for name in sorted(set(recorded) - set(current))]
    return problems


def _moved(was: Mapping[str, Any], now: Mapping[str, Any]) -> bool:
    """Whether a recorded default changed or went: that can move a number. An option that
    is only added is not counted (its default must reproduce the numbers from before it
    existed, which the tests of committed numbers check); it must still be recorded. A table
    recorded without its values compares by hash alone."""
    if now["defaults"] == was["defaults"]:
        return False
    if not isinstance(was.get("values"), Mapping):
        return True
    missing = object()
    return any(now["values"].get(key, missing) != value for key, value in was["values"].items())


def recorded_table(current: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The table to record (what :func:`unbumped_changes` compares against)."""
    return {name: {"version": v["version"], "defaults": v["defaults"], "values": v["values"]}
            for name, v in sorted(current.items())}


def versions_of(tasks: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """task name -> version(s) over ``tasks`` (several joined by ``, `` when they differ)."""
    seen: dict[str, list[str]] = {}
    for task in tasks:
        versions = seen.setdefault(task["name"], [])
        if task["version"] not in versions:
            versions.append(task["version"])
    return {name: ", ".join(v) for name, v in sorted(seen.items())}
