"""The built-in protocols (harness_plugins.protocols) and the host's evaluation runner
(harness.evaluation.evaluate), with tiny hand-checkable models (no dependency on the autoencoder
plugin)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from harness_plugins.protocols.paper import (
    Codes,
    Interpolation,
    InterpolationConfig,
    RandomGeneration,
    RandomGenerationConfig,
    Reconstruction,
    interpolate_codes,
    interpolation_pairs,
)
from harness_plugins.protocols.paper import reconstruction_error as _rec
from torch.utils.data import TensorDataset

from harness.api import DatasetInfo, DataSplits, EvalContext
from harness.configuration.run_config import EvalConfig
from harness.errors import HarnessError
from harness.evaluation.evaluate import build_metrics, evaluate, save_image_grid
from harness.host.registry import Component, Registry

SHAPE = (1, 4, 4)
P = 16  # pixels per image


class Labelled(TensorDataset):
    """(image, label) items like the real datasets."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        labels = labels if labels is not None else torch.full((images.shape[0],), -1)
        super().__init__(images.float(), labels.long())


class LinearAE(torch.nn.Module):
    """encode = W^T x, decode = W c (W has orthonormal columns): a PCA-like linear AE."""

    def __init__(self, k: int = 3, seed: int = 0, zero_dims: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(P, k, generator=g))
        if zero_dims:
            q[:, k - zero_dims :] = 0.0  # planted collapsed dimensions: constant codes
        self.W = torch.nn.Parameter(q)
        self.k = k

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1) @ self.W

    def decode(self, c: torch.Tensor) -> torch.Tensor:
        return (c @ self.W.T).reshape(c.shape[0], *SHAPE)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class Identity(LinearAE):
    def __init__(self) -> None:
        super().__init__(k=P)
        self.W = torch.nn.Parameter(torch.eye(P))


class Zeros(LinearAE):
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class PlusOne(LinearAE):
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1.0


def _splits(n_train: int = 60, n_test: int = 4, seed: int = 0,
            metadata: dict[str, Any] | None = None) -> DataSplits:  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    info = DatasetInfo(name="toy", shape=SHAPE, metadata=metadata or {})
    train = Labelled(torch.rand(n_train, *SHAPE, generator=g))
    test = Labelled(torch.rand(n_test, *SHAPE, generator=g))
    return DataSplits(info=info, train=train, test=test)


def _ctx(model: Any, splits: DataSplits, seed: int = 0, batch_size: int = 256) -> EvalContext:
    return EvalContext(model, splits, seed=seed, batch_size=batch_size)


def reconstruction_error(model: Any, test: Any, batch_size: int = 256) -> dict[str, float]:
    info = DatasetInfo(name="toy", shape=SHAPE)
    return _rec(_ctx(model, DataSplits(info, test, test), batch_size=batch_size), "test")


def random_generation_images(model: Any, splits: DataSplits, *, seed: int, n_samples: int,
                             gmm_components: int, batch_size: int) -> torch.Tensor:
    protocol = RandomGeneration(RandomGenerationConfig(n_samples, gmm_components))
    return protocol.run(_ctx(model, splits, seed, batch_size)).data


# ------------------------------------------------------------------------ reconstruction
def test_rec_of_identity_is_zero_and_of_zeros_is_hundred() -> None:
    splits = _splits()
    assert reconstruction_error(Identity(), splits.test)["rec_error_percent"] == \
        pytest.approx(0.0, abs=1e-5)
    assert reconstruction_error(Zeros(), splits.test)["rec_error_percent"] == \
        pytest.approx(100.0, rel=1e-12)


def test_rec_is_the_whole_set_ratio_not_a_mean_of_batch_ratios() -> None:
    # Batch 1: two images of ones; batch 2: two images of threes; reconstruction = x + 1.
    # Whole set: sum err^2 = 4P, sum x^2 = 2P + 18P = 20P -> 100 sqrt(1/5) = 44.72 %.
    # Per-batch: 100 sqrt(2P/2P) = 100 and 100 sqrt(2P/18P) = 33.3 -> mean 66.7 % (not rec).
    images = torch.cat([torch.ones(2, *SHAPE), 3 * torch.ones(2, *SHAPE)])
    out = reconstruction_error(PlusOne(), Labelled(images), batch_size=2)
    assert out["rec_error_percent"] == pytest.approx(100 * math.sqrt(1 / 5), rel=1e-12)
    assert out["rec_error_percent_batch_mean"] == pytest.approx((100 + 100 / 3) / 2, rel=1e-12)
    # The whole-set number does not depend on the batch size.
    for bs in (1, 3, 4):
        assert reconstruction_error(PlusOne(), Labelled(images), batch_size=bs)[
            "rec_error_percent"] == pytest.approx(100 * math.sqrt(1 / 5), rel=1e-12)


# ---------------------------------------------------------------------- random generation
def test_gmm_sampling_is_deterministic_with_the_seed() -> None:
    splits, model = _splits(), LinearAE()
    codes = _ctx(model, splits, batch_size=7).encode_split("train")
    assert codes.shape == (60, 3)
    # Batches of 7 and one batch of 60 take different matmul kernels: equal to round-off only.
    assert torch.allclose(codes, model.encode(splits.train.tensors[0]).detach(), atol=1e-6)
    kw: dict[str, Any] = dict(n_samples=50, gmm_components=3, batch_size=16)
    a = random_generation_images(model, splits, seed=1, **kw)
    b = random_generation_images(model, splits, seed=1, **kw)
    c = random_generation_images(model, splits, seed=2, **kw)
    assert a.shape == (50, *SHAPE)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # Decoded samples lie in the model's 3-d image subspace (decode of GMM codes).
    flat = a.reshape(50, -1).double()
    w = model.W.detach().double()
    assert torch.allclose(flat, flat @ w @ w.T, atol=1e-5)


def test_gmm_samples_follow_the_codes_distribution() -> None:
    # Codes from one Gaussian: the GMM samples have about the same mean and spread.
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(2000, 2, generator=g) * torch.tensor([2.0, 0.5]) + torch.tensor([3.0, -1.0])
    from harness_plugins.protocols.paper import sample_codes

    s = sample_codes(codes, 4000, n_components=1, seed=0)
    assert s.mean(0).tolist() == pytest.approx([3.0, -1.0], abs=0.1)
    assert s.std(0).tolist() == pytest.approx([2.0, 0.5], rel=0.06)


# --------------------------------------------------------------------------- interpolation
def test_interpolation_pairs_are_seeded_and_distinct() -> None:
    a, b = interpolation_pairs(5, 400, seed=3)
    a2, b2 = interpolation_pairs(5, 400, seed=3)
    assert torch.equal(a, a2) and torch.equal(b, b2)
    assert (a != b).all()
    assert set(a.tolist()) == set(range(5)) and set(b.tolist()) == set(range(5))
    with pytest.raises(HarnessError, match="at least 2"):
        interpolation_pairs(1, 3, seed=0)


def test_interpolated_codes_are_interior_points_in_pair_major_order() -> None:
    za = torch.zeros(2, 1)
    zb = torch.tensor([[6.0], [12.0]])
    pts = interpolate_codes(za, zb, n_interp=5)
    assert pts.shape == (10, 1)
    # t = 1/6 .. 5/6: endpoints (0 and 1) excluded
    assert pts[:, 0].tolist() == pytest.approx([1, 2, 3, 4, 5, 2, 4, 6, 8, 10])


def test_interpolation_images_count_and_values() -> None:
    splits, model = _splits(n_train=10), LinearAE(k=4)
    imgs = Interpolation(InterpolationConfig(n_pairs=7, n_interp=5)).run(
        _ctx(model, splits, seed=0, batch_size=3)).data
    assert imgs.shape == (7 * 5, *SHAPE)
    # with a linear model, the middle point (t = 1/2) of pair p decodes the mean of the pair
    a, b = interpolation_pairs(10, 7, seed=0)
    x = splits.train.tensors[0]
    mid = model.reconstruct((x[a] + x[b]) / 2)
    assert torch.allclose(imgs.reshape(7, 5, *SHAPE)[:, 2], mid.detach(), atol=1e-6)
    # the first interior point is not the start image's reconstruction
    assert not torch.allclose(imgs.reshape(7, 5, *SHAPE)[:, 0], model.reconstruct(x[a]).detach())



def test_interpolation_preview_is_a_strip_from_input_to_input_with_decoded_endpoints() -> None:
    splits, model = _splits(n_train=10), LinearAE(k=4)
    out = Interpolation(InterpolationConfig(n_pairs=3, n_interp=5)).run(
        _ctx(model, splits, seed=0, batch_size=3))
    a, b = interpolation_pairs(10, 3, seed=0)
    x = splits.train.tensors[0]
    # input A, D(E(A)), 5 interior points, D(E(B)), input B
    rows = out.preview.reshape(3, 9, *SHAPE)
    assert out.preview_nrow == 9
    assert torch.equal(rows[:, 0], x[a]) and torch.equal(rows[:, 8], x[b])
    with torch.no_grad():
        assert torch.allclose(rows[:, 1], model.decode(model.encode(x[a])), atol=1e-6)
        assert torch.allclose(rows[:, 7], model.decode(model.encode(x[b])), atol=1e-6)
    assert not torch.allclose(rows[:, 1], rows[:, 0])  # a decoding, not the input again
    assert torch.equal(rows[:, 2:7].reshape(15, *SHAPE), out.data)


# ------------------------------------------------------------------------------- evaluate
class FakeMetric:
    def __init__(self, name: str, protocols: tuple[str, ...], applies: bool = True,
                 fail: Exception | None = None) -> None:  # fmt: skip
        self.name = name
        self.protocols = protocols
        self.higher_is_better = False
        self._applies = applies
        self._fail = fail
        self.calls: list[tuple[int, ...]] = []

    def applies(self, info: DatasetInfo) -> bool:
        return self._applies

    def stamp(self) -> dict[str, Any]:
        return {"feature_extractor": "fake"}

    def __call__(self, images: torch.Tensor, reference: Any, info: DatasetInfo, *,
                 device: Any = None) -> dict[str, float]:  # fmt: skip
        self.calls.append(tuple(images.shape))
        if self._fail is not None:
            raise self._fail
        return {self.name: float(images.shape[0])}


def _cfg(**kw: Any) -> EvalConfig:
    return EvalConfig(batch_size=8, **kw)


def _protocols(*names: str) -> list[tuple[str, Any]]:
    built = {
        "reconstruction": Reconstruction(),
        "codes": Codes(),
        "random-generation": RandomGeneration(RandomGenerationConfig(30, 2)),
        "interpolation": Interpolation(InterpolationConfig(4, 5)),
    }
    return [(n, built[n]) for n in (names or ("reconstruction", "random-generation",
                                              "interpolation"))]


def _named(*metrics: FakeMetric) -> list[tuple[str, Any]]:
    return [(m.name, m) for m in metrics]


def test_evaluate_records_stamps_skips_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    splits, model = _splits(), LinearAE()
    both = FakeMetric("count", ("random-generation", "interpolation"))
    skipped = FakeMetric("never", ("random-generation",), applies=False)
    broken = FakeMetric("broken", ("interpolation",),
                        fail=HarnessError("weights missing: see docs"))  # fmt: skip
    seen: dict[str, tuple[int, ...]] = {}
    model.train()
    records = evaluate(model, splits, _cfg(), seed=5, protocols=_protocols(),
                       metrics=_named(both, skipped, broken), progress=False,
                       on_images=lambda p, im, nrow: seen.__setitem__(p, tuple(im.shape)))
    assert model.training  # mode restored
    by = {(r["protocol"], r["metric"]): r for r in records}
    assert set(by) == {("reconstruction", "rec_error_percent"),
                       ("random-generation", "count"), ("interpolation", "count"),
                       ("interpolation", "broken")}  # fmt: skip
    assert by["random-generation", "count"]["value"] == 30.0
    assert by["interpolation", "count"]["value"] == 4 * 5
    assert skipped.calls == []
    err = by["interpolation", "broken"]
    assert err["value"] is None and err["error"] == "weights missing: see docs"
    assert "metric 'broken' not computed: weights missing" in capsys.readouterr().err
    for r in records:
        st = r["stamp"]
        assert st["protocol_version"] == 1 and st["seed"] == 5 and st["dataset"] == "toy"
        assert st["image_size"] == [1, 4, 4]
    rg = by["random-generation", "count"]["stamp"]
    assert rg["n_samples"] == 30 and rg["gmm_components"] == 2
    assert rg["sampler"].startswith("sklearn.mixture.GaussianMixture")
    assert rg["feature_extractor"] == "fake" and rg["reference"] == "train"
    assert by["interpolation", "count"]["stamp"]["n_interp"] == 5
    rec = by["reconstruction", "rec_error_percent"]
    assert rec["split"] == "test" and rec["stamp"]["n_images"] == 4
    assert rec["value"] == pytest.approx(
        reconstruction_error(model, splits.test)["rec_error_percent"])
    assert seen == {"reconstruction": (8, *SHAPE), "random-generation": (30, *SHAPE),
                    "interpolation": (4 * (5 + 4), *SHAPE)}  # fmt: skip


def test_a_failing_metric_is_reported_once_however_many_protocols_it_fails_in(
        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    broken = FakeMetric("broken2", ("random-generation", "interpolation"),
                        fail=HarnessError("not computed: get the weights from X"))
    recs = evaluate(LinearAE(), _splits(), _cfg(), seed=0, protocols=_protocols(),
                    metrics=_named(broken), progress=False)
    assert [r["value"] for r in recs if r["metric"] == "broken2"] == [None, None]
    assert capsys.readouterr().err.count("get the weights from X") == 1


def test_a_failing_metric_leaves_nulls_under_the_keys_its_numbers_would_have(
        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A failed ``prdc`` must be missing from the precision/recall columns of a report, not
    add a ``prdc`` column: its null records take the keys its ``display`` declares."""
    from harness.api import ValueDisplay

    broken = FakeMetric("pr", ("random-generation",), fail=HarnessError("no features"))
    broken.display = {"precision": ValueDisplay("precision"), "recall": ValueDisplay("recall")}
    recs = evaluate(LinearAE(), _splits(), _cfg(), seed=0, protocols=_protocols(),
                    metrics=_named(broken), progress=False)
    failed = [(r["metric"], r["value"], r["error"]) for r in recs if r["source"] == "pr"]
    assert failed == [("precision", None, "no features"), ("recall", None, "no features")]
    assert capsys.readouterr().err.count("no features") == 1


def test_evaluate_is_reproducible_and_protocols_are_selectable() -> None:
    splits = _splits()
    m1 = FakeMetric("count", ("random-generation",))
    recs = evaluate(LinearAE(), splits, _cfg(), seed=0, protocols=_protocols("reconstruction"),
                    metrics=_named(m1), progress=False)
    assert [r["protocol"] for r in recs] == ["reconstruction"] and m1.calls == []
    images: list[torch.Tensor] = []
    for _ in range(2):
        evaluate(LinearAE(), splits, _cfg(), seed=0, protocols=_protocols("random-generation"),
                 metrics=[], progress=False,
                 on_images=lambda p, im, nrow: images.append(im))  # fmt: skip
    assert torch.equal(images[0], images[1])


def test_metrics_score_protocols_by_kind_or_by_name() -> None:
    by_kind = FakeMetric("by-kind", ())
    by_kind.inputs = ("samples",)  # type: ignore[attr-defined]
    by_name = FakeMetric("by-name", ("interpolation",))
    recs = evaluate(LinearAE(), _splits(), _cfg(), seed=0, protocols=_protocols(),
                    metrics=_named(by_kind, by_name), progress=False)
    scored = sorted((r["protocol"], r["metric"]) for r in recs if r["source"] != "protocol")
    assert scored == [("interpolation", "by-kind"), ("interpolation", "by-name"),
                      ("random-generation", "by-kind")]


def test_unexpected_metric_exception_is_recorded_with_its_type(
        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    bad = FakeMetric("bad", ("random-generation",), fail=ValueError("boom"))
    recs = evaluate(LinearAE(), _splits(), _cfg(), seed=0,
                    protocols=_protocols("random-generation"), metrics=_named(bad),
                    progress=False)  # fmt: skip
    assert recs[0]["error"] == "ValueError: boom" and recs[0]["value"] is None


def test_codes_metrics_get_training_codes_and_detect_planted_collapse() -> None:
    from harness_plugins.metrics.collapse import Collapse

    splits = _splits()
    recs = evaluate(LinearAE(k=5, zero_dims=2), splits, _cfg(), seed=0,
                    protocols=_protocols("codes"), metrics=[("collapse", Collapse())],
                    progress=False)  # fmt: skip
    by = {r["metric"]: r for r in recs}
    assert by["collapsed_dims"]["value"] == 2 and by["active_dims"]["value"] == 3
    assert by["collapsed_dims"]["protocol"] == "codes"
    assert by["collapsed_dims"]["stamp"]["n_codes"] == 60
    var = by["code_variances"]["value"]
    assert len(var) == 5 and var[3] == 0.0 and var[4] == 0.0 and min(var[:3]) > 0


def test_metric_selection_and_options_from_the_eval_section() -> None:
    from dataclasses import dataclass

    registry = Registry("metric")

    @dataclass
    class FidLikeConfig:
        feature_extractor: str = "x"
        n_reference: int | None = None

    class FidLike(FakeMetric):
        Config = FidLikeConfig

        def __init__(self, config: FidLikeConfig, progress: bool = False) -> None:
            super().__init__("fid-like", ("random-generation",))
            self.options = (config.feature_extractor, config.n_reference, progress)

    registry.add(Component("metric", "fid-like", FidLike, "", "test"))
    registry.add(Component("metric", "other", lambda: FakeMetric("other", ()), "", "test"))

    class Host:
        def registry(self, kind: str) -> Registry:
            return registry

        def get(self, kind: str, name: str) -> Component:
            return registry.get(name)

        def canonical(self, kind: str, name: str, *, warn: bool = False) -> str:
            return registry.canonical(name)

    from harness.configuration.run_config import Schema, build_eval

    cfg = build_eval({"fid-like": {"feature_extractor": "domain", "n_reference": "123"}},
                     Schema(Host()))
    assert cfg.metrics == ["fid-like", "other"]
    built = build_metrics(cfg, host=Host(), progress=True)
    assert [name for name, _ in built] == ["fid-like", "other"]
    assert built[0][1].options == ("domain", 123, True)
    only = build_metrics(EvalConfig(metrics=["other"]), host=Host())
    assert [name for name, _ in only] == ["other"]
    from harness.errors import UnknownComponent

    with pytest.raises(UnknownComponent, match="did you mean 'other'"):
        build_metrics(EvalConfig(metrics=["othr"]), host=Host())


def test_save_image_grid_writes_a_png_atomically(tmp_path: Any) -> None:
    from PIL import Image

    images = torch.rand(10, 1, 8, 8) * 1.4 - 0.2  # out of range: clamped
    path = save_image_grid(images, tmp_path / "sub" / "grid.png", nrow=5)
    with Image.open(path) as im:
        assert im.size == (5 * 10 + 2, 2 * 10 + 2)  # 8 px + 2 padding per cell
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]
    arr = np.asarray(Image.open(path))
    assert arr.min() >= 0 and arr.max() <= 255


def test_standardised_images_are_shown_on_their_own_scale(tmp_path: Any) -> None:
    """Bumps are stored as (raw - mean) / std: previews and exports scale them back instead
    of clamping the standardised values (which saturates half of every image)."""
    from PIL import Image

    from harness.api import DatasetInfo
    from harness.evaluation.evaluate import export_samples, to_display

    raw = torch.rand(4, 1, 6, 6) * 0.5
    mean, std = float(raw.mean()), float(raw.std())
    info = DatasetInfo(name="bumps", shape=(1, 6, 6),
                       metadata={"standardization": {"mean": mean, "std": std}})
    stored = (raw - mean) / std
    assert torch.allclose(to_display(stored, info), raw, atol=1e-6)
    assert float((stored.clamp(0, 1) == 0).float().mean()) > 0.3  # what clamping alone did
    path = save_image_grid(stored, tmp_path / "grid.png", nrow=4, info=info)
    grid = np.asarray(Image.open(path).convert("L"), dtype=np.float64) / 255
    cell = grid[2:8, 2:8]  # the first image, inside the 2-pixel padding
    assert np.abs(cell - raw[0, 0].numpy()).max() <= 1 / 255 + 1e-6
    export_samples(stored, tmp_path / "samples", "random-generation", info=info)
    exported = np.load(tmp_path / "samples" / "random-generation.npz")["images"]
    assert np.abs(exported[..., 0] / 255 - raw[:, 0].numpy()).max() <= 0.5 / 255 + 1e-6


def test_gmm_fit_records_convergence_and_a_higher_cap_is_stamped() -> None:
    """Whether EM converged, after how many iterations, and its log-likelihood are recorded;
    a capped fit says it did not converge; the default cap keeps the stamp results had."""
    from harness_plugins.protocols.paper import (
        GMM_MAX_ITER,
        RandomGeneration,
        RandomGenerationConfig,
        fit_gmm,
        gmm_fit_report,
        sample_codes,
    )
    from sklearn.mixture import GaussianMixture

    from harness.errors import ConfigError

    g = torch.Generator().manual_seed(0)
    codes = torch.cat([torch.randn(300, 2, generator=g) + c for c in (-4.0, 0.0, 4.0)])
    capped = gmm_fit_report(fit_gmm(codes, 6, seed=0, max_iter=2))
    assert capped == {**capped, "gmm_converged": False, "gmm_n_iter": 2, "gmm_max_iter": 2}
    report: dict[str, object] = {}
    sample_codes(codes, 10, 6, seed=0, max_iter=2000, report=report)
    ref = GaussianMixture(6, covariance_type="full", random_state=0, max_iter=2000).fit(
        codes.double().numpy())
    assert report["gmm_converged"] is True and report["gmm_n_iter"] == ref.n_iter_ < 2000
    assert report["gmm_log_likelihood"] == pytest.approx(ref.lower_bound_, rel=1e-12)
    assert report["gmm_log_likelihood"] > capped["gmm_log_likelihood"]
    assert GMM_MAX_ITER == 100 and "gmm_max_iter" not in RandomGeneration().stamp()
    assert RandomGeneration(RandomGenerationConfig(gmm_max_iter=2000)).stamp()[
        "gmm_max_iter"] == 2000
    with pytest.raises(ConfigError, match="gmm_max_iter"):
        RandomGenerationConfig(gmm_max_iter=0)
