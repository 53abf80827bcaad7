"""The report of a ``harness benchmark`` directory: Markdown, CSV and JSON tables, the paper's
claims checked against our numbers, the figures (:mod:`harness.benchmark.figures`: drawn
from what the runs wrote), and one self-contained HTML page.

Written by :func:`write_report` into the benchmark directory: ``report.md``, ``report.csv``,
``report.json``, ``report.html`` (figures embedded as data URIs) and ``figures/*.png``.
Every table names the budget, so a reduced run is never mistaken for the paper's protocol.

A folder whose run folders are gone (a committed result keeps its report and figures, not its
runs) is re-rendered from what ``report.json`` keeps (:func:`gather`), with the numbers it had.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.benchmark import directory as bdir
from harness.errors import HarnessError
from harness.evaluation import tables

if TYPE_CHECKING:  # the type only: importing the plugin loader here would cost start-up time
    from harness.host.plugins import Host

BUDGET_NOTE = {"smoke": "SMOKE budget: a few steps, tiny sample counts; checks the pipeline, "
                        "says nothing about the models",
               "cpu": "CPU budget: reduced steps and sample counts; not the paper's protocol",
               "paper": "PAPER budget: the suite's full configuration"}

SMOKE_CLAIMS = ("At the smoke budget (a few training steps) these verdicts are computed the "
                "same way but are not evidence for or against the paper: the models are barely "
                "trained.")

# ------------------------------------------------------------------------------- numbers
@dataclass
class Gathered:
    """What the report shows, read from the runs' folders (or, when they are all gone, from
    the ``report.json`` an earlier report wrote): the rows, the protocols that did not apply
    ((dataset, model, protocol, why)), each run's threads, and the figures kept (None: draw
    them from the runs)."""

    rows: list[dict[str, Any]]
    not_applicable: list[list[str]]
    threads: dict[str, str]
    figures: list[tuple[str, Path]] | None = None

    @property
    def by(self) -> dict[tuple[str, str, str], Any]:
        return index_rows(self.rows)


def _done(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in state["runs"].values()
            if r.get("phase") == "final" and r.get("status") == "done"]


def gather(state: dict[str, Any], out: Path, host: Host) -> Gathered:
    """The report's data from the finished runs' folders; from ``report.json`` when the
    folder has finished runs and none of their folders (:func:`_stored`)."""
    stored = _stored(state, out)
    if stored is not None:
        return stored
    done = _done(state)
    rows = tables.collect([out / r["dir"] for r in done], host) if done else []
    threads = {rid: str(tables.numerics(out / r["dir"]).get("torch_threads", ""))
               if "dir" in r else "" for rid, r in state["runs"].items()}
    return Gathered(rows, _not_applicable(state, out), threads)


#: what report.json keeps beside the rows so the report can be rebuilt without the runs
STORED_KEYS = ("not_applicable", "threads", "figures")


def _stored(state: dict[str, Any], out: Path) -> Gathered | None:
    """What ``report.json`` keeps, for a folder whose finished runs' folders are all gone;
    None while any is there, or with no report.json (then the runs' folders are read, and
    missing ones reported as such). A report.json of another suite or budget is refused."""
    done = _done(state)
    path = out / "report.json"
    if not done or any((out / r["dir"]).exists() for r in done) or not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HarnessError(f"'{path}' cannot be read ({exc}); the run folders are gone, so the "
                           "report cannot be rebuilt without it") from exc
    if doc.get("suite") != state["suite"]["name"] or doc.get("budget") != state["budget"]:
        raise HarnessError(f"'{path}' is the report of {doc.get('suite')!r} at budget "
                           f"{doc.get('budget')!r}, not of this folder's benchmark; the run "
                           "folders are gone, so the report cannot be rebuilt")
    lacking = [key for key in STORED_KEYS if key not in doc]
    if lacking:
        raise HarnessError(f"the run folders of '{out}' are gone and its report.json was "
                           f"written before reports kept {', '.join(lacking)}: the report "
                           "cannot be rebuilt whole, so it is left as it is (put the runs' "
                           f"folders back under {out / 'runs'} to rebuild it from them)")
    figures = [(str(f["caption"]), out / str(f["file"])) for f in doc.get("figures", [])
               if (out / str(f["file"])).is_file()]
    return Gathered(list(doc.get("rows", [])),
                    [list(map(str, na)) for na in doc.get("not_applicable", [])],
                    {str(k): str(v) for k, v in (doc.get("threads") or {}).items()}, figures)


def index_rows(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], Any]:
    """(dataset, model, "protocol/metric") -> row; of several stamps of one metric, the one
    with most seeds."""
    by: dict[tuple[str, str, str], Any] = {}
    for row in rows:
        key = (row["dataset"], row["model"], f"{row['protocol']}/{row['metric']}")
        if key not in by or row["n"] > by[key]["n"]:
            by[key] = row
    return by


def final_rows(state: dict[str, Any], out: Path, host: Host) -> list[dict[str, Any]]:
    """The rows (:func:`harness.evaluation.tables.collect`) of the finished final runs."""
    return gather(state, out, host).rows


def _not_applicable(state: dict[str, Any], out: Path) -> list[list[str]]:
    """(dataset, model, protocol, why) for every protocol a finished run listed as not
    applicable to its model (metrics.json's ``not_applicable``), once per model."""
    found: dict[tuple[str, str, str], str] = {}
    for r in _done(state):
        try:
            doc = json.loads((out / r["dir"] / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # the results tables say what is missing
        run = doc.get("run") or {}
        for protocol, why in (doc.get("not_applicable") or {}).items():
            key = (str(run.get("dataset", "")), str(run.get("model", "")), str(protocol))
            found.setdefault(key, str(why))
    return [[*key, why] for key, why in sorted(found.items())]


def _fmt(row: dict[str, Any] | None, digits: int = 2) -> str:
    if row is None:
        return "not measured"
    return f"{row['mean']:.{digits}f} ± {row['std']:.{digits}f} (n={row['n']})"


def claims(state: dict[str, Any], by: dict[Any, Any]) -> list[dict[str, Any]]:
    """The suite's ``[[claims]]``, each judged on every dataset of this benchmark it covers
    (:func:`judge`): supported / not supported / inconclusive / not measured, with the
    numbers, the effect sizes with their confidence intervals and the seeds."""
    datasets = state["suite"]["datasets"]
    out: list[dict[str, Any]] = []
    for claim in state["suite"].get("claims", []):
        wanted = [d for d in (claim.get("datasets") or datasets)
                  if d not in claim.get("skip", [])]
        scope = [d for d in wanted if d in datasets]
        if not scope:
            out.append({"claim": claim["text"], "dataset": ", ".join(wanted),
                        "verdict": "not measured",
                        "evidence": "no run on that dataset in this benchmark"})
        out += [judge(claim, dataset, by) for dataset in scope]
    return out


def judge(claim: dict[str, Any], dataset: str, by: dict[Any, Any]) -> dict[str, Any]:
    """One claim on one dataset, judged by :mod:`harness.benchmark.evidence`: ``test =
    "lower"``: the difference of means (model − each model of ``than``) with its 95 % CI;
    ``"wider"``: the variance ratio with its F interval (needs two seeds or more). Verdict:
    supported / not supported / inconclusive, or not measured."""
    from harness.benchmark import evidence as ev

    metric, test = claim["metric"], claim.get("test", "lower")
    names = [claim["model"], *claim["than"]]
    rows = [by.get((dataset, m, metric)) for m in names]
    found = [r for r in rows if r is not None]
    comparisons: list[dict[str, Any]] = []
    if len(found) < len(rows) or any(r["n"] < 2 for r in found):
        verdict = "not measured"
    else:
        compare = ev.variance_ratio if test == "wider" else ev.mean_difference
        comparisons = [{"rival": m, **compare(found[0], r)}
                       for m, r in zip(names[1:], found[1:], strict=True)]
        verdict = ev.verdict(test, comparisons)
    numbers = ", ".join(f"{m} {_fmt(r)}" for m, r in zip(names, rows, strict=True))
    evidence = ("std over seeds: " if test == "wider" else "") + numbers
    if comparisons:
        evidence += "; " + "; ".join(ev.describe(test, names[0], c["rival"], c)
                                     for c in comparisons)
    for extra in claim.get("evidence", []):
        evidence += f"; {extra}: " + ", ".join(f"{m} {_fmt(by.get((dataset, m, extra)))}"
                                              for m in names)
    used = sorted({s for r in rows if r for s in r["seeds"]})
    evidence += f" ({metric}; {'seeds ' + ','.join(map(str, used)) if used else 'no runs'})"
    if claim.get("note"):
        evidence += f". Note: {claim['note']}"
    # JSON-safe: an infinite bound (a rival with no spread at all) is stored as null
    stored = [{k: None if isinstance(v, float) and not math.isfinite(v) else v
               for k, v in c.items()} for c in comparisons]
    return {"claim": claim["text"], "dataset": dataset, "verdict": verdict,
            "evidence": evidence, "comparisons": stored}


def paper_rows(state: dict[str, Any], by: dict[Any, Any]) -> tuple[list[str], list[list[str]],
                                                                   str]:
    """The suite's ``[published]`` numbers beside ours: (header, rows, note)."""
    published = state["suite"].get("published") or {}
    columns, values = published.get("columns", []), published.get("values", {})
    header = ["dataset", "model"]
    for column in columns:
        header += [f"paper {column}", f"ours {column}"]
    body = []
    for dataset in state["suite"]["datasets"]:
        for model, numbers in values.get(dataset, {}).items():
            cells = [dataset, model]
            for column, number in zip(columns, numbers, strict=True):
                cells += [f"{number:g}", _fmt(by.get((dataset, model, column)))]
            body.append(cells)
    missing = [d for d in state["suite"]["datasets"] if d not in values]
    note = f"source: {published.get('source', 'the paper')}"
    if missing:
        note += (f"; the paper reports no numbers for {', '.join(missing)} (it reports "
                 f"{', '.join(values) or 'none'})")
    return header, body, note


# ------------------------------------------------------------------------------- tables
def to_markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


_md_table = to_markdown


class Header(str):
    """A column header in words that keeps the raw ``protocol/metric`` key it stands for: the
    HTML shows the key as a tooltip and in a line under the table, Markdown under the table."""

    key: str

    def __new__(cls, text: str, key: str = "") -> Header:
        made = super().__new__(cls, text)
        made.key = key
        return made


def _keys_line(header: list[str]) -> str:
    keys = [f"{h} = {h.key}" for h in header if isinstance(h, Header) and h.key]
    return "raw keys (metrics.json, report.csv): " + "; ".join(keys) if keys else ""


def _html_table(header: list[str], body: list[list[str]]) -> str:
    head = "".join(
        f"<th title='{html.escape(h.key, quote=True)}'>{html.escape(h)}</th>"
        if isinstance(h, Header) and h.key else f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in body)
    keys = _keys_line(header)
    foot = f"<p class='keys'>{html.escape(keys)}</p>" if keys else ""
    # a table wider than the page scrolls in its box; headers wrap between words only
    return (f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>"
            f"</table></div>{foot}")


def _cell(row: dict[str, Any] | None) -> str:
    """mean ± std (n) over seeds; a per-run spread (a ``_std`` key) as its mean only, so no
    number carries two spreads."""
    if row is None:
        return ""
    if str(row["metric"]).endswith("_std"):
        return f"{row['mean']:.3f} (n={row['n']})"
    return _fmt(row, 3)


def results_tables(rows: list[dict[str, Any]], by: dict[Any, Any], state: dict[str, Any],
                   note: str, host: Host) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """One results table per protocol (so each fits a page), headers in words with unit and
    direction (:func:`harness.evaluation.tables.header`), the raw key kept in :class:`Header`;
    the swept value of each model beside it."""
    from harness.evaluation.display import shared_title

    key, cell = _swept_column(state)
    models = sorted({(r["dataset"], r["model"]) for r in rows})
    shown = {(r["protocol"], r["metric"]): r for r in rows}
    out = []
    for protocol in sorted({p for p, _ in shown}):
        metrics = sorted(m for p, m in shown if p == protocol)
        header = ["dataset", "model"] + ([key] if key else []) + [
            Header(tables.header(shown[(protocol, m)], with_protocol=False), f"{protocol}/{m}")
            for m in metrics]
        body = [[d, m] + ([cell(d, m)] if key else [])
                + [_cell(by.get((d, m, f"{protocol}/{mm}"))) for mm in metrics]
                for d, m in models]
        stamps = {r["model"]: r.get("stamp_values") or {} for r in rows
                  if r["protocol"] == protocol}
        out.append((f"Results: {shared_title(protocol, host, stamps)}",
                    f"{note}; mean ± std (n runs) over seeds; ↑ higher is better, ↓ lower is "
                    "better", header, body))
    return out


def _swept_keys(state: dict[str, Any]) -> dict[str, str]:
    """model -> the last part of the key its suite sweeps (``model.beta`` -> ``beta``), from
    the suite as recorded: ``sweep`` (a list; one table in older records) or ``[beta]``."""
    suite = state["suite"]
    sweeps = suite.get("sweep") or ({"key": "model.beta", **suite["beta"]}
                                    if suite.get("beta") else [])
    sweeps = [sweeps] if isinstance(sweeps, dict) else sweeps
    return {model: str(s["key"]).rpartition(".")[2] for s in sweeps
            for model in s.get("models", [])}


def _swept_values(state: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """(dataset, model) -> the swept value its final runs used."""
    return {(r["dataset"], r["model"]): r.get("value", r.get("beta"))
            for r in state["runs"].values() if r.get("phase") == "final"}


def _value_cell(v: Any) -> str:
    return "" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def _swept_column(state: dict[str, Any]) -> tuple[str, Any]:
    """The results table's column of swept values: its header (the key when the suite
    sweeps one, else "swept") and (dataset, model) -> cell (``key=value`` when several)."""
    keys, values = _swept_keys(state), _swept_values(state)
    if not keys:
        return "", lambda d, m: ""
    distinct = set(keys.values())
    if len(distinct) == 1:
        return distinct.pop(), lambda d, m: _value_cell(values.get((d, m)))
    return "swept", lambda d, m: (f"{keys[m]}={_value_cell(values.get((d, m)))}"
                                  if m in keys and values.get((d, m)) is not None else "")


def _selection_tables(state: dict[str, Any], note: str) -> list[tuple[str, str, list[str],
                                                                     list[list[str]]]]:
    found = []
    for choice in state.get("sweep_selection") or state.get("beta_selection") or []:
        chosen = json.dumps(choice.get("chosen"))
        body = [[str(json.loads(v)), "" if x is None else f"{x:.4g}",
                 "chosen" if choice.get("chosen") is not None and
                 json.loads(v) == json.loads(chosen) else ""]
                for v, x in choice.get("values", {}).items()]
        key = choice.get("key", "model.beta")
        found.append((f"Sweep of {key}: {choice['model']} on {choice['dataset']}",
                      f"{note}; rule: {choice['rule']}", [key, choice.get("metric", ""), ""],
                      body))
    return found


def sections(state: dict[str, Any], out: Path, host: Host, data: Gathered | None = None
             ) -> tuple[list[tuple[Any, ...]], list[dict[str, str]], list[dict[str, Any]]]:
    """(title, note, header, body[, footnotes]) tables, the claims and the raw rows;
    ``data``: what :func:`gather` read (read here when None)."""
    data = data or gather(state, out, host)
    rows, by = data.rows, data.by
    budget = state["budget"]
    note = f"budget: {budget} ({BUDGET_NOTE.get(budget, '')})"
    out_tables: list[tuple[Any, ...]] = list(
        side_by_side(state, data, host, note, lambda r: _cell(r)))
    out_tables += results_tables(rows, by, state, note, host)
    if state["suite"].get("published"):
        pheader, prow, pnote = paper_rows(state, by)
        out_tables.append(("The paper's numbers beside ours", f"{note}; {pnote}", pheader,
                           prow))
    out_tables += _selection_tables(state, note)
    if data.not_applicable:
        out_tables.append(("Protocols that do not apply to a model (not run, not failures)",
                           note, ["dataset", "model", "protocol", "why"], data.not_applicable))
    missing = state.get("unavailable") or {}
    if missing:
        out_tables.append(("Datasets not available on this machine (their runs were skipped)",
                           note, ["dataset", "why"],
                           [[d, " ".join(str(w).split())[:300]] for d, w in missing.items()]))
    mixed = tables.mixed_environments(rows)
    if mixed:
        out_tables.append(("Runs of one configuration trained in different numerical "
                           "environments", note, ["what differs"], [[line] for line in mixed]))
    run_body = [[rid, r.get("phase", ""), r.get("status", ""),
                 f"{float(r.get('wall_s') or 0):.1f}", data.threads.get(rid, ""),
                 r.get("error", "")]
                for rid, r in sorted(state["runs"].items())]
    out_tables.append(("Runs: wall time (s), threads and failures", note,
                       ["run", "phase", "status", "wall s", "threads", "error"], run_body))
    return out_tables, claims(state, by), rows


# ------------------------------------------------------------------ side-by-side tables
NO_NUMBER = "—"


def side_by_side(state: dict[str, Any], data: Gathered, host: Host, note: str,
                 cell: Any) -> list[tuple[str, str, list[str], list[list[str]], list[str]]]:
    """The suite's ``[[side_by_side]]`` tables: one metric of several protocols, a column
    each, a row per dataset and model (the suite's order), ``cell(row)`` the number. A cell
    without a number is an em dash with a footnote saying why: the protocol does not apply
    to the model (its recorded reason), or its results have the stamp of a later column's
    (the same samples, drawn the same way: a sample-only model's prior samples are its own
    sampler's), which shows them once. A number whose title is not its column's (a model's
    own sampler under random generation) is footnoted with its own."""
    suite = state["suite"]
    views = suite.get("side_by_side") or []
    if not views:
        return []
    by = data.by
    why = {(d, m, p): reason for d, m, p, reason in data.not_applicable}
    datasets, models = suite.get("datasets", []), suite.get("models", [])
    pairs = sorted({(r["dataset"], r["model"]) for r in data.rows} | {(d, m) for d, m, _ in why},
                   key=lambda dm: (_rank(datasets, dm[0]), _rank(models, dm[1]), dm))
    out = []
    for view in views:
        metric, columns = view["metric"], list(view["columns"])
        found = {(d, m, c): by.get((d, m, f"{c}/{metric}")) for d, m in pairs for c in columns}
        titles = {c: _column_title(c, [r for (_, _, cc), r in found.items() if cc == c and r],
                                   host) for c in columns}
        notes: dict[str, int] = {}
        body = [[d, m, *(_view_cell(found, (d, m), columns, i, why, notes, titles, host, cell)
                         for i in range(len(columns)))] for d, m in pairs]
        header = ["dataset", "model"] + [
            Header(f"{titles[c]}: {_metric_words(found, c, metric)}", f"{c}/{metric}")
            for c in columns]
        text = f"{note}; mean ± std (n runs) over seeds" + (f"; {view['note']}"
                                                            if view.get("note") else "")
        out.append((str(view["title"]), text, header, body,
                    [f"[{n}] {t}" for t, n in notes.items()]))
    return out


def side_by_side_text(state: dict[str, Any], out: Path, host: Host, width: int = 100) -> str:
    """The side-by-side tables for a terminal (the benchmark's closing output)."""
    from harness.evaluation.text_table import number, words_to_text

    def cell(row: dict[str, Any]) -> str:
        return f"{number(row['mean'], row['std'] if row['n'] > 1 else None)} (n={row['n']})"

    views = side_by_side(state, gather(state, out, host), host, "", cell)
    return "\n".join(words_to_text(title, [str(h) for h in header], body, notes, 2, width)
                     for title, _, header, body, notes in views)


#: the footnote of a cell whose samples a later column of its row shows
SAME_SAMPLES = "the same samples as this row's {later} cell (equal stamps{how}), shown there once"


def _view_cell(found: dict[Any, Any], pair: tuple[str, str], columns: list[str], i: int,
               why: dict[Any, str], notes: dict[str, int], titles: dict[str, str], host: Host,
               cell: Any) -> str:
    """Column ``i``'s cell of a side-by-side row (see :func:`side_by_side`); a footnote's
    text goes into ``notes`` (text -> its number) the first time it is used."""
    from harness.evaluation.display import protocol_title

    def mark(text: str) -> str:
        return f"[{notes.setdefault(text, len(notes) + 1)}]"

    (dataset, model), column = pair, columns[i]
    row = found[(dataset, model, column)]
    if row is None:
        reason = why.get((dataset, model, column))
        return f"{NO_NUMBER} {mark(reason)}" if reason else "not measured"
    later = next((c for c in columns[i + 1:] if found[(dataset, model, c)]
                  and found[(dataset, model, c)]["stamp_values"] == row["stamp_values"]), None)
    if later is not None:
        sampler = row["stamp_values"].get("sampler")
        how = f"; sampler: {sampler}" if sampler else ""
        return f"{NO_NUMBER} {mark(SAME_SAMPLES.format(later=later, how=how))}"
    own = protocol_title(column, host, row["stamp_values"])
    return cell(row) + (f" {mark(own)}" if own != titles[column] else "")


def _rank(order: list[str], name: str) -> int:
    return order.index(name) if name in order else len(order)


def _column_title(protocol: str, rows: list[dict[str, Any]], host: Host) -> str:
    """The title most of a column's numbers have (their stamps say how they were made)."""
    from harness.evaluation.display import protocol_title

    titles = Counter(protocol_title(protocol, host, r["stamp_values"]) for r in rows)
    return titles.most_common(1)[0][0] if titles else protocol_title(protocol, host)


def _metric_words(found: dict[Any, Any], protocol: str, metric: str) -> str:
    row = next((r for (_, _, c), r in found.items() if c == protocol and r), None)
    return tables.header(row, with_protocol=False) if row else metric


#: what the report reads from the suite that an older benchmark.json may not record
SUITE_REPORT_KEYS = ("claims", "published", "side_by_side")


def _add_claims_of_older_state(state: dict[str, Any], host: Host) -> None:
    """A benchmark directory written before suites carried ``published``, ``claims`` or
    ``side_by_side`` gets the ones it lacks from the suite of the same name, when it is still
    known."""
    suite = state["suite"]
    missing = [key for key in SUITE_REPORT_KEYS if key not in suite]
    if not missing:
        return
    from harness.benchmark.suite import load_suite
    try:
        known = load_suite(suite["name"], host)
    except HarnessError:
        return
    for key in missing:
        suite[key] = getattr(known, key)


def _planned_only(state: dict[str, Any]) -> dict[str, Any]:
    """The state with only the records of its plan: a folder continued with narrower
    ``--set datasets=`` / ``models=`` / ``seeds=`` keeps the other runs' records and folders,
    but the report describes the command that wrote it, not a mixture (``left_out`` counts
    them). A state from before plans were recorded is reported whole."""
    plan = {spec["id"] for spec in state.get("plan") or []}
    if not plan:
        return state
    kept = {rid: rec for rid, rec in state["runs"].items() if rid in plan}
    return {**state, "runs": kept, "left_out": len(state["runs"]) - len(kept)}


# ------------------------------------------------------------------------------- writing
CLAIMS_METHOD = ("Each claim is judged on an effect size with its 95 % confidence interval "
                 "over seeds: the difference of means (paired t where the runs share seeds, "
                 "Welch t otherwise) or, for a wider spread, the variance ratio (F). "
                 "Supported / not supported: the interval lies on the claimed / the other "
                 "side of 0 (of 1); inconclusive: it contains it.")


def claims_markdown(found_claims: list[dict[str, Any]]) -> str:
    """The claims as a Markdown list, after one line saying how they are judged."""
    if not found_claims:
        return ""
    return f"_{CLAIMS_METHOD}_\n\n" + "".join(
        f"- **{c['verdict']}** ({c['dataset']}): {c['claim']}. {c['evidence']}\n"
        for c in found_claims)


def claims_html(found_claims: list[dict[str, Any]]) -> str:
    """The claims as an HTML list, after one line saying how they are judged."""
    if not found_claims:
        return "<ul></ul>"
    return f"<p><i>{html.escape(CLAIMS_METHOD)}</i></p><ul>" + "".join(
        f"<li><b class='{c['verdict'].replace(' ', '-')}'>{html.escape(c['verdict'])}</b> "
        f"({html.escape(c['dataset'])}): {html.escape(c['claim'])}. "
        f"{html.escape(c['evidence'])}</li>" for c in found_claims) + "</ul>"


def _markdown(state: dict[str, Any], secs: list[Any], found_claims: list[dict[str, str]],
              figs: list[tuple[str, Path]], out: Path, skipped: str) -> str:
    suite = state["suite"]
    machine = ", ".join(f"{k}: {v}" for k, v in state.get("machine", {}).items())
    md = [f"# Benchmark `{suite['name']}` — budget `{state['budget']}`\n\n"
          f"{suite.get('description', '')}\n\n"
          f"- {BUDGET_NOTE.get(state['budget'], '')}\n- seeds: {state['seeds']}; jobs: "
          f"{state.get('jobs')}; threads per run (this command): "
          f"{state.get('threads_per_run')}\n"
          f"- machine: {machine}\n- extra --set: {state.get('sets') or 'none'}\n"
          + (f"- {state['left_out']} run record(s) of this folder outside this command's "
             "plan (other datasets, models or seeds) are not reported\n"
             if state.get("left_out") else "")]
    for title, note, header, table, *footnotes in secs:
        keys = _keys_line(header)
        md.append(f"\n## {title}\n\n_{note}_\n\n" + (to_markdown(header, table) if table
                                                          else "")
                  + "".join(f"\n{line}\n" for line in (footnotes[0] if footnotes else []))
                  + (f"\n_{keys}_\n" if keys and table else ""))
    md.append("\n## Claims of the paper\n\n")
    if state["budget"] == "smoke":
        md.append(f"_{SMOKE_CLAIMS}_\n\n")
    md.append(claims_markdown(found_claims))
    if skipped:
        md.append(f"\n(figures skipped: {skipped}; pip install matplotlib)\n")
    md.append("\n## Figures\n\n")
    md += [f"![{cap}]({p.relative_to(out)})\n\n{cap}\n\n" for cap, p in figs]
    return "".join(md)


def _html(state: dict[str, Any], secs: list[Any], found_claims: list[dict[str, str]],
          figs: list[tuple[str, Path]]) -> str:
    suite = state["suite"]
    machine = ", ".join(f"{k}: {v}" for k, v in state.get("machine", {}).items())
    parts = [f"<h1>Benchmark <code>{html.escape(suite['name'])}</code> — budget "
             f"<code>{html.escape(state['budget'])}</code></h1>",
             f"<p>{html.escape(suite.get('description', ''))}</p>",
             f"<p><b>{html.escape(BUDGET_NOTE.get(state['budget'], ''))}</b></p>",
             f"<p>seeds: {html.escape(str(state['seeds']))}; machine: {html.escape(machine)}</p>"]
    for title, note, header, rows_, *footnotes in secs:
        parts.append(f"<h2>{html.escape(title)}</h2><p><i>{html.escape(note)}</i></p>"
                     + (_html_table(header, rows_) if rows_ else "")
                     + "".join(f"<p class='note'>{html.escape(line)}</p>"
                               for line in (footnotes[0] if footnotes else [])))
    parts.append("<h2>Claims of the paper</h2>" + (
        f"<p><i>{html.escape(SMOKE_CLAIMS)}</i></p>" if state["budget"] == "smoke" else ""))
    parts.append(claims_html(found_claims))
    parts.append("<h2>Figures</h2>")
    for cap, p in figs:
        data = base64.b64encode(p.read_bytes()).decode()
        parts.append(f"<figure><img alt='{html.escape(cap, quote=True)}' "
                     f"src='data:image/png;base64,{data}'><figcaption>{html.escape(cap)}"
                     "</figcaption></figure>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>"
            f"{html.escape(suite['name'])} ({html.escape(state['budget'])})</title><style>"
            "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:0 12px}"
            "table{border-collapse:collapse;margin:8px 0;max-width:100%}"
            "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}"
            "th{background:#f3f3f3;text-align:left;cursor:help;min-width:5.5em}"
            "div.wide{overflow-x:auto;max-width:100%}"
            "td{font-variant-numeric:tabular-nums}p.keys{font-size:11px;color:#666;margin:0}"
            "p.note{font-size:13px;margin:2px 0}"
            ".supported{color:green}.not-supported{color:#b00}.not-measured{color:#888}"
            ".inconclusive{color:#a60}"
            "img{max-width:100%}</style></head><body>" + "\n".join(parts) + "</body></html>\n")


def write_report(out: str | Path, host: Host) -> dict[str, Path]:
    """Write report.{md,csv,json,html} and figures/ into the benchmark directory ``out``."""
    from harness.benchmark.figures import figures
    from harness.rundir.atomic import atomic_write_text

    out = Path(out)
    state = _planned_only(bdir.load_state(out))
    _add_claims_of_older_state(state, host)
    data = gather(state, out, host)
    secs, found_claims, rows = sections(state, out, host, data)
    figs, skipped = data.figures or [], ""
    if data.figures is None:  # drawn from the runs (kept as they are when the runs are gone)
        try:
            figs = figures(state, out, host)
        except ImportError as exc:
            skipped = str(exc)
    paths = {"md": out / "report.md", "csv": out / "report.csv", "json": out / "report.json",
             "html": out / "report.html"}
    atomic_write_text(paths["md"], _markdown(state, secs, found_claims, figs, out, skipped))
    csv_text = tables.to_csv(rows).splitlines()
    csv_text[0] += ",budget"
    csv_text[1:] = [line + f",{state['budget']}" for line in csv_text[1:]]
    atomic_write_text(paths["csv"], "\n".join(csv_text) + "\n")
    report = json.loads(json.dumps(
        {"suite": state["suite"]["name"], "budget": state["budget"], "seeds": state["seeds"],
         "machine": state.get("machine"), "rows": rows, "claims": found_claims,
         "sweep_selection": state.get("sweep_selection") or state.get("beta_selection") or [],
         "runs": state["runs"],
         # what a re-render needs once the run folders are gone (see gather)
         "not_applicable": data.not_applicable, "threads": data.threads,
         "figures": [{"caption": cap, "file": p.relative_to(out).as_posix()}
                     for cap, p in figs]}, default=str))
    from harness.rundir.schema import validate  # the result schema (docs/results.md)

    validate(report, "benchmark_report", where=str(paths["json"]), writing=True)
    atomic_write_text(paths["json"], json.dumps(report, indent=2) + "\n")
    atomic_write_text(paths["html"], _html(state, secs, found_claims, figs))
    return paths
