"""A suite's ``[[side_by_side]]`` tables (one metric of several protocols in one report table:
the RAE paper's Table 1 view of FID on reconstructions, prior samples and GMM samples), and a
report re-rendered from its report.json once the run folders are gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.benchmark import suite as bsuite
from harness.benchmark.report import Gathered, side_by_side, side_by_side_text, write_report
from harness.errors import ConfigError
from harness.host.plugins import get_host

OWN = "the model's own sampler, model.sample(n, generator)"
GMM = "sklearn.mixture.GaussianMixture(full)"
COLUMNS = ["reconstruction-samples", "prior-samples", "random-generation"]
VIEW = {"title": "FID side by side", "metric": "fid", "columns": COLUMNS}
SUITE = {"name": "t", "datasets": ["digits"], "models": ["vae", "ae", "dcgan"],
         "protocols": COLUMNS, "side_by_side": [VIEW]}


def _row(model: str, protocol: str, mean: float, **stamp: Any) -> dict[str, Any]:
    return {"dataset": "digits", "model": model, "protocol": protocol, "metric": "fid",
            "mean": mean, "std": 0.5, "n": 3, "seeds": [0, 1, 2], "stamp": "s",
            "stamp_values": {"protocol_version": 1, **stamp},
            "display": {"name": "FID", "unit": "", "higher_is_better": False}}


ROWS = [_row("vae", "reconstruction-samples", 4.0, split="test"),
        _row("vae", "prior-samples", 25.0, sampler="the model's prior N(0, I)"),
        _row("vae", "random-generation", 3.0, sampler=GMM),
        _row("ae", "reconstruction-samples", 3.5, split="test"),
        _row("ae", "random-generation", 2.5, sampler=GMM),
        # a sample-only model: its prior samples are its own sampler's, as random generation's
        _row("dcgan", "prior-samples", 18.0, sampler=OWN, n_samples=1250),
        _row("dcgan", "random-generation", 18.0, sampler=OWN, n_samples=1250)]
NOT_APPLICABLE = [["digits", "ae", "prior-samples", "does not apply: ae has no prior"],
                  ["digits", "dcgan", "reconstruction-samples",
                   "does not apply: dcgan has no reconstruction"]]


def _view(rows: list[dict[str, Any]] = ROWS) -> tuple[Any, ...]:
    state = {"suite": SUITE, "budget": "cpu"}
    found = side_by_side(state, Gathered(rows, NOT_APPLICABLE, {}), get_host(), "note",
                         lambda r: f"{r['mean']:.1f}")
    assert len(found) == 1
    return found[0]


def test_one_metric_of_three_protocols_in_one_table_with_reasons_in_footnotes() -> None:
    title, note, header, body, notes = _view()
    assert title == "FID side by side" and note.startswith("note; mean ± std")
    assert [h.key for h in header[2:]] == [f"{c}/fid" for c in COLUMNS]
    assert header[4] == "Random generation (GMM on the codes): FID ↓"
    assert body == [  # the suite's model order
        ["digits", "vae", "4.0", "25.0", "3.0"],
        ["digits", "ae", "3.5", "— [1]", "2.5"],
        ["digits", "dcgan", "— [2]", "— [3]", "18.0 [4]"]]
    assert notes[:2] == ["[1] does not apply: ae has no prior",
                         "[2] does not apply: dcgan has no reconstruction"]
    assert notes[2].startswith("[3] the same samples as this row's random-generation cell "
                               "(equal stamps; sampler: the model's own sampler")
    assert notes[3] == "[4] Random generation (the model's own sampler)"


def test_different_samples_are_both_shown_and_a_missing_number_says_so() -> None:
    rows = [r for r in ROWS if r["model"] != "vae"]
    rows = [_row("dcgan", "prior-samples", 17.0, sampler=OWN, n_samples=500)
            if (r["model"], r["protocol"]) == ("dcgan", "prior-samples") else r for r in rows]
    rows.append(_row("vae", "random-generation", 3.0, sampler=GMM))
    _, _, header, body, _ = _view(rows)
    assert body[-1][3:] == ["17.0", "18.0 [3]"]  # other stamps: other samples, both shown
    assert header[3] == "Samples of the prior N(0, I) (the model's own sampler): FID ↓"
    assert body[0][2:4] == ["not measured", "not measured"]  # no number, no reason recorded


@pytest.mark.parametrize("view,message", [
    ({**VIEW, "columns": ["random-generation"]}, "columns must name two protocols or more"),
    ({**VIEW, "metric": "random-generation/fid"}, "metric is the metric's key alone"),
    ({**VIEW, "columns": [*COLUMNS[:2], "interpolation"]},
     r"columns \['interpolation'\] are not among the suite's protocols"),
    ({k: v for k, v in VIEW.items() if k != "metric"}, "must set 'metric'"),
    ({**VIEW, "colums": COLUMNS}, r"unknown key\(s\) \['colums'\]"),
])
def test_a_wrong_side_by_side_table_is_refused_naming_what_is_wrong(view: dict[str, Any],
                                                                   message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        bsuite.Suite.from_dict({**SUITE, "side_by_side": [view]}, "t")


def test_the_generative_families_suite_declares_the_rae_table() -> None:
    suite = bsuite.load_suite("generative-families", get_host())
    (view,) = suite.side_by_side
    assert view["metric"] == "fid" and view["columns"] == COLUMNS


# ------------------------------------------------------- a report whose runs are gone
COMMITTED = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / \
    "generative-families-cpu-digits"


def test_the_committed_report_re_renders_from_its_report_json(tmp_path: Path) -> None:
    """benchmarks/results keeps report.json and the figures, not the runs: the report is
    rebuilt from them with the same numbers, the side-by-side table included."""
    out = tmp_path / "gf"
    shutil.copytree(COMMITTED, out)
    before = json.loads((out / "report.json").read_text())
    write_report(out, get_host())
    after = json.loads((out / "report.json").read_text())
    assert after["rows"] == before["rows"] and after["runs"] == before["runs"]
    assert (out / "report.md").read_text() == (COMMITTED / "report.md").read_text()
    md = (out / "report.md").read_text()
    assert "| digits | vae | 4.231 ± 0.227 (n=3) | 25.729 ± 1.857 (n=3) | 3.469 ± 0.309 (n=3) |" \
        in md
    assert "| digits | dcgan | — [3] | — [4] | 18.434 ± 1.481 (n=3) [5] |" in md
    assert sorted(p.name for p in (out / "figures").iterdir()) == \
        sorted(p.name for p in (COMMITTED / "figures").iterdir())
    # the benchmark's closing output in a terminal: the same table, four significant digits
    state = json.loads((out / "benchmark.json").read_text())
    state["suite"]["side_by_side"] = [VIEW]
    text = side_by_side_text(state, out, get_host())
    line = next(ln for ln in text.splitlines() if ln.startswith("digits   dcgan"))
    assert line.split()[2:] == ["—", "[3]", "—", "[4]", "18.43", "±", "1.5", "(n=3)", "[5]"]
    assert "[1] does not apply: ae has no prior" in text


def test_a_report_json_of_another_benchmark_is_refused(tmp_path: Path) -> None:
    from harness.errors import HarnessError

    out = tmp_path / "gf"
    shutil.copytree(COMMITTED, out)
    doc = json.loads((out / "report.json").read_text())
    (out / "report.json").write_text(json.dumps({**doc, "budget": "paper"}))
    with pytest.raises(HarnessError, match="is the report of 'generative-families' at budget "
                                           "'paper', not of this folder's benchmark"):
        write_report(out, get_host())


def test_docs_show_the_committed_reports_table_as_it_is() -> None:
    """docs/benchmarks.md copies the side-by-side table of the committed report: every line
    of it is a line of report.md (no hand-made numbers)."""
    docs = (COMMITTED.parent.parent.parent / "docs" / "benchmarks.md").read_text()
    block = docs[docs.index("- **`generative-families`**"):]
    block = block[:block.index("The RAE paper's pattern holds here")]
    shown = [ln.strip() for ln in block.splitlines()
             if ln.strip().startswith(("| digits", "| dataset", "[1]", "[5]"))]
    report = (COMMITTED / "report.md").read_text().splitlines()
    assert len(shown) == 10 and all(line in report for line in shown), shown


def test_a_report_json_from_before_it_kept_enough_is_left_alone(tmp_path: Path) -> None:
    from harness.errors import HarnessError

    out = tmp_path / "gf"
    shutil.copytree(COMMITTED, out)
    doc = json.loads((out / "report.json").read_text())
    del doc["figures"], doc["threads"]
    (out / "report.json").write_text(json.dumps(doc))
    md = (out / "report.md").read_text()
    with pytest.raises(HarnessError, match="written before reports kept threads, figures: the "
                                           "report cannot be rebuilt whole"):
        write_report(out, get_host())
    assert (out / "report.md").read_text() == md
