"""Our FID and KID against torchmetrics and pytorch-fid on the same features.

The features are fed to torchmetrics through an identity feature module (its documented
``feature=<nn.Module>`` path), so every library sees exactly the same rows; the only
difference left is the arithmetic of the distance.

Note: torchmetrics (``eigvals`` of the non-symmetric C1 C2) and pytorch-fid (``sqrtm`` of it)
lose accuracy when N < d and the spectrum is steep (square roots of round-off eigenvalues:
~1e-6 relative with eigenvalues spread over 4 decades at d = 512); our symmetric routes agree
with each other to 1e-9 there. The features below have a moderate spread (like pool3
features), where all three agree to ~1e-7."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.api import FeatureStats, fid_from_features, fid_from_stats


class Rows(torch.nn.Module):
    """Identity "extractor": the input rows are the features. torchmetrics 1.0 ignores
    ``num_features`` and sizes its sums by passing one dummy 299×299 image through the
    extractor, so an image (a 4-D input) gets a feature row of the right width; newer
    torchmetrics read ``num_features``. The rows that are scored pass through unchanged."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # torchmetrics 1.0's probe for the feature width
            return torch.zeros(x.shape[0], self.num_features, dtype=torch.float64)
        return x


def _features(n_ref: int, n_gen: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correlated, non-centred features with a decaying spectrum."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) * (np.arange(1, d + 1) ** -0.3)[:, None]
    ref = rng.normal(size=(n_ref, d)) @ mix + 0.3
    gen = 1.1 * rng.normal(size=(n_gen, d)) @ mix + 0.35
    return ref, gen


def _torchmetrics_fid(ref: np.ndarray, gen: np.ndarray) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=Rows(ref.shape[1]))
    metric.update(torch.from_numpy(ref), real=True)
    metric.update(torch.from_numpy(gen), real=False)
    return float(metric.compute())


def _pytorch_fid(ref: np.ndarray, gen: np.ndarray) -> float:
    """pytorch-fid 0.3.0's Fréchet distance. It calls ``scipy.linalg.sqrtm(..., disp=False)``,
    which SciPy 1.18 removed; there the call gets the old meaning of ``disp=False`` back (the
    root and an error estimate), computed by SciPy's own ``sqrtm``: the reference's maths
    is untouched."""
    from pytorch_fid import fid_score
    from scipy import linalg

    sqrtm = linalg.sqrtm

    def sqrtm_with_disp(a: np.ndarray, disp: bool = True, **kwargs: object) -> object:
        root = sqrtm(a, **kwargs)
        if disp:
            return root
        err = np.linalg.norm(root @ root - a, "fro") / np.linalg.norm(a, "fro")
        return root, err

    try:
        sqrtm(np.eye(2), disp=False)
        shim = False
    except TypeError:  # SciPy >= 1.18
        shim = True
    if shim:
        fid_score.linalg.sqrtm = sqrtm_with_disp  # type: ignore[attr-defined]
    try:
        return float(fid_score.calculate_frechet_distance(
            ref.mean(0), np.cov(ref, rowvar=False), gen.mean(0), np.cov(gen, rowvar=False)))
    finally:
        if shim:
            fid_score.linalg.sqrtm = sqrtm  # type: ignore[attr-defined]


@pytest.mark.parametrize("n_ref,n_gen,d", [(800, 600, 64), (900, 300, 512)])
def test_fid_equals_torchmetrics_and_pytorch_fid(n_ref: int, n_gen: int, d: int) -> None:
    # (900, 300, 512): N < d, the generated covariance is singular
    ref, gen = _features(n_ref, n_gen, d)
    stats = FeatureStats().update(ref)
    ours = fid_from_features(gen, stats)
    assert ours == pytest.approx(fid_from_stats(FeatureStats().update(gen), stats), rel=1e-9)
    assert ours == pytest.approx(_torchmetrics_fid(ref, gen), rel=1e-6)
    assert ours == pytest.approx(_pytorch_fid(ref, gen), rel=1e-6)
    assert ours > 1.0  # a real distance, not a trivially equal zero


@pytest.mark.slow
def test_fid_equals_torchmetrics_and_pytorch_fid_at_inception_size() -> None:
    # the case: 1 250 generated vs 3 000 reference features of dimension 2 048
    ref, gen = _features(3000, 1250, 2048)
    ours = fid_from_features(gen, FeatureStats().update(ref))
    assert ours == pytest.approx(_torchmetrics_fid(ref, gen), rel=1e-6)
    assert ours == pytest.approx(_pytorch_fid(ref, gen), rel=1e-6)


def test_kid_equals_torchmetrics() -> None:
    from harness_plugins.metrics.kid import kid_from_features
    from torchmetrics.image.kid import KernelInceptionDistance

    rng = np.random.default_rng(1)
    ref_t = torch.from_numpy(rng.normal(size=(300, 32)))
    gen_t = torch.from_numpy(1.3 * rng.normal(size=(200, 32)) + 0.3)
    with pytest.warns(UserWarning, match="save all extracted features"):
        metric = KernelInceptionDistance(feature=Rows(32), subsets=20, subset_size=100)
    metric.update(ref_t, real=True)
    metric.update(gen_t, real=False)
    torch.manual_seed(7)  # torchmetrics draws its subsets from the global generator
    tm_mean, tm_std = (float(v) for v in metric.compute())
    mean, std, m = kid_from_features(ref_t, gen_t, subsets=20, subset_size=100, seed=7)
    assert m == 100
    assert mean == pytest.approx(tm_mean, rel=1e-12) and std == pytest.approx(tm_std, rel=1e-12)
    assert mean > 5 * std > 0  # different distributions: clearly positive
    # unbiased: same distribution gives ~0 (within the subset noise), not a positive bias
    same_mean, same_std, _ = kid_from_features(ref_t[:150], ref_t[150:], subsets=20,
                                               subset_size=100, seed=0)  # fmt: skip
    assert abs(same_mean) < 3 * same_std + 1e-12 and abs(same_mean) < mean / 20


def _torchmetrics_kid(ref: torch.Tensor, gen: torch.Tensor, subsets: int, size: int,
                     seed: int) -> tuple[float, float]:  # fmt: skip
    from torchmetrics.image.kid import KernelInceptionDistance

    with pytest.warns(UserWarning, match="save all extracted features"):
        metric = KernelInceptionDistance(feature=Rows(ref.shape[1]), subsets=subsets,
                                         subset_size=size)  # fmt: skip
    metric.update(ref, real=True)
    metric.update(gen, real=False)
    torch.manual_seed(seed)
    return tuple(float(v) for v in metric.compute())  # type: ignore[return-value]


@pytest.mark.parametrize("n_ref,n_gen,subsets", [(150, 2000, 50), (300, 200, 20)])
def test_kid_sums_by_union_and_by_subset_equal_torchmetrics(monkeypatch, n_ref, n_gen,
                                                            subsets) -> None:  # fmt: skip
    """Each kernel sum is taken over the union of the rows drawn (computed once) or one
    subset at a time, whichever costs less; both routes, for the within-set and the cross
    sums, equal torchmetrics (which computes three kernel matrices per subset) to 1e-12."""
    from harness_plugins.metrics import kid

    routes: list[str] = []
    for name in ("_sums_over_union", "_within_by_subset", "_cross_by_subset"):
        original = getattr(kid, name)
        monkeypatch.setattr(kid, name, lambda *a, _f=original, _n=name: (routes.append(_n),
                                                                          _f(*a))[1])
    rng = np.random.default_rng(3)
    ref = torch.from_numpy(np.abs(rng.normal(size=(n_ref, 24))))
    gen = torch.from_numpy(np.abs(1.2 * rng.normal(size=(n_gen, 24))) + 0.1)
    mean, std, m = kid.kid_from_features(ref, gen, subsets=subsets, subset_size=100, seed=5)
    tm_mean, tm_std = _torchmetrics_kid(ref, gen, subsets, 100, seed=5)
    assert m == 100 and mean > 5 * std > 0
    assert mean == pytest.approx(tm_mean, rel=1e-12) and std == pytest.approx(tm_std, rel=1e-12)
    expected = {(150, 2000, 50): ["_sums_over_union", "_within_by_subset", "_cross_by_subset"],
                (300, 200, 20): ["_within_by_subset", "_sums_over_union", "_sums_over_union"]}
    assert routes == expected[(n_ref, n_gen, subsets)]


def test_kid_metric_uses_the_fid_extractor_and_caches_reference_features() -> None:
    from harness_plugins.metrics.kid import KID, kid_from_features
    from torch.utils.data import TensorDataset

    from harness.api import DatasetInfo

    class Hashed:
        name = "hashed"

        def __init__(self) -> None:
            self.seen = 0

        def __call__(self, images: torch.Tensor, device: object = None) -> torch.Tensor:
            self.seen += images.shape[0]
            x = images.clamp(0, 1).double().flatten(1)
            return torch.stack([x.mean(1), x.std(1), x[:, 0]], dim=1)

        def describe(self) -> dict[str, object]:
            return {"feature_extractor": "hashed test", "feature_weights_sha256": "cd" * 32}

    g = torch.Generator().manual_seed(0)
    ref = TensorDataset(torch.rand(80, 1, 4, 4, generator=g), torch.zeros(80).long())
    gen = torch.rand(30, 1, 4, 4, generator=g) * 0.6
    info = DatasetInfo("toy-kid", (1, 4, 4), num_classes=1)
    assert KID.Config().feature_extractor == "domain"  # the same default as fid
    first = KID(KID.Config(subsets=5), extractor=Hashed())
    out = first(gen, ref, info)
    ex = Hashed()
    real = ex(ref.tensors[0])
    expected = kid_from_features(real, ex(gen), subsets=5, subset_size=1000, seed=0)
    assert out == {"kid": pytest.approx(expected[0], rel=1e-12),
                   "kid_std": pytest.approx(expected[1], rel=1e-12)}
    stamp = first.stamp()
    assert stamp["subset_size"] == 30 and stamp["n_reference"] == 80  # min(1000, 30, 80)
    assert first.details()["reference_features"] == "computed"
    again_ex = Hashed()
    again = KID(KID.Config(subsets=5), extractor=again_ex)
    assert again(gen, ref, info)["kid"] == pytest.approx(out["kid"], rel=1e-12)
    assert again_ex.seen == 30  # reference features came from the disk cache
    assert again.details()["reference_features"] == "loaded from cache"
    assert again.stamp() == stamp
