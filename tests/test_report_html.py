"""The benchmark report's HTML tables as a reader sees them: human headers with units and
direction (raw keys in tooltips), std once, and every table inside a 1280 px window, checked
in a real headless Chromium on the committed paper-synthetic benchmark."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from harness.host.plugins import get_host

sys.path.insert(0, os.path.dirname(__file__))
from headless_chromium import chromium, needs_chromium  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "paper-synthetic-cpu"
SOURCES = {"rec_error_percent": "protocol", "gaussian_fit_error_percent": "gaussian-fit",
           "gaussian_fit_error_percent_std": "gaussian-fit", "collapsed_dims": "collapse",
           "active_dims": "collapse"}


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed paper-synthetic benchmark.json, with run folders rebuilt from its
    report.json (each seed gets the mean ± its share of the std), then the report written."""
    from harness.benchmark.report import write_report

    out = tmp_path_factory.mktemp("synthetic")
    state = json.loads((RESULTS / "benchmark.json").read_text())
    rows = json.loads((RESULTS / "report.json").read_text())["rows"]
    (out / "benchmark.json").write_text(json.dumps(state))
    for run in state["runs"].values():
        if run.get("phase") != "final" or run.get("status") != "done":
            continue
        folder = out / run["dir"]
        folder.mkdir(parents=True)
        sign = 1 if run["seed"] % 2 else -1
        results = [{"protocol": r["protocol"], "metric": r["metric"],
                    "value": r["mean"] + sign * r["std"], "source": SOURCES[r["metric"]],
                    "higher_is_better": False, "stamp": r["stamp_values"]}
                   for r in rows if (r["model"], r["dataset"]) == (run["model"], run["dataset"])]
        (folder / "metrics.json").write_text(json.dumps(
            {"schema": 1, "run": {"model": run["model"], "dataset": run["dataset"],
                                  "seed": run["seed"]}, "results": results}))
    write_report(out, get_host())
    return out


def test_tables_have_human_headers_and_std_once(synthetic_report: Path) -> None:
    page = (synthetic_report / "report.html").read_text()
    assert "<th title='reconstruction/rec_error_percent'>Reconstruction error (%) ↓</th>" in page
    assert "<th title='random-generation/gaussian_fit_error_percent_std'>Gaussian-fit error " \
           "spread over images (%)</th>" in page
    assert ">random-generation/gaussian_fit_error_percent<" not in page  # no raw header
    # the per-image spread is shown as its mean over seeds, without a second "± std"
    md = (synthetic_report / "report.md").read_text()
    table = md[md.index("## Results: Random generation"):]
    table = table[:table.index("\n## ")]
    row = next(line for line in table.splitlines() if line.startswith("| bumps | vae |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert "±" in cells[3] and "±" not in cells[4] and "(n=5)" in cells[4], cells
    assert "raw keys" in table


@needs_chromium
def test_every_table_fits_a_1280_px_window(synthetic_report: Path) -> None:
    driver = chromium(1280, 2400)
    try:
        driver.get((synthetic_report / "report.html").as_uri())
        width = driver.execute_script("return document.documentElement.clientWidth")
        assert 1200 <= width <= 1280
        assert driver.execute_script("return document.documentElement.scrollWidth") <= width
        rights = driver.execute_script(
            "return [...document.querySelectorAll('table')].map("
            "t => t.getBoundingClientRect().right)")
        assert rights and max(rights) <= width, rights
        headers = driver.execute_script(
            "return [...document.querySelectorAll('th')].map(t => t.textContent)")
        assert not [h for h in headers if "/" in h and "_" in h], headers  # no raw keys
        driver.save_screenshot(str(synthetic_report / "screenshot-1280.png"))
        # no header breaks inside a word ("datase t"), even in a window too narrow for the
        # widest table (it scrolls in its box instead): each word (a hyphen may end a line) is one box
        driver.set_window_size(480, 2400)
        driver.refresh()
        broken = driver.execute_script("""
            const out = [];
            for (const th of document.querySelectorAll('th')) {
              const node = th.firstChild;
              if (!node || node.nodeType !== 3) continue;
              const text = node.textContent;
              for (const m of text.matchAll(/[^\\s-]+/g)) {
                const r = document.createRange();
                r.setStart(node, m.index); r.setEnd(node, m.index + m[0].length);
                if (r.getClientRects().length > 1) out.push(m[0]);
              }
            }
            return out;""")
        assert broken == [], broken
        assert driver.execute_script(
            "return document.documentElement.scrollWidth <= "
            "document.documentElement.clientWidth")  # the page itself never scrolls sideways
    finally:
        driver.quit()
