"""The metric contract of the built-in metrics plugin: Config dataclasses, stamps that
describe the protocol only (identical cold or warm, in any cache directory), details for
provenance, the host's adapter, the public API the plugin imports, progress output."""

from __future__ import annotations

import ast
import dataclasses
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset

from harness.api import DatasetInfo, DataSplits

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = {"harness", "harness.api", "harness.hookspecs", "harness.errors"}


def test_metrics_plugin_imports_only_the_public_api() -> None:
    offenders = []
    for path in sorted((ROOT / "plugins" / "metrics").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names
                          if n.split(".")[0] == "harness" and n not in PUBLIC]  # fmt: skip
    assert offenders == []


def test_api_exports_the_fid_statistics_lazily() -> None:
    code = ("import sys, harness.api as api\n"
            "assert 'torch' not in sys.modules, 'harness.api imported torch'\n"
            "from harness.api import FeatureStats, fid_from_features, frechet_distance\n"
            "import harness.evaluation.fid as f\n"
            "assert FeatureStats is f.FeatureStats and fid_from_features is f.fid_from_features\n"
            "try:\n    api.nope\nexcept AttributeError as e:\n    print(e)\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "has no attribute 'nope'" in out.stdout


def test_every_metric_has_a_config_dataclass_with_the_papers_defaults() -> None:
    from harness_plugins.metrics.collapse import Collapse
    from harness_plugins.metrics.fid import FID, FIDInception
    from harness_plugins.metrics.gaussian_fit import GaussianFit
    from harness_plugins.metrics.kid import KID

    for cls in (FID, FIDInception, KID, GaussianFit, Collapse):
        assert dataclasses.is_dataclass(cls.Config), cls
        assert "Metric contract" in sys.modules[cls.__module__].__doc__ or \
            "metric contract" in sys.modules[cls.__module__].__doc__  # fmt: skip
    fid = FID.Config()
    assert (fid.feature_extractor, fid.n_reference, fid.fid_weights) == ("domain", None, None)
    assert {f.name for f in dataclasses.fields(FIDInception.Config)} == {
        "fid_weights", "n_reference", "batch_size"}
    kid = KID.Config()
    assert (kid.subsets, kid.subset_size, kid.degree, kid.gamma, kid.coef) == (
        100, 1000, 3, None, 1.0)  # torchmetrics' defaults


def test_build_metrics_passes_config_and_progress() -> None:
    from harness.configuration import run_config as cfgmod
    from harness.evaluation.evaluate import build_metrics
    from harness.host.plugins import get_host

    rc = cfgmod.resolve(model="ae", dataset="fashion-mnist",
                        sets=['eval.metrics=["fid", "collapse"]', "eval.fid.n_reference=500"])
    built = dict(build_metrics(rc.eval, host=get_host(), progress=True))
    fid, collapse = built["fid"], built["collapse"]
    assert fid.config == fid.Config(n_reference=500) and fid.progress is True
    assert fid.config.feature_extractor == "domain"  # the paper's protocol by default
    assert collapse.config == collapse.Config()
    rc = cfgmod.resolve(model="ae", dataset="fashion-mnist",
                        sets=['eval.metrics=["fid"]', "eval.fid.feature_extractor=inception"])
    ((_, fid),) = build_metrics(rc.eval, host=get_host())
    assert fid.config.feature_extractor == "inception" and fid.progress is False



class Tiny(torch.nn.Module):
    """Codes = two pixels; decode = an image of their mean (enough to exercise evaluate)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :2]

    def decode(self, c: torch.Tensor) -> torch.Tensor:
        return c.mean(1).reshape(-1, 1, 1, 1).expand(-1, 1, 16, 16)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def _labelled_toy(n: int = 300) -> DataSplits:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    images = 0.1 * torch.rand(n, 1, 16, 16, generator=g)
    images[labels == 0, :, 4:12, :] += 0.8
    images[labels == 1, :, :, 4:12] += 0.8
    data = TensorDataset(images, labels)
    return DataSplits(DatasetInfo("toy-labelled", (1, 16, 16), num_classes=2), data, data)


def test_same_protocol_same_stamp_cold_or_warm_in_any_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two cache directories, each cold then warm: four evaluations, one stamp per record
    kind, hence one `harness report` column per metric; provenance only in details."""
    from harness_plugins.metrics import domain
    from harness_plugins.metrics.fid import FID
    from harness_plugins.metrics.kid import KID
    from harness_plugins.protocols.paper import (
        Interpolation,
        InterpolationConfig,
        RandomGeneration,
        RandomGenerationConfig,
    )

    from harness.configuration.run_config import EvalConfig
    from harness.evaluation import tables as report
    from harness.evaluation.evaluate import evaluate

    monkeypatch.setattr(domain, "MIN_STEPS", 12)
    monkeypatch.setattr(domain, "BATCH", 32)
    splits = _labelled_toy()
    cfg = EvalConfig()
    protocols = [("random-generation", RandomGeneration(RandomGenerationConfig(24, 1))),
                 ("interpolation", Interpolation(InterpolationConfig(4, 5)))]
    runs: list[list[dict[str, Any]]] = []
    for cache in ("a", "a", "b", "b"):
        monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / cache))
        metrics = [("fid", FID()), ("kid", KID(KID.Config(subsets=3)))]
        runs.append([r for r in evaluate(Tiny(), splits, cfg, seed=0, protocols=protocols,
                                         metrics=metrics, progress=False)
                     if r["source"] in ("fid", "kid")])
    for records in runs:
        assert len(records) == 6 and all(r["value"] is not None for r in records)
    keys = [[(r["protocol"], r["metric"], report.stamp_key(r)) for r in records]
            for records in runs]  # fmt: skip
    assert keys[0] == keys[1] == keys[2] == keys[3]
    cold, warm = runs[2][0], runs[3][0]
    assert cold["stamp"] == warm["stamp"]
    assert cold["details"]["extractor"] == "trained"
    assert warm["details"]["extractor"] == "loaded from cache"
    assert cold["details"]["reference_features"] == "computed"
    assert warm["details"]["reference_features"] == "loaded from cache"
    assert str(tmp_path / "b") in cold["details"]["feature_weights"]
    assert str(tmp_path) not in str([r["stamp"] for rs in runs for r in rs])
    stamp = cold["stamp"]
    assert stamp["metric"] == "fid" and 0 <= stamp["extractor_accuracy"] <= 1
    assert len(stamp["feature_weights_sha256"]) == 64
    assert stamp["reference_dataset"]["dataset"] == "toy-labelled"


def test_accuracy_warning_for_a_weak_extractor() -> None:
    from harness_plugins.metrics.domain import accuracy_warning

    msg = accuracy_warning("fashion-mnist", 0.83, 54000)
    assert msg is not None and "0.830" in msg and "0.91" in msg and "noise" in msg
    assert accuracy_warning("fashion-mnist", 0.915, 54000) is None
    assert accuracy_warning("mnist", 0.94, 54000) is not None  # the old recipe's number
    assert accuracy_warning("my-data", 0.6, 300) is not None
    assert accuracy_warning("my-data", 0.85, 300) is None


def test_progress_plain_lines_at_a_steady_cadence() -> None:
    """Evaluation work uses the host's one Progress (harness.api.Progress)."""
    from harness_plugins.metrics.extractor import EVAL_PROGRESS_EVERY_S

    from harness import api

    err = io.StringIO()  # not a terminal
    clock = iter(float(t) for t in range(100))
    with api.Progress(10, what="[eval] features", unit="img", every_s=3.0, stream=err,
                      clock=lambda: next(clock)) as bar:  # fmt: skip
        for _ in range(10):
            bar.advance(1)
    lines = err.getvalue().splitlines()
    # clock: start 0, updates at 1..10: lines at t=3, 6, 9 and at the last unit
    assert lines == ["[eval] features: 3/10 img (3 s)", "[eval] features: 6/10 img (6 s)",
                     "[eval] features: 9/10 img (9 s)", "[eval] features: 10/10 img (10 s)"]
    err = io.StringIO()
    with api.Progress(5, what="quiet", stream=err, enabled=False) as bar:
        bar.advance(5)
    assert err.getvalue() == ""
    clock = iter(float(t) for t in range(100))  # stopped before its total: close says where
    with api.Progress(10, what="stopped", unit="img", every_s=50.0, stream=err,
                      clock=lambda: next(clock)) as bar:  # fmt: skip
        bar.postfix("loss 0.5")
        bar.advance(4)
    assert err.getvalue().splitlines() == ["stopped: 4/10 img (2 s, loss 0.5)"]
    assert EVAL_PROGRESS_EVERY_S == 10.0


def test_save_samples_exports_reference_stats_in_pytorch_fid_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import numpy as np
    from harness_plugins.metrics import domain
    from harness_plugins.metrics.fid import FID
    from harness_plugins.protocols.paper import RandomGeneration, RandomGenerationConfig

    from harness.configuration.run_config import EvalConfig
    from harness.evaluation.evaluate import evaluate

    monkeypatch.setattr(domain, "MIN_STEPS", 12)
    monkeypatch.setattr(domain, "BATCH", 32)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    fid = FID()
    evaluate(Tiny(), _labelled_toy(), EvalConfig(), seed=0,
             protocols=[("random-generation", RandomGeneration(RandomGenerationConfig(24, 1)))],
             metrics=[("fid", fid)], progress=False, samples_dir=tmp_path / "samples")
    saved = np.load(tmp_path / "samples" / "fid" / "reference_stats.npz")
    stats = fid.reference_stats(_labelled_toy().train, _labelled_toy().info)
    assert saved["mu"].shape == (stats.mean.shape[0],)
    assert np.array_equal(saved["mu"], stats.mean) and np.array_equal(saved["sigma"], stats.cov)
    stamp = json.loads((tmp_path / "samples" / "fid" / "stamp.json").read_text())
    assert stamp["feature_extractor"].startswith("domain-cnn")
    images = np.load(tmp_path / "samples" / "random-generation.npz")["images"]
    assert images.shape == (24, 16, 16, 1) and images.dtype == np.uint8


def test_evaluate_hands_memorisation_the_test_split_for_its_held_out_null() -> None:
    from harness_plugins.metrics.neighbours import Memorisation, authenticity
    from harness_plugins.protocols.paper import RandomGeneration, RandomGenerationConfig

    from harness.configuration.run_config import EvalConfig
    from harness.evaluation.evaluate import evaluate

    class Pixels:
        name = "pixels"

        def __call__(self, images: torch.Tensor, device: object = None) -> torch.Tensor:
            return images.double().flatten(1)

        def describe(self) -> dict[str, str]:
            return {"feature_extractor": "pixels (test)", "feature_weights_sha256": ""}

    toy = _labelled_toy(120)
    g = torch.Generator().manual_seed(5)
    test = TensorDataset(torch.rand(40, 1, 16, 16, generator=g), torch.zeros(40).long())
    splits = DataSplits(toy.info, toy.train, test)
    records = evaluate(Tiny(), splits, EvalConfig(), seed=0,
                       protocols=[("random-generation",
                                   RandomGeneration(RandomGenerationConfig(16, 1)))],
                       metrics=[("memorisation", Memorisation(extractor=Pixels()))],
                       progress=False)  # fmt: skip
    values = {r["metric"]: r["value"] for r in records if r.get("source") == "memorisation"}
    train = torch.stack([toy.train[i][0] for i in range(120)]).double().flatten(1)
    null = authenticity(train, test.tensors[0].double().flatten(1))
    assert values["memorised_held_out"] == null["memorised"]
    assert values["authenticity_held_out"] == null["authenticity"]
    assert {"authenticity", "memorised"} <= set(values)


def test_reference_option_scores_against_test_or_both_with_the_train_test_gap() -> None:
    from harness_plugins.protocols.paper import (
        Interpolation,
        InterpolationConfig,
        RandomGeneration,
        RandomGenerationConfig,
    )

    from harness.configuration.run_config import EvalConfig
    from harness.errors import ConfigError
    from harness.evaluation.evaluate import evaluate

    class MeanGap:
        """|mean pixel of the images − mean pixel of the reference|."""

        name = "mean-gap"
        higher_is_better = False
        inputs = ("samples",)

        def __call__(self, images: torch.Tensor, reference: Any, info: Any,
                     device: Any = None) -> dict[str, float]:  # fmt: skip
            ref = torch.stack([reference[i][0] for i in range(len(reference))])
            return {"mean_gap": float((images.mean() - ref.mean()).abs())}

        def stamp(self) -> dict[str, str]:
            return {"reference": "train"}  # as fid's stamp says: the protocol's choice wins

    toy = _labelled_toy(60)
    test_images = torch.full((20, 1, 16, 16), 0.9)
    splits = DataSplits(toy.info, toy.train, TensorDataset(test_images, torch.zeros(20).long()))
    metric = MeanGap()

    def run(reference: str) -> dict[str, dict[str, Any]]:
        protocol = RandomGeneration(RandomGenerationConfig(16, 1, reference=reference))
        recs = evaluate(Tiny(), splits, EvalConfig(), seed=0,
                        protocols=[("random-generation", protocol)],
                        metrics=[("mean-gap", metric)], progress=False)  # fmt: skip
        return {r["metric"]: r for r in recs if r.get("source") == "mean-gap"}

    train, test, both = run("train"), run("test"), run("both")
    assert set(train) == {"mean_gap"} and train["mean_gap"]["stamp"]["reference"] == "train"
    assert test["mean_gap"]["stamp"]["reference"] == "test" and test["mean_gap"]["split"] == "test"
    assert test["mean_gap"]["value"] != pytest.approx(train["mean_gap"]["value"])
    assert both["mean_gap"]["value"] == pytest.approx(train["mean_gap"]["value"])
    assert both["mean_gap_test"]["value"] == pytest.approx(test["mean_gap"]["value"])
    assert both["mean_gap_gap"]["value"] == pytest.approx(
        test["mean_gap"]["value"] - train["mean_gap"]["value"])
    assert RandomGeneration().stamp()["reference"] == "train"  # the paper's, the default
    assert Interpolation(InterpolationConfig(reference="test")).config.reference == "test"
    with pytest.raises(ConfigError, match="reference must be one of"):
        RandomGenerationConfig(reference="validation")


def test_test_reference_values_and_gaps_are_named_from_the_metrics_display() -> None:
    from harness.evaluation.display import describe
    from harness.host.plugins import host_or_default

    host = host_or_default(None)

    def shown(key: str) -> Any:
        return describe({"metric": key, "source": "memorisation", "higher_is_better": True},
                        host)

    assert shown("memorised_test").higher_is_better is False  # the value's own direction
    assert shown("memorised_test").name.endswith(", against the test split")
    assert shown("memorised_gap").higher_is_better is None
    assert shown("memorised_gap").name.startswith("memorised (")
