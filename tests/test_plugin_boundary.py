"""What plugin components return is checked at the evaluation boundary: a metric or protocol
returning a non-JSON value, NaN/inf, raising, or declaring a bad version is recorded as not
computed (naming its plugin) and every other number is still written; metrics.json and
`harness report --format json` stay valid JSON; a model Config that rejects a value names its
plugin."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import TINY, assert_error_line, cli
from harness_plugins.autoencoders.models import AE, AEConfig

from harness import hookimpl
from harness.api import ProtocolOutput


def strict_json(text: str) -> Any:
    """json.loads that refuses NaN and infinities (what other JSON readers do)."""
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


class _Metric:
    inputs = ("samples",)
    higher_is_better = False

    def __init__(self, result: Any = None, fail: Exception | None = None) -> None:
        self.result, self.fail = result, fail

    def applies(self, info: Any) -> bool:
        return True

    def __call__(self, images: Any, reference: Any, info: Any, *, device: Any = None) -> Any:
        if self.fail is not None:
            raise self.fail
        return self.result


class BadVersion:
    kind = "samples"
    version = "one"

    def run(self, ctx: Any) -> ProtocolOutput:  # never reached: the version is checked first
        raise AssertionError("a protocol with a bad version must not run")


class Nested:
    """A protocol whose own values include a non-JSON one and a NaN."""

    kind = "codes"
    version = 2

    def run(self, ctx: Any) -> ProtocolOutput:
        return ProtocolOutput(values={"fine": 0.5, "nan": float("nan"), "obj": object()},
                              stamp={"weird": {1, 2}})


@dataclass
class OddConfig(AEConfig):
    def __post_init__(self) -> None:
        if self.k % 2:
            raise ValueError(f"model.k must be even, got {self.k}")


class OddAE(AE):
    Config = OddConfig


class Boundary:
    """The third-party plugin 'boundary': one bad component of each kind."""

    @hookimpl
    def register_metrics(self, register: Any) -> None:
        register("setval", lambda: _Metric({"x": {1, 2}}), "returns a set")
        register("nanval", lambda: _Metric({"n": float("nan"), "inf": [1.0, float("inf")],
                                            "ok": 1.0}), "returns NaN")
        register("raiser", lambda: _Metric(fail=RuntimeError("boom")), "raises")
        register("notdict", lambda: _Metric([1.0]), "returns a list")

    @hookimpl
    def register_protocols(self, register: Any) -> None:
        register("badver", BadVersion, "version = 'one'")
        register("nested", Nested, "a non-JSON value and a NaN")

    @hookimpl
    def register_models(self, register: Any) -> None:
        register("odd-ae", OddAE, "an AE whose Config refuses odd k")


@pytest.fixture(scope="module")
def boundary_host():  # type: ignore[no-untyped-def]
    from harness.host import plugins

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_LOAD_PLUGINS", "")
        plugins.load_host(plugins={"boundary": Boundary()})
        yield
        plugins.reset_host()


@pytest.fixture(scope="module")
def finished_run(boundary_host, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One tiny run with every bad component (shared: training is the slow part)."""
    from harness.evaluation import evaluate as evaluation

    evaluation._WARNED.clear()  # messages are said once per process
    out = tmp_path_factory.mktemp("boundary") / "run"
    tiny = [a for a in TINY if "eval.protocols" not in a]
    res = cli("run", "--model", "ae", "--dataset", "digits", "--out", str(out), *tiny[:-1],
              "--set", 'eval.protocols=["reconstruction", "random-generation", "badver", '
                       '"nested"]',
              "--set", 'eval.metrics=["setval", "nanval", "raiser", "notdict"]',
              "--set", "eval.random-generation.n_samples=16",
              "--set", "eval.random-generation.gmm_components=2")
    return out, res


def test_bad_components_are_not_computed_and_every_other_number_is_written(
        finished_run) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    out, res = finished_run
    assert res.code == 0, res.err
    doc = strict_json((out / "metrics.json").read_text())  # valid JSON: no NaN
    by = {(r["protocol"], r["metric"]): r for r in doc["results"]}
    rec = by["reconstruction", "rec_error_percent"]["value"]
    assert isinstance(rec, float) and 0 < rec < 200
    setval = by["random-generation", "setval"]
    assert setval["value"] is None and "plugin 'boundary'" in setval["error"]
    assert "set" in setval["error"] and "not computed" in setval["error"]
    assert by["random-generation", "ok"]["value"] == 1.0
    nan = by["random-generation", "n"]
    assert nan["value"] is None and "nan" in nan["reason"] and "plugin 'boundary'" in nan["reason"]
    assert by["random-generation", "inf"]["value"] == [1.0, None]
    raiser = by["random-generation", "raiser"]
    assert raiser["value"] is None and raiser["error"] == "RuntimeError: boom"
    assert raiser["component"] == "metric 'raiser' (plugin 'boundary')"
    assert "returned a list" in by["random-generation", "notdict"]["error"]
    badver = by["badver", "error"]
    assert badver["value"] is None and "version = 'one'" in badver["error"]
    assert "protocol 'badver' (plugin 'boundary')" in badver["error"]
    nested = by["nested", "error"]  # a non-JSON own value: the protocol is not computed
    assert "returned a object for 'obj'" in nested["error"]


def test_a_raising_metric_prints_one_line_not_a_traceback(finished_run) -> None:  # type: ignore[no-untyped-def]
    _, res = finished_run
    assert "Traceback" not in res.err
    lines = [ln for ln in res.err.splitlines() if "'raiser'" in ln]
    assert lines == ["warning: metric 'raiser' (plugin 'boundary') not computed: "
                     "RuntimeError: boom"]


def test_report_json_is_valid_json_even_from_an_old_metrics_file_with_nan(
        finished_run) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    out, _ = finished_run
    path = out / "metrics.json"
    doc = json.loads(path.read_text())
    doc["results"].append({**doc["results"][0], "metric": "legacy", "value": float("nan")})
    path.write_text(json.dumps(doc))  # what the harness wrote before: a bare NaN
    assert "NaN" in path.read_text()
    res = cli("report", str(out), "--format", "json")
    assert res.code == 0, res.err
    rows = strict_json(res.out)
    assert {r["metric"] for r in rows} >= {"rec_error_percent", "ok"}
    assert "legacy" not in {r["metric"] for r in rows}


def test_harness_debug_prints_the_traceback(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from harness.evaluation import evaluate as evaluation

    monkeypatch.setenv("HARNESS_DEBUG", "1")
    monkeypatch.setattr(evaluation, "_WARNED", set())
    try:
        raise KeyError("deep")
    except KeyError as exc:
        message = evaluation._not_computed("metric 'x' (plugin 'p')", exc)
    err = capsys.readouterr().err
    assert message == "KeyError: 'deep'"
    assert "warning: metric 'x' (plugin 'p') not computed: KeyError: 'deep'" in err
    assert "Traceback" in err


def test_a_model_config_that_rejects_a_value_names_its_plugin(
        boundary_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    res = cli("run", "--model", "odd-ae", "--dataset", "digits", "--out",
              str(tmp_path / "odd"), "--set", "model.k=3", *TINY)
    assert_error_line(res, 2, "model.k must be even, got 3", "plugin 'boundary'", "odd-ae")
    assert not (tmp_path / "odd").exists()
