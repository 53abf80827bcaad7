"""The built-in metrics plugin: registration, gaussian-fit, collapse, FID with the domain
extractor and with an injected extractor (caching of the reference statistics)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from harness.api import DatasetInfo
from harness.errors import HarnessError

# ---------------------------------------------------------------------------- registration


def test_plugin_registers_lazily_without_importing_torch() -> None:
    code = (
        "import sys, harness_plugins.metrics as m\n"
        "seen = []\n"
        "m.register_metrics(register=lambda n, f, d, **kw: seen.append((n, f)))\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print(seen)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "('fid', 'harness_plugins.metrics.fid:FID')" in out.stdout
    assert "gaussian-fit" in out.stdout and "collapse" in out.stdout


def test_factories_load_and_follow_the_metric_protocol() -> None:
    import harness_plugins.metrics as plugin

    from harness.api import Metric
    from harness.host.registry import Component

    found: dict[str, Any] = {}
    plugin.register_metrics(register=lambda n, f, d, **kw: found.__setitem__(n, f))
    assert set(found) == {"fid", "fid-inception", "kid", "gaussian-fit", "collapse", "prdc",
                          "memorisation", "bump-copies"}
    for name, factory in found.items():
        cls = Component("metric", name, factory, "", "metrics").load()
        metric = cls(cls.Config(), progress=False)  # the contract: factory(config, progress=)
        assert isinstance(metric, Metric), name
        assert metric.name == name
        assert metric.stamp() == {} and isinstance(metric.details(), dict)


# ---------------------------------------------------------------------------- gaussian-fit
BUMPS = DatasetInfo(name="bumps", shape=(1, 64, 64), metadata={"spread": 0.2})


def _bumps(centres: torch.Tensor, sigma: float = 0.2, n: int = 64) -> torch.Tensor:
    xs = torch.linspace(-1, 1, n, dtype=torch.float64)
    x0, y0 = centres[:, 0, None, None], centres[:, 1, None, None]
    img = torch.exp(-((xs[None, None, :] - x0) ** 2 + (xs[None, :, None] - y0) ** 2)
                    / (2 * sigma**2))  # fmt: skip
    return img[:, None].float()


def test_gaussian_fit_is_zero_on_perfect_bumps_and_finds_their_centres() -> None:
    from harness_plugins.metrics.gaussian_fit import GaussianFit, fit_bumps

    centres = torch.rand(40, 2, generator=torch.Generator().manual_seed(0)) - 0.5
    images = _bumps(centres.double())
    x0, y0, a = fit_bumps(images[:, 0].double(), 0.2)
    assert torch.allclose(x0, centres[:, 0].double(), atol=1e-4)
    assert torch.allclose(y0, centres[:, 1].double(), atol=1e-4)
    assert torch.allclose(a, torch.ones_like(a), atol=1e-4)
    out = GaussianFit()(images, None, BUMPS)  # type: ignore[arg-type]
    assert out["gaussian_fit_error_percent"] < 0.01  # float32 images: ~1e-5 %
    assert out["gaussian_fit_error_percent_std"] < 0.01


def test_gaussian_fit_error_values_by_hand() -> None:
    from harness_plugins.metrics.gaussian_fit import GaussianFit

    centres = torch.tensor([[0.1, -0.3], [-0.4, 0.25]], dtype=torch.float64)
    metric = GaussianFit()
    # half the magnitude: the right centre is found, the error vs the peak-1 bump is 50 %
    half = metric(0.5 * _bumps(centres), None, BUMPS)  # type: ignore[arg-type]
    assert half["gaussian_fit_error_percent"] == pytest.approx(50.0, abs=1e-3)
    # a black image: 100 %
    black = metric(torch.zeros(3, 1, 64, 64), None, BUMPS)  # type: ignore[arg-type]
    assert black["gaussian_fit_error_percent"] == pytest.approx(100.0, abs=1e-6)
    # noise: far from any bump
    noise = torch.rand(20, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    assert metric(noise, None, BUMPS)["gaussian_fit_error_percent"] > 150  # type: ignore[arg-type]
    # a wider bump of the right height is penalised, a slightly noisy bump only a little
    wide = metric(_bumps(centres, sigma=0.3), None, BUMPS)  # type: ignore[arg-type]
    assert 20 < wide["gaussian_fit_error_percent"] < 80
    # noise of std 0.01 on a bump: error ~ ||noise|| / ||g|| = 0.01 * 64 / ||g|| (~5.7 %)
    clean = _bumps(centres)
    eps = 0.01 * torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    expected = float((100 * eps.flatten(1).norm(dim=1) / clean.flatten(1).norm(dim=1)).mean())
    got = metric(clean + eps, None, BUMPS)["gaussian_fit_error_percent"]  # type: ignore[arg-type]
    assert got == pytest.approx(expected, rel=0.02) and 4 < got < 8
    assert metric.stamp()["spread"] == 0.2


def test_gaussian_fit_undoes_the_dataset_standardization() -> None:
    from harness_plugins.metrics.gaussian_fit import GaussianFit

    info = DatasetInfo(name="bumps", shape=(1, 64, 64),
                       metadata={"spread": 0.2, "standardization": {"mean": 0.1, "std": 0.2}})
    centres = torch.tensor([[0.2, 0.2]], dtype=torch.float64)
    stored = (_bumps(centres) - 0.1) / 0.2
    assert GaussianFit()(stored, None, info)["gaussian_fit_error_percent"] < 0.01  # type: ignore


def test_gaussian_fit_applies_only_to_bumps() -> None:
    from harness_plugins.metrics.gaussian_fit import GaussianFit

    m = GaussianFit()
    assert m.applies(BUMPS)
    assert m.applies(DatasetInfo("b2", (1, 32, 32), metadata={"sigma": 0.1}))
    assert not m.applies(DatasetInfo("mnist", (1, 28, 28), num_classes=10))
    assert not m.applies(DatasetInfo("rgb", (3, 64, 64), metadata={"spread": 0.2}))


# -------------------------------------------------------------------------------- collapse
def test_collapse_counts_planted_dimensions_relative_to_the_largest() -> None:
    from harness_plugins.metrics.collapse import Collapse

    g = torch.Generator().manual_seed(0)
    codes = torch.randn(1000, 6, generator=g) * torch.tensor([5.0, 1.0, 0.3, 1e-3, 0.0, 0.01])
    codes[:, 4] += 7.0  # constant but non-zero: still collapsed
    out = Collapse()(codes, None, BUMPS)  # type: ignore[arg-type]
    # variances 25, 1, 0.09, 1e-6, 0, 1e-4: threshold 1e-3 * 25 = 0.025
    assert out["collapsed_dims"] == 3 and out["active_dims"] == 3
    assert out["code_variances"][0] == pytest.approx(25.0, rel=0.1)
    assert out["code_variances"][4] == 0.0
    # scale-free: multiplying the codes by 1000 changes nothing
    assert Collapse()(codes * 1000, None, BUMPS)["collapsed_dims"] == 3  # type: ignore[arg-type]
    assert Collapse()(torch.ones(5, 3), None, BUMPS)["collapsed_dims"] == 3  # type: ignore
    # threshold 0.01 * 25 = 0.25: the 0.09 dimension is collapsed too
    assert Collapse(Collapse.Config(threshold=0.01))(codes, None, BUMPS)["collapsed_dims"] == 4  # type: ignore


# ---------------------------------------------------------------------- FID, fake extractor
class MeanPixelExtractor:
    """Features = per-channel mean and std of each image (2 numbers): FID is checkable."""

    def __init__(self) -> None:
        self.images_seen = 0

    def __call__(self, images: torch.Tensor, device: Any = None) -> torch.Tensor:
        self.images_seen += images.shape[0]
        x = images.clamp(0, 1).double().flatten(1)
        return torch.stack([x.mean(1), x.std(1)], dim=1)

    def describe(self) -> dict[str, Any]:
        return {"feature_extractor": "mean-std test features"}


def _labelled(images: torch.Tensor, labels: torch.Tensor | None = None) -> TensorDataset:
    if labels is None:
        labels = torch.full((images.shape[0],), -1)
    return TensorDataset(images.float(), labels.long())


def test_fid_metric_uses_harness_fid_and_caches_the_reference() -> None:
    from harness_plugins.metrics.fid import FID

    from harness.evaluation.fid import FeatureStats, fid_from_stats

    g = torch.Generator().manual_seed(0)
    reference = _labelled(torch.rand(100, 1, 8, 8, generator=g))
    extractor = MeanPixelExtractor()
    metric = FID(FID.Config(batch_size=16, n_reference=60), extractor=extractor)
    generated = torch.rand(30, 1, 8, 8, generator=g) * 0.5
    info = DatasetInfo("toy", (1, 8, 8))
    value = metric(generated, reference, info)["fid"]
    assert extractor.images_seen == 60 + 30
    idx = sorted(torch.randperm(100, generator=torch.Generator().manual_seed(0))[:60].tolist())
    ref = FeatureStats().update(MeanPixelExtractor()(reference.tensors[0][idx]))
    gen = FeatureStats().update(MeanPixelExtractor()(generated))
    assert value == pytest.approx(fid_from_stats(gen, ref), rel=1e-10)
    assert value > 0.01
    metric(generated, reference, info)  # second protocol: reference stats reused
    assert extractor.images_seen == 60 + 30 + 30
    stamp = metric.stamp()
    assert stamp["n_reference"] == 60 and stamp["n_images"] == 30
    assert stamp["feature_extractor"] == "mean-std test features"
    assert stamp["metric"] == "fid" and stamp["metric_version"] == 2
    assert stamp["reference_dataset"]["n"] == 100
    assert metric.details()["reference_features"] == "reused in memory"
    # images out of [0, 1] are clamped before the features
    assert metric(generated * 3 - 1, reference, info)["fid"] == pytest.approx(
        metric((generated * 3 - 1).clamp(0, 1), reference, info)["fid"])


class HashedExtractor(MeanPixelExtractor):
    """A test extractor that declares a weights hash: its reference statistics go to disk."""

    name = "hashed"

    def describe(self) -> dict[str, Any]:
        return {"feature_extractor": "hashed test features", "feature_weights_sha256": "ab" * 32}


def test_reference_statistics_are_cached_on_disk_per_dataset_content() -> None:
    from harness_plugins.metrics.fid import FID

    g = torch.Generator().manual_seed(0)
    reference = _labelled(torch.rand(50, 1, 8, 8, generator=g))
    generated = torch.rand(20, 1, 8, 8, generator=g)
    info = DatasetInfo("toy-disk", (1, 8, 8))
    first = FID(extractor=HashedExtractor())
    value = first(generated, reference, info)["fid"]
    assert first.details()["reference_features"] == "computed"
    path = first.details()["reference_features_path"]
    assert path.endswith(".safetensors") and Path(path).is_file()
    ex = HashedExtractor()
    second = FID(extractor=ex)  # a new run: nothing in memory
    assert second(generated, reference, info)["fid"] == pytest.approx(value, rel=1e-12)
    assert ex.images_seen == 20  # only the generated images went through the extractor
    assert second.details()["reference_features"] == "loaded from cache"
    assert second.stamp() == first.stamp()  # provenance is not part of the stamp
    # same name and size, other content: not served from the cache
    other = _labelled(torch.rand(50, 1, 8, 8, generator=g))
    third = FID(extractor=HashedExtractor())
    third(generated, other, info)
    assert third.details()["reference_features"] == "computed"
    assert third.stamp()["reference_dataset"] != first.stamp()["reference_dataset"]


def test_unknown_extractor_is_a_clear_error() -> None:
    from harness_plugins.metrics.fid import FID

    with pytest.raises(HarnessError, match="did you mean 'inception'"):
        FID.Config(feature_extractor="incepton")
    assert FID.Config().feature_extractor == "domain"  # the paper's protocol by default


# ------------------------------------------------------------------------- domain extractor
def _shapes_dataset(n: int, seed: int, size: int = 16) -> TensorDataset:
    """Three easy classes: a horizontal bar, a vertical bar, a centred square (+ noise)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = 0.1 * torch.rand(n, 1, size, size, generator=g)
    pos = torch.randint(2, size - 4, (n,), generator=g)
    for i in range(n):
        p = int(pos[i])
        if labels[i] == 0:
            images[i, 0, p : p + 3, :] = 0.9
        elif labels[i] == 1:
            images[i, 0, :, p : p + 3] = 0.9
        else:
            images[i, 0, 4:12, 4:12] = 0.9
    return _labelled(images, labels)


def test_domain_extractor_trains_caches_and_separates_distributions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness_plugins.metrics import domain, domain_extractor
    from harness_plugins.metrics.fid import FID

    monkeypatch.setattr(domain, "BATCH", 32)  # more, cheaper steps on a tiny training set
    monkeypatch.setattr(domain, "MIN_STEPS", 60)
    train = _shapes_dataset(600, seed=0)
    info = DatasetInfo("shapes", (1, 16, 16), num_classes=3)
    metric = FID(FID.Config(batch_size=128))
    same = _shapes_dataset(300, seed=1).tensors[0]
    noise = torch.rand(300, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    fid_same = metric(same, train, info)["fid"]
    fid_noise = metric(noise, train, info)["fid"]
    stamp = metric.stamp()
    assert stamp["extractor_accuracy"] > 0.9
    assert stamp["extractor_n_fit"] == 540 and stamp["extractor_n_holdout"] == 60
    assert stamp["feature_extractor"] == "domain-cnn v3 penultimate 128"
    assert len(stamp["feature_weights_sha256"]) == 64
    assert metric.details()["extractor"] == "trained"
    assert not any("/" in str(v) for v in stamp.values())  # no paths in the stamp
    assert fid_noise > 10 * fid_same

    # Trained once: a second metric object loads the cached classifier, same features.
    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("trained again instead of using the cache")

    monkeypatch.setattr(domain_extractor.DomainExtractor, "_train_and_save",
                        staticmethod(no_training))
    again = FID(FID.Config(batch_size=128))
    assert again(same, train, info)["fid"] == pytest.approx(fid_same, rel=1e-9)
    assert again.stamp() == metric.stamp()
    assert again.details()["extractor"] == "loaded from cache"
    # A different dataset (other content, same name and size) is not served from the cache.
    with pytest.raises(AssertionError, match="trained again"):
        FID()(same, _shapes_dataset(600, seed=5), info)


def test_domain_extractor_refuses_unlabelled_data() -> None:
    from harness_plugins.metrics.fid import FID, FIDInception

    unlabelled = _labelled(torch.rand(100, 1, 8, 8))
    info = DatasetInfo("bumps", (1, 8, 8), metadata={"spread": 0.2})
    assert not FID().applies(info)  # num_classes None: the protocol runner skips it
    with pytest.raises(HarnessError, match="no labels") as exc:
        FID()(torch.rand(4, 1, 8, 8), unlabelled, info)
    assert "fid-inception" in str(exc.value)
    assert "gaussian-fit" in str(exc.value)
    # labels -1 although num_classes is set: refused too
    with pytest.raises(HarnessError, match="no labels"):
        FID()(torch.rand(4, 1, 8, 8), unlabelled, DatasetInfo("odd", (1, 8, 8), num_classes=3))
    # an unlabelled natural-image dataset: the ImageNet FID applies, the paper's does not
    faces = DatasetInfo("faces", (3, 64, 64))
    assert FIDInception().applies(faces) and not FID().applies(faces)


def test_domain_features_have_the_documented_shape() -> None:
    from harness_plugins.metrics.domain import FEATURE_DIM, DomainClassifier

    net = DomainClassifier(3, 10).eval()  # CIFAR- and CelebA-sized inputs both go to 32x32
    with torch.no_grad():
        f = net.features(torch.rand(5, 3, 160, 160))
    assert f.shape == (5, FEATURE_DIM)
    assert np.isfinite(f.numpy()).all()


def test_gaussian_fit_on_the_real_bumps_dataset() -> None:
    from harness_plugins.datasets.bumps import load
    from harness_plugins.metrics.fid import FID
    from harness_plugins.metrics.gaussian_fit import GaussianFit

    from harness.api import DataConfig

    splits = load(DataConfig())
    metric = GaussianFit()
    assert metric.applies(splits.info)
    # the paper scores bumps with this error, not with FID
    assert not FID().applies(splits.info)
    from harness_plugins.metrics.fid import FIDInception
    from harness_plugins.metrics.kid import KID

    assert not FIDInception().applies(splits.info) and not KID().applies(splits.info)
    assert FID().applies(DatasetInfo("mnist", (1, 28, 28), num_classes=10))
    test = torch.stack([splits.test[i][0] for i in range(len(splits.test))])
    assert metric(test, splits.train, splits.info)["gaussian_fit_error_percent"] < 0.01
    train = torch.stack([splits.train[i][0] for i in range(len(splits.train))])
    m, s = (splits.info.metadata["standardization"][key] for key in ("mean", "std"))
    scaled = ((train * s + m) * 0.8 - m) / s  # right place, 80 % of the height (raw scale)
    out = metric(scaled, splits.train, splits.info)
    assert out["gaussian_fit_error_percent"] == pytest.approx(20.0, abs=1e-3)
