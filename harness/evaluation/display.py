"""How a run's numbers are shown to a reader: a name in words, a unit, the better direction,
the paper's value beside it, and one line of why when a protocol produced no number.

The words come from the components themselves (``display`` and ``title`` class attributes,
see :class:`harness.api.ValueDisplay`); a component that declares nothing is shown by its raw
key, with the direction it recorded. Published values come from the ``[published]`` tables
of the registered benchmark suites, so the host names no paper.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from harness.api import ValueDisplay

if TYPE_CHECKING:  # the type only: importing the plugin loader here would cost start-up time
    from harness.host.plugins import Host

STD_SUFFIX = "_std"


def _component(host: Host | None, kind: str, name: str) -> Any:
    """The registered class of a component, or None (unknown, or it fails to load)."""
    if host is None or not name:
        return None
    try:
        return host.get(kind, name).load()
    except Exception:  # a display must never fail a run that has finished
        return None


def _declared(component: Any, key: str) -> ValueDisplay | None:
    table = getattr(component, "display", None)
    value = table.get(key) if isinstance(table, dict) else None
    return value if isinstance(value, ValueDisplay) else None


def _source(record: dict[str, Any], host: Host | None) -> Any:
    if record.get("source") == "protocol":
        return _component(host, "protocol", str(record.get("protocol", "")))
    return _component(host, "metric", str(record.get("source", "")))


def describe(record: dict[str, Any], host: Host | None = None) -> ValueDisplay:
    """The display of one metrics.json record: what its component declares for the key,
    else the spread of a declared ``key_std``'s base, else the raw key (a ``_percent`` key
    in %) with the record's ``higher_is_better``."""
    key = str(record.get("metric", ""))
    component = _source(record, host)
    found = _declared(component, key)
    if found is not None:
        return found
    if key.endswith(STD_SUFFIX):
        base = _declared(component, key.removesuffix(STD_SUFFIX))
        if base is not None:
            return ValueDisplay(f"{base.name} (std)", base.unit, None)
    # a protocol's reference = "both": the value against the test split, and its gap
    for suffix, words, keeps_direction in (("_test", "against the test split", True),
                                           ("_gap", "test − train gap", False)):
        base = _declared(component, key.removesuffix(suffix)) if key.endswith(suffix) else None
        if base is not None:
            return ValueDisplay(f"{base.name}, {words}", base.unit,
                                base.higher_is_better if keeps_direction else None)
    unit = "%" if key.endswith("_percent") or "_percent_" in key else ""
    direction = record.get("higher_is_better")
    return ValueDisplay(key, unit, direction if isinstance(direction, bool) else None)


def protocol_title(name: str, host: Host | None = None, stamp: dict[str, Any] | None = None) -> str:
    """A protocol's name in words: what its ``title_for(stamp)`` says of results with that
    stamp, where the title depends on how they were made (random generation names the
    sampler its stamp records), else its ``title``, else its registered name."""
    component = _component(host, "protocol", name)
    title_for = getattr(component, "title_for", None)
    if stamp and callable(title_for):
        try:
            found = title_for(stamp)
        except Exception:  # a display must never fail a run that has finished
            found = None
        if isinstance(found, str) and found:
            return found
    title = getattr(component, "title", None)
    return title if isinstance(title, str) and title else name


def result_stamps(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """protocol -> the stamp of its first result in a metrics document (what
    :func:`protocol_title` names it by)."""
    found: dict[str, dict[str, Any]] = {}
    for rec in doc.get("results", []):
        if isinstance(rec.get("stamp"), dict):
            found.setdefault(str(rec.get("protocol")), rec["stamp"])
    return found


def shared_title(name: str, host: Host | None, stamps: dict[str, dict[str, Any]]) -> str:
    """One title for the results of several models (``stamps``: model -> the stamp of its
    results): the title they share, else each title followed by its models, e.g.
    ``Random generation (GMM on the codes): ae, vae; Random generation (the model's own
    sampler): dcgan``."""
    plain = protocol_title(name, host)
    by_title: dict[str, list[str]] = {}
    for model, stamp in stamps.items():
        by_title.setdefault(protocol_title(name, host, stamp), []).append(model)
    if len(by_title) <= 1:
        return next(iter(by_title), plain)
    ordered = sorted(by_title.items(), key=lambda item: item[0] != plain)  # the plain one first
    return "; ".join(f"{title}: {', '.join(models)}" for title, models in ordered)


def unscored_reason(name: str, protocol: Any, metrics: Iterable[tuple[str, Any]],
                    info: Any, host: Host | None = None) -> str:
    """Why a protocol that returned no number of its own was scored by no metric."""
    from harness.evaluation.evaluate import applies, metric_scores

    metrics = list(metrics)
    scoring = [m_name for m_name, m in metrics if metric_scores(m, name, protocol, host)]
    kind = getattr(protocol, "kind", "?")
    if not scoring:
        selected = ", ".join(m for m, _ in metrics) or "none"
        return (f"no selected metric scores its {kind} (selected: {selected}); "
                f"its pictures are in images/{name}.png")
    refused = [m_name for m_name, m in metrics
               if metric_scores(m, name, protocol, host) and not applies(m, info)]
    return (f"{', '.join(refused)} {'does' if len(refused) == 1 else 'do'} not apply to "
            f"dataset '{info.name}'; its pictures are in images/{name}.png")


def format_value(value: float, unit: str, spread: float | None = None) -> str:
    """``15.43 ± 4.1 %``: four significant digits, the spread two."""
    shown = f"{value:.4g}"
    if spread is not None and math.isfinite(spread):
        shown += f" ± {spread:.2g}"
    return f"{shown} {unit}".rstrip()


NOT_COMPUTED = "not computed: "


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def result_rows(doc: dict[str, Any], host: Host | None = None,
                paper: dict[str, list[tuple[float, str]]] | None = None) -> list[dict[str, Any]]:
    """One row per number of a metrics document, in words: protocol title, name, value (with
    its spread when the document has ``key_std`` and ``key`` declares no own line for it),
    direction, paper value; a protocol with no number gets one row saying why."""
    results = [r for r in doc.get("results", []) if _numeric(r.get("value"))
               or r.get("value") is None]
    keys = {(r.get("protocol"), r.get("metric")) for r in results if _numeric(r.get("value"))}
    by_key = {(r.get("protocol"), r.get("metric")): r for r in results}
    stamps = result_stamps(doc)

    def title(protocol: Any) -> str:
        return protocol_title(str(protocol), host, stamps.get(str(protocol)))

    rows: list[dict[str, Any]] = []
    for rec in results:
        protocol, key = rec.get("protocol"), str(rec.get("metric"))
        if key.endswith(STD_SUFFIX) and (protocol, key.removesuffix(STD_SUFFIX)) in keys:
            continue  # shown once, beside its mean
        shown = describe(rec, host)
        value = rec.get("value")
        std = by_key.get((protocol, key + STD_SUFFIX), {}).get("value")
        rows.append({
            "protocol": protocol, "title": title(protocol),
            "key": f"{protocol}/{key}", "name": shown.name, "unit": shown.unit,
            "direction": shown.direction,
            "value": format_value(value, shown.unit, std if _numeric(std) else None)
            if _numeric(value) else NOT_COMPUTED + _short(rec.get("error") or rec.get("reason")),
            "paper": ", ".join(f"{v:g} ({src})" for v, src in
                               (paper or {}).get(f"{protocol}/{key}", [])),
        })
    notes = [(p, NO_NUMBER, why) for p, why in (doc.get("unscored") or {}).items()]
    notes += [(p, NO_NUMBER, why) for p, why in (doc.get("not_applicable") or {}).items()]
    grouped: dict[tuple[str, str], list[str]] = {}
    for note in doc.get("not_scored") or []:
        if note.get("protocol") in (doc.get("unscored") or {}):
            continue  # its "no number" line says it already
        grouped.setdefault((str(note.get("protocol")), str(note.get("reason"))),
                           []).append(str(note.get("metric")))
    notes += [(p, NOT_SCORED, f"{', '.join(names)} ({why})")
              for (p, why), names in grouped.items()]
    for protocol, name, text in notes:
        rows.append({"protocol": protocol, "title": title(protocol),
                     "key": protocol, "name": name, "unit": "", "direction": "",
                     "value": text, "paper": ""})
    return rows


#: the names of the summary rows that say why there is no number
NO_NUMBER, NOT_SCORED = "no number", "not scored"


def _short(error: Any) -> str:
    text = str(error or "no value").removeprefix(NOT_COMPUTED)
    return text[:100] + "... (see metrics.json)" if len(text) > 100 else text


def summary_lines(doc: dict[str, Any], host: Host | None = None, *,
                  paper: dict[str, list[tuple[float, str]]] | None = None) -> list[str]:
    """The results of a run as a reader reads them: grouped by protocol, each number with
    its name, value and unit, the better direction, and the paper's value when known."""
    rows = result_rows(doc, host, paper)
    width = max((len(r["name"]) for r in rows), default=0)
    # numbers line up; a "not computed" note is as long as it is and pads nothing
    vwidth = max((len(r["value"]) for r in rows if r["name"] not in (NO_NUMBER, NOT_SCORED)
                  and not r["value"].startswith(NOT_COMPUTED)), default=0)
    lines: list[str] = []
    for title in dict.fromkeys(r["title"] for r in rows):
        lines.append(f"  {title}")
        for row in (r for r in rows if r["title"] == title):
            if row["name"] in (NO_NUMBER, NOT_SCORED):
                lines.append(f"    {row['name']}: {row['value']}")
                continue
            line = f"    {row['name']:<{width}}  {row['value']:<{vwidth}}"
            if row["direction"]:
                line += f"  ({row['direction']})"
            if row["paper"]:
                line += f"  paper: {row['paper']}"
            lines.append(line.rstrip())
    return lines


def cost_lines(doc: dict[str, Any], host: Host | None = None) -> list[str]:
    """Where the evaluation's time went (``evaluation_seconds`` of metrics.json): one line per
    protocol, its own run (sampling, decoding) then each metric that scored it."""
    seconds = doc.get("evaluation_seconds")
    if not isinstance(seconds, dict) or not seconds:
        return []
    lines = ["  evaluation time (s):"]
    stamps = result_stamps(doc)
    titles = {p: protocol_title(str(p), host, stamps.get(str(p))) for p in seconds}
    width = max(len(t) for t in titles.values())
    for protocol, parts in seconds.items():
        if not isinstance(parts, dict):
            continue
        total = sum(v for v in parts.values() if _numeric(v))
        own = parts.get("protocol")
        shown = [f"run {own:.1f}"] if _numeric(own) else []
        shown += [f"{name} {v:.1f}" for name, v in parts.items()
                  if name != "protocol" and _numeric(v)]
        lines.append(f"    {titles[protocol]:<{width}}  {total:6.1f}  "
                     f"({', '.join(shown)})")
    return lines
