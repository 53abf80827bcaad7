"""Re-judge the claims of a committed benchmark report with the current statistics
(:mod:`harness.benchmark.evidence`) when its run directories are not committed, so
``harness benchmark report`` cannot rebuild it: the claims are recomputed from the rows of
``report.json`` (mean, std, n and seeds of each model and metric) and replaced in
``report.json``, ``report.md`` and ``report.html``; nothing else in the report changes.

Without per-run values a mean difference gets Welch's interval from mean ± std; ``--values
FILE`` (JSON: ``{"dataset/model/protocol/metric": {"seed": value, ...}}``) supplies the
per-seed numbers that were recorded elsewhere, which are checked against the row's mean and
std (to 1e-2, the report's rounding) and then pair the comparison. Run::

    python benchmarks/rejudge_claims.py benchmarks/results/paper-synthetic-paper \\
        --values benchmarks/results/paper-synthetic-paper/per_seed.json
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from statistics import mean, stdev


def main() -> None:
    from harness.benchmark import report
    from harness.host.plugins import host_or_default
    from harness.rundir.atomic import atomic_write_text

    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--values", type=Path)
    args = parser.parse_args()
    state = json.loads((args.directory / "benchmark.json").read_text())
    rep = json.loads((args.directory / "report.json").read_text())
    host = host_or_default(None)
    report._add_claims_of_older_state(state, host)
    rows = rep["rows"]
    if args.values:
        for key, per_seed in json.loads(args.values.read_text()).items():
            dataset, model, protocol, metric = key.split("/", 3)
            row = next(r for r in rows if (r["dataset"], r["model"], r["protocol"],
                                           r["metric"]) == (dataset, model, protocol, metric))
            values = sorted([int(s), float(v)] for s, v in per_seed.items())
            xs = [v for _, v in values]
            if [s for s, _ in values] != row["seeds"] or abs(mean(xs) - row["mean"]) > 1e-2 \
                    or abs(stdev(xs) - row["std"]) > 1e-2:
                raise SystemExit(f"Error: the values given for {key} do not match the "
                                 f"report's row ({row['mean']:.4f} ± {row['std']:.4f}, seeds "
                                 f"{row['seeds']}); fix --values")
            row["values"] = values
    found = report.claims(state, report.index_rows(rows))
    rep["claims"] = found
    atomic_write_text(args.directory / "report.json", json.dumps(rep, indent=2) + "\n")
    md_path, html_path = args.directory / "report.md", args.directory / "report.html"
    md = md_path.read_text()
    head, rest = md.split("## Claims of the paper\n\n", 1)
    tail = rest[rest.index("\n## Figures"):] if "\n## Figures" in rest else ""
    smoke = rest[: rest.index("_\n\n") + 3] if rest.startswith("_At the smoke") else ""
    atomic_write_text(md_path, head + "## Claims of the paper\n\n" + smoke
                      + report.claims_markdown(found) + tail)
    page = html_path.read_text()
    page = re.sub(r"(<h2>Claims of the paper</h2>(?:<p><i>At the smoke.*?</i></p>)?\n?)"
                  r"(?:<p><i>Each claim.*?</i></p>)?<ul>.*?</ul>",
                  lambda m: m.group(1) + report.claims_html(found), page, count=1, flags=re.S)
    atomic_write_text(html_path, page)
    for c in found:
        print(f"{c['verdict']:>13} ({c['dataset']}): {c['claim']}\n{'':>15}{c['evidence']}")


if __name__ == "__main__":
    main()
