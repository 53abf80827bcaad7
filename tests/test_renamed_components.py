"""Renamed components keep their former names working (``aliases=``): configurations, suites,
metrics that name a protocol, and old run directories all land on the current name, and a
name the user typed is reported as deprecated once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.configuration import run_config as cfg
from harness.errors import ConfigError
from harness.host import plugins as host_mod
from harness.host.registry import Component, Registry


@pytest.fixture
def host():  # type: ignore[no-untyped-def]
    from cli_helpers import builtin_plugins_only

    with builtin_plugins_only():
        host_mod._TOLD_RENAMED.clear()
        yield host_mod.get_host()


def test_the_registry_finds_a_component_by_its_former_name() -> None:
    registry = Registry("metric")
    registry.add(Component("metric", "new-name", object, "", "p", aliases=("old_name",)))
    assert registry.get("old_name").name == "new-name"
    assert registry.get("p:old_name").name == "new-name"
    assert registry.canonical("old_name") == "new-name"
    assert registry.canonical("unrelated") == "unrelated"
    assert registry.names() == ["new-name"]  # listings show the current name only
    # an alias never takes a name a component has
    registry.add(Component("metric", "other", object, "", "p", aliases=("new-name",)))
    assert registry.get("new-name").name == "new-name"


def test_old_protocol_and_metric_names_in_a_config_resolve_to_the_new_ones(
        host: Any, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    rc = cfg.resolve(model="ae", dataset="bumps", host=host, sets=[
        'eval.protocols=["reconstruction", "random_generation"]',
        'eval.metrics=["gaussian-fit", "fid_inception"]',
        "eval.random_generation.n_samples=12", "eval.fid_inception.batch_size=8"])
    assert rc.eval.protocols == ["reconstruction", "random-generation"]
    assert rc.eval.metrics == ["gaussian-fit", "fid-inception"]
    assert rc.eval.options("random-generation").n_samples == 12
    assert rc.eval.options("fid-inception").batch_size == 8
    assert "random_generation" not in rc.to_toml() and "fid_inception" not in rc.to_toml()
    err = capsys.readouterr().err
    assert err.count("protocol 'random_generation' is now called 'random-generation'") == 1
    assert err.count("metric 'fid_inception' is now called 'fid-inception'") == 1


def test_both_spellings_of_one_components_options_are_refused(host: Any) -> None:
    with pytest.raises(ConfigError, match="eval.random_generation and eval.random-generation"):
        cfg.resolve(model="ae", dataset="bumps", host=host, sets=[
            "eval.random_generation.n_samples=12", "eval.random-generation.n_samples=10"])


def test_a_metric_naming_a_protocols_former_name_still_scores_it(host: Any) -> None:
    from harness.evaluation.evaluate import metric_scores

    class OldMetric:
        protocols = ("random_generation",)

    assert metric_scores(OldMetric(), "random-generation", object(), host)
    assert not metric_scores(OldMetric(), "interpolation", object(), host)


def test_a_suite_written_with_former_names_reads_in_current_ones(host: Any,
                                                                  tmp_path: Path) -> None:
    from harness.benchmark.suite import load_suite

    path = tmp_path / "old.toml"
    path.write_text('''
name = "old"
datasets = ["bumps"]
models = ["ae", "vae"]
protocols = ["reconstruction", "random_generation"]
metrics = ["gaussian-fit", "fid_inception"]
[sweep]
key = "model.beta"
models = ["vae"]
values = [1e-3]
select = "random_generation/gaussian_fit_error_percent"
[published]
columns = ["random_generation/gaussian_fit_error_percent"]
values.bumps.vae = [1.0]
[[claims]]
text = "t"
metric = "random_generation/gaussian_fit_error_percent"
model = "vae"
than = ["ae"]
evidence = ["random_generation/fid_inception"]
''')
    suite = load_suite(str(path), host)
    assert suite.protocols == ["reconstruction", "random-generation"]
    assert suite.metrics == ["gaussian-fit", "fid-inception"]
    assert suite.sweeps[0].select == "random-generation/gaussian_fit_error_percent"
    assert suite.published["columns"] == ["random-generation/gaussian_fit_error_percent"]
    assert suite.claims[0]["metric"] == "random-generation/gaussian_fit_error_percent"
    assert suite.claims[0]["evidence"] == ["random-generation/fid_inception"]


def test_a_run_from_before_the_rename_reports_under_the_new_name(host: Any,
                                                                 tmp_path: Path) -> None:
    from harness.evaluation import tables

    run = tmp_path / "old-run"
    run.mkdir()
    (run / "config.toml").write_text('[run]\nmodel = "ae"\ndataset = "bumps"\nseed = 0\n')
    (run / "metrics.json").write_text(json.dumps({"schema": 1, "run": {
        "model": "ae", "dataset": "bumps", "seed": 0}, "results": [
        {"protocol": "random_generation", "metric": "gaussian_fit_error_percent",
         "value": 3.5, "source": "gaussian-fit", "higher_is_better": False, "stamp": {}}]}))
    (rows,) = tables.collect([run], host)
    assert (rows["protocol"], rows["mean"]) == ("random-generation", 3.5)
