"""`harness report` in a terminal: the rows of :func:`harness.evaluation.tables.collect` as
plain-text tables that fit a given width (100 columns by default).

The markdown table puts every (protocol, metric) of every run side by side: 25 columns for
two runs of the default protocols, unreadable in a terminal. Here each protocol gets its own
block, a block whose metrics do not fit is cut into several (the row labels repeated), values
keep four significant digits and spreads two (a KID of 0.0312 is not shown as 0.03), and
the settings that tell rows or columns apart are named in words (``model.k=2``), not by hash.
"""

from __future__ import annotations

import json
import textwrap
from collections import defaultdict
from typing import Any

from harness.evaluation.tables import ARROWS

STD_SUFFIX = "_std"
GAP = "  "
NBSP = "\u00a0"  # keeps a unit and an arrow on the line of the word before them


def number(value: float, spread: float | None = None) -> str:
    """``57.09``, ``0.0312 ± 0.0041``: four significant digits, the spread two."""
    shown = f"{value:.4g}"
    return shown if spread is None else f"{shown} ± {spread:.2g}"


def _differing(variants: dict[str, dict[str, Any]]) -> list[str]:
    """The keys whose values are not the same in every variant (absent counts as a value)."""
    keys = sorted({k for v in variants.values() for k in v})
    return [k for k in keys if len({json.dumps(v.get(k), sort_keys=True, default=str)
                                    for v in variants.values()}) > 1]


def _in_words(values: dict[str, Any], keys: list[str], limit: int = 40) -> str:
    text = ", ".join(f"{k}={values.get(k, '(absent)')}" for k in keys)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _row_labels(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], str]:
    """``model`` where a model and dataset have one configuration, else ``model [k=v]``
    naming what differs between that pair's configurations (the hash only if nothing does)."""
    by_pair: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        by_pair[(row["model"], row["dataset"])][row["config"]] = row.get("config_values", {})
    labels = {}
    for (model, dataset), variants in by_pair.items():
        keys = _differing(variants) if len(variants) > 1 else []
        for cfg, values in variants.items():
            shown = model if len(variants) == 1 else \
                f"{model} [{_in_words(values, keys, 30) if keys else cfg}]"
            labels[(model, dataset, cfg)] = shown
    return labels


def _column_labels(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], str]:
    """A metric's header: its name in words (without the explanation in brackets), unit and
    better direction; a metric measured under several protocol stamps gets one column per
    stamp, labelled with what differs (``[n_samples=1250]``)."""
    by_metric: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        by_metric[(row["protocol"], row["metric"])][row["stamp"]] = row.get("stamp_values", {})
    labels = {}
    for row in rows:
        shown = row.get("display") or {}
        name = str(shown.get("name") or row["metric"]).split(" (")[0]
        unit = str(shown.get("unit") or "")
        if unit and len(unit) <= 4:  # "%", "dims"; "fraction", "ratio (...)" say nothing new
            name += f"{NBSP}{unit}"
        name += ARROWS[shown.get("higher_is_better")].replace(" ", NBSP)
        variants = by_metric[(row["protocol"], row["metric"])]
        if len(variants) > 1:
            keys = _differing(variants)
            name += f" [{_in_words(variants[row['stamp']], keys, 24) if keys else row['stamp']}]"
        labels[(row["protocol"], row["metric"], row["stamp"])] = name
    return labels


def _cell(row: dict[str, Any], n_shown: int) -> str:
    cell = number(row["mean"], row["std"] if row["n"] > 1 else None)
    return cell if row["n"] == n_shown else f"{cell} (n={row['n']})"


def _render(head: list[str], body: list[list[str]], widths: list[int],
            n_labels: int = 3) -> list[str]:
    """Left-aligned label columns then right-aligned numbers; long headers wrap onto lines."""
    wrapped = [textwrap.wrap(h, w) or [""] for h, w in zip(head, widths, strict=True)]
    depth = max(len(w) for w in wrapped)
    lines = []
    for i in range(depth):
        parts = []
        for j, (w, lines_of) in enumerate(zip(widths, wrapped, strict=True)):
            text = lines_of[i - depth + len(lines_of)] if i >= depth - len(lines_of) else ""
            parts.append(text.ljust(w) if j < n_labels else text.rjust(w))
        lines.append(GAP.join(parts).rstrip().replace(NBSP, " "))
    lines.append(GAP.join("-" * w for w in widths))
    for cells in body:
        lines.append(GAP.join(c.ljust(w) if j < n_labels else c.rjust(w)
                              for j, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip())
    return lines


def _chunks(label_width: int, columns: list[tuple[str, int]], width: int | None
            ) -> list[list[tuple[str, int]]]:
    """The metric columns cut into runs that fit ``width`` beside the row labels."""
    if width is None:
        return [columns]
    out: list[list[tuple[str, int]]] = [[]]
    used = label_width
    for col in columns:
        if out[-1] and used + len(GAP) + col[1] > width:
            out.append([])
            used = label_width
        out[-1].append(col)
        used += len(GAP) + col[1]
    return out


def _header_width(header: str, cells: list[str]) -> int:
    """As wide as the widest value, and enough for the header in at most three lines."""
    widest = max([len(c) for c in cells] + [max(len(w) for w in header.split(" "))])
    while len(textwrap.wrap(header, widest)) > 3:
        widest += 1
    return widest


def to_text(rows: list[dict[str, Any]], width: int | None = 100) -> str:
    """One block per protocol (a protocol's metrics cut into blocks that fit ``width``;
    ``None``: no limit), rows = model, dataset and the number of runs, then a line naming
    the training settings that differ between the rows."""
    if not rows:
        return "(no numeric results)\n"
    rows = [r for r in rows if not _is_spread_of_shown(r, rows)]
    row_label = _row_labels(rows)
    col_label = _column_labels(rows)
    out: list[str] = []
    for protocol in sorted({r["protocol"] for r in rows}):
        mine = [r for r in rows if r["protocol"] == protocol]
        keys = sorted({(r["model"], r["dataset"], r["config"]) for r in mine},
                      key=lambda k: (k[1], row_label[k]))
        n_of = {k: max(r["n"] for r in mine if (r["model"], r["dataset"], r["config"]) == k)
                for k in keys}
        cells: dict[str, dict[tuple[str, str, str], str]] = defaultdict(dict)
        for r in mine:
            key = (r["model"], r["dataset"], r["config"])
            cells[col_label[(r["protocol"], r["metric"], r["stamp"])]][key] = _cell(r, n_of[key])
        labels = [[row_label[k], k[1], str(n_of[k])] for k in keys]
        label_heads = ["model", "dataset", "n"]
        label_widths = [max(len(h), *(len(x[i]) for x in labels))
                        for i, h in enumerate(label_heads)]
        columns = [(c, _header_width(c, list(cells[c].values()))) for c in sorted(cells)]
        label_width = sum(label_widths) + len(GAP) * (len(label_widths) - 1)
        for i, chunk in enumerate(_chunks(label_width, columns, width)):
            title = protocol if i == 0 else f"{protocol} (continued)"
            out.append(title if not out else f"\n{title}")
            head = label_heads + [c for c, _ in chunk]
            body = [labels[i] + [cells[c].get(k, "") for c, _ in chunk]
                    for i, k in enumerate(keys)]
            out.extend(_render(head, body, label_widths + [w for _, w in chunk]))
    out += _settings_lines(rows, row_label, width)
    note = ("mean ± std over the n runs (seeds) of a row; ↑ higher is better, ↓ lower is "
            "better. --wide: every column of a protocol in one table; --format markdown, csv "
            "or json: every key.")
    out += [""] + textwrap.wrap(note, width or len(note))
    return "\n".join(out) + "\n"


def words_to_text(title: str, head: list[str], body: list[list[str]], notes: list[str],
                  n_labels: int, width: int | None = 100) -> str:
    """A table already in words (a benchmark's side-by-side view): its title, the first
    ``n_labels`` columns as labels, the others right-aligned with headers wrapped (at most
    three lines), then its footnotes wrapped to ``width``."""
    widths = [max(len(h), *(len(r[j]) for r in body)) if j < n_labels
              else _header_width(h, [r[j] for r in body]) for j, h in enumerate(head)]
    lines = [title, *_render(head, body, widths, n_labels), *([""] if notes else [])]
    for note in notes:
        lines += textwrap.wrap(note, width or len(note), subsequent_indent="    ")
    return "\n".join(lines) + "\n"


def _is_spread_of_shown(row: dict[str, Any], rows: list[dict[str, Any]]) -> bool:
    """A per-run spread (``kid_std``) whose mean is shown: the table shows the spread over
    seeds beside the mean instead, so no number carries two spreads."""
    metric = str(row["metric"])
    if not metric.endswith(STD_SUFFIX):
        return False
    base = metric.removesuffix(STD_SUFFIX)
    return any(r["protocol"] == row["protocol"] and r["metric"] == base for r in rows)


def _settings_lines(rows: list[dict[str, Any]], row_label: dict[tuple[str, str, str], str],
                    width: int | None) -> list[str]:
    """``Training settings that differ between rows:`` then ``model.k: vae 2, vrrae 16``."""
    variants = {row_label[(r["model"], r["dataset"], r["config"])]
                + ("" if len({x["dataset"] for x in rows}) == 1 else f" ({r['dataset']})"):
                r.get("config_values", {}) for r in rows}
    if len(variants) < 2:
        return []
    # a key only some models have (ddpm's timesteps) is shown for those; it is listed when
    # the rows that have it differ in it
    keys = [k for k in sorted({k for v in variants.values() for k in v})
            if k != "run.model"  # the model column says it
            and len({json.dumps(v[k], sort_keys=True, default=str)
                     for v in variants.values() if k in v}) > 1]
    if not keys:
        return []
    lines = ["", "Training settings that differ between rows (rows without the key omitted):"]
    for key in keys:
        line = f"  {key}: " + ", ".join(f"{label} {values[key]}"
                                        for label, values in variants.items() if key in values)
        if width is not None and len(line) > width:
            line = line[: width - 3] + "..."
        lines.append(line)
    return lines
