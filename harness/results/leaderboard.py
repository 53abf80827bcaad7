"""``harness leaderboard DIR_OR_FILES... --out site/``: one static page ranking models per task
from many labs' exported results.

Only comparable numbers share a ranking: for each task name (``dataset/protocol/key``) the
ranking holds the entries of one task id (same version and pins; the id most labs used, then
the most entries), ranked by mean in the task's better direction, each with its 95 % interval,
seeds, lab, machine and training length. Every other entry of that task name is listed
under the ranking with the reason, in the words of ``harness diff``
(:func:`harness.results.diff.task_differences`). The seeds of one lab's runs of one
configuration are pooled first (their per-seed values recombined).

Written into ``--out``: ``index.html`` (self-contained, no script) and ``leaderboard.md``.
"""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.results import documents
from harness.results.diff import task_differences
from harness.results.export import machine_words

if TYPE_CHECKING:  # the type only: importing the plugin loader here would cost start-up time
    from harness.host.plugins import Host

PAGE_FILE = "index.html"
MARKDOWN_FILE = "leaderboard.md"
SITE_FILES = frozenset({PAGE_FILE, MARKDOWN_FILE})
NO_LAB = "lab not given"


def contenders(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """All tasks, and one contender per (lab, task id, model, configuration): the seeds of
    one lab's runs pooled where their values are kept; a summary-only entry stays alone."""
    tasks: dict[str, Any] = {}
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for doc in docs:
        tasks.update(doc["tasks"])
        lab, machine = doc.get("lab") or NO_LAB, machine_words(doc)
        for e in doc["entries"]:
            item = {**e, "lab": lab, "machine": machine, "source": doc["source"],
                    "suite": doc.get("suite")}
            groups[(lab, e["task"], e["model"], e["config_hash"])].append(item)
    out = []
    for items in groups.values():
        if len(items) > 1 and all(i["values"] is not None for i in items):
            pairs = sorted((s, v) for i in items for s, v in zip(i["seeds"], i["values"],
                                                                  strict=True))
            values = [v for _, v in pairs]
            out.append({**items[0], "seeds": [s for s, _ in pairs], "values": values,
                        **documents.summary(values),
                        "machine": ", ".join(sorted({i["machine"] for i in items}))})
        else:
            out += items
    return tasks, out


def _training(entry: dict[str, Any]) -> str:
    config = entry["configuration"]
    for key in ("train.steps", "train.epochs"):
        if key in config:
            return f"{key.split('.')[1]} {config[key]}"
    return f"config {entry['config_hash']}" if entry["config_hash"] else "not recorded"


def _value(entry: dict[str, Any]) -> str:
    mean = f"{entry['mean']:.4g}"
    if entry["ci95"] is None:
        return mean
    lo, hi = entry["ci95"]
    return f"{mean} [{lo:.4g}, {hi:.4g}]"


def boards(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One board per task name: its ranking and the entries kept out of it, with why."""
    tasks, entries = contenders(docs)
    by_name: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for e in entries:
        by_name[tasks[e["task"]]["name"]][e["task"]].append(e)
    out = []
    for name in sorted(by_name):
        ids = by_name[name]
        main = max(ids, key=lambda i: (len({e["lab"] for e in ids[i]}), len(ids[i]), i))
        task = tasks[main]
        ranked = ids[main]
        better = next((e["higher_is_better"] for e in ranked
                       if e["higher_is_better"] is not None), None)
        if better is None:
            ranked = sorted(ranked, key=lambda e: (e["model"], e["lab"]))
        else:
            ranked = sorted(ranked, key=lambda e: (-e["mean"] if better else e["mean"],
                                                   e["model"]))
        excluded = []
        for other, items in sorted(ids.items()):
            if other == main:
                continue
            why = "; ".join(w for _, w in task_differences(task, tasks[other])) or \
                "another task id"
            excluded += [(e, why) for e in items]
        labs = sorted({e["lab"] for e in ranked})
        out.append({"name": name, "task": task, "better": better, "ranked": ranked,
                    "excluded": excluded, "labs": labs})
    return out


def _direction(better: bool | None) -> str:
    return {True: "higher is better", False: "lower is better",
            None: "no better direction declared: listed by model, not ranked"}[better]


def _rows(board: dict[str, Any]) -> list[list[str]]:
    rows = []
    means = [e["mean"] for e in board["ranked"]]
    for e in board["ranked"]:
        # ties share a rank: 1 + the number of strictly better means
        ahead = sum(1 for m in means if (m > e["mean"] if board["better"] else m < e["mean"]))
        rank = str(1 + ahead) if board["better"] is not None else "–"
        rows.append([rank, e["model"], _value(e), str(e["n"]), e["lab"], e["machine"],
                     _training(e)])
    return rows


HEADER = ["rank", "model", "mean [95 % CI]", "seeds", "lab", "machine", "training"]


def markdown(result: list[dict[str, Any]], sources: list[str]) -> str:
    lines = ["# Leaderboard", "",
             f"From {len(sources)} source(s): " + ", ".join(f"`{s}`" for s in sources) + ". "
             "Each ranking holds only comparable numbers (same task version and pins); the "
             "others are listed under it with the reason (`harness diff`).", ""]
    for board in result:
        task = board["task"]
        lines += [f"## {board['name']}", "",
                  f"task version {task['version']}, id `{task['id']}`; {_direction(board['better'])}; "
                  f"labs: {', '.join(board['labs'])}", "",
                  "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(r) + " |" for r in _rows(board)]
        if board["excluded"]:
            lines += ["", "Not comparable with this ranking:", ""]
            lines += [f"- {e['model']} ({e['lab']}, `{e['source']}`, {_value(e)}): {why}"
                      for e, why in board["excluded"]]
        lines.append("")
    return "\n".join(lines)


STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:1em auto;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.2em .5em;
text-align:left;overflow-wrap:anywhere}th{background:#f2f2f2}td.num{text-align:right}.meta{color:#555}
ul.excluded li{color:#7a2e00}"""


def page(result: list[dict[str, Any]], sources: list[str]) -> str:
    e_ = html.escape
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<title>Leaderboard</title>", f"<style>{STYLE}</style></head><body>",
             "<h1>Leaderboard</h1>",
             f"<p class='meta'>From {len(sources)} source(s): {e_(', '.join(sources))}. Each "
             "ranking holds only comparable numbers (same task version and pins); the others "
             "are listed under it with the reason (<code>harness diff</code>).</p>"]
    for board in result:
        task = board["task"]
        slug = e_(board["name"].replace("/", "-"), quote=True)
        parts.append(f"<section id='{slug}'><h2>{e_(board['name'])}</h2>")
        parts.append(f"<p class='meta'>task version {e_(task['version'])}, id "
                     f"<code>{e_(task['id'])}</code>; {e_(_direction(board['better']))}; labs: "
                     f"{e_(', '.join(board['labs']))}</p>")
        head = "".join(f"<th>{e_(h)}</th>" for h in HEADER)
        body = "".join("<tr>" + "".join(
            f"<td{' class=num' if j in (0, 2, 3) else ''}>{e_(c)}</td>"
            for j, c in enumerate(row)) + "</tr>" for row in _rows(board))
        parts.append(f"<table class='ranking'><thead><tr>{head}</tr></thead>"
                     f"<tbody>{body}</tbody></table>")
        if board["excluded"]:
            items = "".join(f"<li><b>{e_(e['model'])}</b> ({e_(e['lab'])}, "
                            f"<code>{e_(e['source'])}</code>, {e_(_value(e))}): "
                            f"{e_(why)}</li>" for e, why in board["excluded"])
            parts.append(f"<p>Not comparable with this ranking:</p><ul class='excluded'>"
                         f"{items}</ul>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def check_out(out: Path) -> None:
    """--out is new, empty, or a leaderboard written before (replaced as a whole)."""
    from harness.rundir.contents import check_out_path

    check_out_path(out)  # a file, or a file or an unwritable folder on the way
    if out.exists() and (not out.is_dir()
                         or any(p.name not in SITE_FILES for p in out.iterdir())):
        raise HarnessError(f"--out '{out}' holds other files than a leaderboard "
                           f"({', '.join(sorted(SITE_FILES))}); choose a new folder (nothing "
                           "was written)")


def write(paths: list[str], out: str | Path, host: Host | None = None) -> list[dict[str, Any]]:
    from harness.rundir.atomic import atomic_dir

    out = Path(out)
    check_out(out)
    docs = documents.load_all(paths, host)
    if not any(doc["entries"] for doc in docs):
        raise HarnessError("no result to rank: the inputs hold no numeric result")
    sources = [str(p) for p in paths]
    result = boards(docs)
    with atomic_dir(out) as tmp:
        (tmp / PAGE_FILE).write_text(page(result, sources), encoding="utf-8")
        (tmp / MARKDOWN_FILE).write_text(markdown(result, sources), encoding="utf-8")
    return result
