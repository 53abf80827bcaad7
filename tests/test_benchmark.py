"""`harness benchmark`: suites as data, the plan, β selection on a validation split, isolated
and resumable runs, the report (tables, claims, figures, one HTML file in a real browser)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from harness import benchmark
from harness.api import DataConfig
from harness.benchmark_report import claims
from harness.cli import main
from harness.errors import ConfigError
from harness.validation import carve_validation

REPO = Path(__file__).resolve().parents[1]


def test_builtin_suites_are_listed_and_planned() -> None:
    names = {row["name"] for row in benchmark.list_suites()}
    assert {"paper-synthetic", "paper-real", "paper-ablation", "beta-sweep"} <= names
    syn = benchmark.load_suite("paper-synthetic")
    specs = benchmark.plan(syn, "smoke", syn.seeds_list(), [])
    # 4 models x 5 seeds, no sweep: the paper uses beta = 1e-3 on the bumps (A.3)
    assert len(specs) == 20 and {s.phase for s in specs} == {"final"}
    vae = [s for s in specs if s.model == "vae"]
    assert all("model.beta=0.001" in s.sets and "train.steps=20" in s.sets for s in vae)
    real = benchmark.load_suite("paper-real")
    specs = benchmark.plan(real, "cpu", [0, 1, 2], ["train.lr=1e-4"])
    sweeps = [s for s in specs if s.phase == "sweep"]
    # (5 + 5 + 3 + 4) betas for each of vae and vrrae, on a validation split
    assert len(sweeps) == 2 * (5 + 5 + 3 + 4)
    assert all("data.validation=0.1" in s.sets and s.seed == 0 for s in sweeps)
    assert len([s for s in specs if s.phase == "final"]) == 4 * 4 * 3
    assert all("train.lr=1e-4" in s.sets for s in specs)


def test_suite_errors_and_cli_extensions() -> None:
    with pytest.raises(ConfigError, match="suite 'nope' is not known; known: .*paper-synthetic"):
        benchmark.load_suite("nope")
    with pytest.raises(ConfigError, match="unknown key"):
        benchmark.Suite.from_dict({"name": "x", "datasets": ["bumps"], "models": ["ae"],
                                   "epochs": 3}, "x")
    with pytest.raises(ConfigError, match="--budget must be one of smoke, cpu, paper"):
        benchmark.plan(benchmark.load_suite("paper-synthetic"), "huge", [0], [])
    suite, rest = benchmark.apply_cli_sets(benchmark.load_suite("paper-synthetic"),
                                           ["models+=tiny-ae", "train.lr=1e-2"])
    assert suite.models[-1] == "tiny-ae" and rest == ["train.lr=1e-2"]


def test_plugins_register_suites() -> None:
    spec = importlib.util.spec_from_file_location(
        "example_src", REPO / "tests/example_plugin/harness_example_plugin/__init__.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    found = {}
    module.register_suites(register=lambda name, suite, description="": found.update(
        {name: suite}))
    suite = benchmark.Suite.from_dict(found["tiny"], "plugin:tiny")
    assert suite.models == ["tiny-ae", "ae"] and suite.seeds == 2


def test_validation_split_is_carved_from_train_never_test() -> None:
    from harness_plugins.datasets import digits

    splits = digits.load(DataConfig())
    n_train, test_first = len(splits.train), splits.test[0][0]
    carved = carve_validation(digits.load(DataConfig()), 0.1)
    assert len(carved.test) == round(0.1 * n_train) and len(carved.train) == n_train - len(
        carved.test)
    # the validation items are training items, disjoint from the new training split
    val_idx, train_idx = set(carved.test.indices), set(carved.train.indices)
    assert not val_idx & train_idx and len(val_idx | train_idx) == n_train
    assert not any(bool((carved.test[i][0] == test_first).all()) for i in range(len(carved.test)))
    assert carved.test.dataset is carved.train.dataset  # both views of the TRAINING split
    again = carve_validation(digits.load(DataConfig()), 0.1)
    assert again.test.indices == carved.test.indices  # deterministic
    assert carved.info.metadata["validation"]["n_validation"] == len(carved.test)
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        carve_validation(digits.load(DataConfig()), 1.5)


def test_claims_are_judged_from_the_numbers() -> None:
    def row(mean: float, std: float, seeds: list[int]) -> dict:
        return {"mean": mean, "std": std, "n": len(seeds), "seeds": seeds}

    col = "random_generation/gaussian_fit_error_percent"
    by = {("bumps", "vrrae", col): row(10.0, 1.0, [0, 1, 2]),
          ("bumps", "vae", col): row(30.0, 20.0, [0, 1, 2]),
          ("bumps", "rrae", col): row(12.0, 2.0, [0, 1, 2]),
          ("bumps", "vrrae", "reconstruction/rec_error_percent"): row(5.0, 0.1, [0, 1, 2]),
          ("bumps", "vae", "reconstruction/rec_error_percent"): row(4.0, 0.1, [0, 1, 2]),
          ("bumps", "rrae", "reconstruction/rec_error_percent"): row(6.0, 0.1, [0, 1, 2])}
    found = claims({"suite": {"datasets": ["bumps", "mnist"]}}, by)
    verdicts = {c["claim"][:30]: c["verdict"] for c in found if c["dataset"] == "bumps"}
    mnist = {c["claim"][:30]: c["verdict"] for c in found if c["dataset"] == "mnist"}
    assert verdicts["VRRAE has a lower test reconst"] == "not supported"  # vae 4 < 5
    assert verdicts["VRRAE has a lower random-gener"] == "supported"
    assert verdicts["VAE's random-generation error "] == "supported"
    assert mnist["MNIST random generation is the"] == "not measured"
    assert mnist["VRRAE has a lower interpolatio"] == "not measured"
    assert "seeds 0,1,2" in found[0]["evidence"]


@pytest.fixture(scope="module")
def tiny_benchmark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real benchmark: ae fails on purpose (a key it does not have), vrrae sweeps two
    betas on a validation split then trains 2 seeds; a few steps each."""
    suite = tmp_path_factory.mktemp("suite") / "tiny.toml"
    suite.write_text("""
name = "tiny-test"
description = "test suite"
datasets = ["bumps"]
models = ["vrrae"]
seeds = 2
protocols = ["reconstruction", "random_generation", "interpolation", "codes"]
metrics = ["gaussian-fit", "collapse"]
set = ["data.n_test=8", "train.batch_size=16", "eval.random_generation.n_samples=16",
       "eval.random_generation.gmm_components=2", "eval.interpolation.n_pairs=2",
       "model.latent_dim=16", "train.steps=2"]
[model_set]
ae = ["model.latent_dim=16"]
[beta]
models = ["vrrae"]
values = [0.0, 1e-3]
validation = 0.2
select = "random_generation/gaussian_fit_error_percent"
""")
    out = tmp_path_factory.mktemp("bench") / "out"
    main(["benchmark", str(suite), "--out", str(out), "--jobs", "2", "--set", "models+=ae"])
    return out


@pytest.mark.slow  # six `harness run` subprocesses: ~30 s alone, minutes when loaded
def test_benchmark_runs_isolates_failures_and_reports(tiny_benchmark: Path) -> None:
    out = tiny_benchmark
    state = json.loads((out / "benchmark.json").read_text())
    runs = state["runs"]
    assert runs["bumps-ae-seed0"]["status"] == "failed"
    assert "unknown key 'model.latent_dim'" in runs["bumps-ae-seed0"]["error"]
    assert {runs[f"bumps-vrrae-seed{s}"]["status"] for s in (0, 1)} == {"done"}
    assert state["threads_per_run"] >= 1 and runs["bumps-vrrae-seed0"]["wall_s"] > 0
    (choice,) = state["beta_selection"]
    values = {float(k): v for k, v in choice["values"].items()}
    assert set(values) == {0.0, 1e-3} and choice["chosen"] == min(values, key=values.get)
    # the sweep never saw the test set: its "test" split is the validation slice of train
    sweep_cfg = (out / "runs" / "sweep-bumps-vrrae-beta0" / "config.toml").read_text()
    assert "validation = 0.2" in sweep_cfg
    final_cfg = (out / "runs" / "bumps-vrrae-seed1" / "config.toml").read_text()
    assert "validation" not in final_cfg and f"beta = {choice['chosen']!r}" in final_cfg
    md = (out / "report.md").read_text()
    assert "budget `smoke`" in md and "| bumps | vrrae |" in md and "(n=2)" in md
    assert "chosen" in md and "bumps-ae-seed0 | final | failed" in md
    assert "**not measured** (bumps)" in md
    csv = (out / "report.csv").read_text().splitlines()
    assert csv[0].endswith(",budget") and all(line.endswith(",smoke") for line in csv[1:])
    assert {p.name for p in (out / "figures").iterdir()} >= {
        "latent-bumps.png", "interpolation-bumps.png", "loss-bumps.png", "beta-bumps-vrrae.png",
        "samples-bumps.png"}


@pytest.mark.slow  # six `harness run` subprocesses: ~30 s alone, minutes when loaded
def test_finished_runs_are_skipped_and_interrupted_ones_resumed(tiny_benchmark: Path) -> None:
    out = tiny_benchmark
    metrics = out / "runs" / "bumps-vrrae-seed1" / "metrics.json"
    before = (out / "runs" / "bumps-vrrae-seed0" / "metrics.json").stat().st_mtime_ns
    metrics.unlink()  # as if interrupted after training
    state = json.loads((out / "benchmark.json").read_text())
    suite = benchmark.Suite.from_dict(
        {k: v for k, v in state["suite"].items() if k != "source"}, "again")
    benchmark.run_suite(suite, out, budget="smoke", jobs=1)
    assert (out / "runs" / "bumps-vrrae-seed0" / "metrics.json").stat().st_mtime_ns == before
    assert metrics.is_file()
    state = json.loads((out / "benchmark.json").read_text())
    assert state["runs"]["bumps-vrrae-seed1"]["command"][:2] == ["run", "--resume"]
    assert state["runs"]["bumps-vrrae-seed0"]["skipped"] is True


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.slow  # uses the benchmark fixture; `tox -e html` runs it
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="needs Debian's chromium and chromium-driver (apt-get install -y "
                           "chromium chromium-driver); run with tox -e html")
def test_html_report_in_a_real_headless_browser(tiny_benchmark: Path) -> None:
    pytest.importorskip("selenium", reason="pip install selenium (tox -e html installs it)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    page = tiny_benchmark / "report.html"
    text = page.read_text()
    assert "src='data:image/png;base64," in text and "<link" not in text  # self-contained
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(page.as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        assert "tiny-test" in driver.title and "smoke" in driver.title
        assert len(driver.find_elements(By.TAG_NAME, "table")) >= 3
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) == text.count("<img")  and len(images) >= 4
        for img in images:  # every image decoded: a broken data URI has naturalWidth 0
            assert driver.execute_script("return arguments[0].naturalWidth", img) > 0
        assert "Claims of the paper" in driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()


def test_benchmark_cli_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["benchmark"])
    assert exc.value.code == 2 and "usage: harness benchmark SUITE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["benchmark", "report", str(REPO)])
    assert "not a benchmark directory" in capsys.readouterr().err
    main(["benchmark", "--list"])
    assert "paper-synthetic" in capsys.readouterr().out
    assert sys.executable


def test_final_metrics_go_to_the_trackers() -> None:
    from harness.runner import log_final_metrics

    calls = []

    class FakeAccelerator:
        def log(self, values: dict, step: int) -> None:
            calls.append((values, step))

    doc = {"results": [{"protocol": "reconstruction", "metric": "rec_error_percent",
                        "value": 12.5},
                       {"protocol": "codes", "metric": "code_variances", "value": [1.0, 2.0]},
                       {"protocol": "random_generation", "metric": "fid", "value": None}]}
    logged = log_final_metrics(FakeAccelerator(), doc, step=40)
    assert calls == [({"final/reconstruction/rec_error_percent": 12.5}, 40)] and logged
