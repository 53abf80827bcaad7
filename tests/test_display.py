"""What a reader sees of a run's numbers: names in words, units, direction, the paper's value,
and why a protocol has no number (harness.evaluation.display)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.api import ValueDisplay
from harness.benchmark.suite import published_values
from harness.evaluation import display
from harness.host import plugins


@pytest.fixture
def host():  # type: ignore[no-untyped-def]
    from cli_helpers import builtin_plugins_only

    from harness.host import plugins

    with builtin_plugins_only():
        yield plugins.get_host()


def _rec(protocol: str, metric: str, value: Any, source: str, **extra: Any) -> dict[str, Any]:
    return {"protocol": protocol, "metric": metric, "value": value, "source": source,
            "higher_is_better": False, "stamp": {}, **extra}


DOC = {"run": {"model": "vrrae", "dataset": "mnist", "seed": 0}, "results": [
    _rec("reconstruction", "rec_error_percent", 26.5, "protocol"),
    _rec("random-generation", "gaussian_fit_error_percent", 15.4321, "gaussian-fit"),
    _rec("random-generation", "gaussian_fit_error_percent_std", 4.072, "gaussian-fit"),
    _rec("random-generation", "fid", 41.0, "fid"),
    _rec("codes", "code_variances", [1.0, 2.0], "collapse"),
    _rec("random-generation", "weird_score", 3.0, "third-party", higher_is_better=True),
], "unscored": {"interpolation": "fid does not apply to dataset 'bumps'"}}


def test_declared_names_units_and_directions(host) -> None:  # type: ignore[no-untyped-def]
    rec = display.describe(DOC["results"][0], host)
    assert (rec.name, rec.unit, rec.direction) == ("Reconstruction error", "%",
                                                   "lower is better")
    fid = display.describe(DOC["results"][3], host)
    assert fid.name == "FID" and fid.higher_is_better is False
    assert display.protocol_title("random-generation", host).startswith("Random generation")


OWN = {"sampler": "the model's own sampler, model.sample(n, generator)", "n_samples": 200}
GMM = {"sampler": "sklearn.mixture.GaussianMixture(full)", "gmm_components": 10}


def test_random_generation_is_titled_by_the_sampler_its_stamp_records(host) -> None:  # type: ignore[no-untyped-def]
    title = display.protocol_title
    assert title("random-generation", host, GMM) == "Random generation (GMM on the codes)"
    assert title("random-generation", host, OWN) == "Random generation (the model's own sampler)"
    assert title("prior-samples", host, OWN) == \
        "Samples of the prior N(0, I) (the model's own sampler)"
    assert title("random-generation", host, {}) == "Random generation (GMM on the codes)"
    # a sample-only model's summary names its own sampler, its notes under the same title
    doc = {"results": [_rec("random-generation", "fid", 18.4, "fid", stamp=OWN)],
           "not_scored": [{"protocol": "random-generation", "metric": "gaussian-fit",
                           "reason": "does not apply to dataset 'digits'"}]}
    lines = display.summary_lines(doc, host)
    assert [ln for ln in lines if not ln.startswith("    ")] == [
        "  Random generation (the model's own sampler)"]
    assert "GMM" not in "\n".join(lines)
    # several models in one table: each title with its models
    assert display.shared_title("random-generation", host, {"ae": GMM, "dcgan": OWN}) == (
        "Random generation (GMM on the codes): ae; Random generation (the model's own "
        "sampler): dcgan")
    assert display.shared_title("random-generation", host, {"ae": GMM, "vae": GMM}) == \
        "Random generation (GMM on the codes)"


def test_a_component_that_declares_nothing_gets_its_key_and_recorded_direction() -> None:
    shown = display.describe(_rec("p", "score_percent", 1.0, "nobody", higher_is_better=True))
    assert (shown.name, shown.unit, shown.direction) == ("score_percent", "%",
                                                         "higher is better")
    plain = display.describe({"protocol": "p", "metric": "x", "value": 1.0, "source": "?"})
    assert plain.direction == "" and plain.unit == ""
    assert ValueDisplay("a", higher_is_better=None).direction == ""


def test_summary_shows_std_once_beside_its_mean_and_why_a_protocol_has_none(host) -> None:  # type: ignore[no-untyped-def]
    lines = display.summary_lines(DOC, host)
    text = "\n".join(lines)
    fit = [ln for ln in lines if "Gaussian-fit error" in ln]
    assert len(fit) == 1 and "15.43 ± 4.1 %" in fit[0] and "(lower is better)" in fit[0]
    assert "_std" not in text and "code_variances" not in text  # lists stay in metrics.json
    assert "weird_score  " in text and "(higher is better)" in text
    assert "no number: fid does not apply to dataset 'bumps'" in text
    assert "  Reconstruction (test split)" in lines


def test_paper_values_come_from_the_suites_published_tables() -> None:
    paper = published_values("vrrae", "mnist", plugins.get_host())
    # paper-real and paper-ablation both publish vrrae on MNIST; distinct values are kept
    assert [v for v, _ in paper["random-generation/fid"]] == [38.77]
    assert sorted(v for v, _ in paper["interpolation/fid"]) == [4.89, 5.89]
    assert published_values("vrrae", "bumps", plugins.get_host()) == {}
    lines = display.summary_lines(DOC, None, paper=paper)
    assert any("paper: 26 (paper Table" in ln for ln in lines), lines


def test_the_reason_for_no_number_names_the_metrics(host) -> None:  # type: ignore[no-untyped-def]
    from harness_plugins.metrics.collapse import Collapse
    from harness_plugins.metrics.gaussian_fit import GaussianFit
    from harness_plugins.protocols.paper import Interpolation

    from harness.api import DatasetInfo

    info = DatasetInfo("bumps", (1, 8, 8), metadata={"spread": 0.2, "synthetic": True})
    why = display.unscored_reason("interpolation", Interpolation(),
                                  [("collapse", Collapse()), ("gaussian-fit", GaussianFit())],
                                  info)
    assert "no selected metric scores its samples" in why and "images/interpolation.png" in why


def test_a_long_not_computed_note_pads_no_other_line(host) -> None:  # type: ignore[no-untyped-def]
    note = {"protocol": "random-generation", "metric": "fid", "value": None, "source": "fid",
            "higher_is_better": False, "stamp": {}, "error": "x" * 90}
    lines = display.summary_lines({"results": [DOC["results"][0], note]}, host)
    rec = next(ln for ln in lines if "Reconstruction error" in ln)
    assert rec.endswith("26.5 %  (lower is better)"), rec
    assert any(ln.rstrip().endswith("x" * 90 + "  (lower is better)") for ln in lines), lines
