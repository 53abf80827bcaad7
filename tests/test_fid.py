"""harness.evaluation.fid: streaming statistics and the Frechet distance against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from harness.evaluation.fid import FeatureStats, fid_from_stats, frechet_distance


def _random_spd(rng: np.random.Generator, d: int, rank: int | None = None) -> np.ndarray:
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / (rank or d) + (1e-3 * np.eye(d) if rank is None else 0.0)


def _scipy_fid(mu1, c1, mu2, c2) -> float:
    covmean = scipy.linalg.sqrtm(c1 @ c2)
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean))


def test_identical_distributions_give_zero() -> None:
    rng = np.random.default_rng(0)
    for d in (1, 5, 64):
        mu = rng.normal(size=d)
        cov = _random_spd(rng, d)
        assert abs(frechet_distance(mu, cov, mu, cov)) < 1e-8


def test_identical_rank_deficient_covariances_give_zero() -> None:
    # Features of fewer samples than dimensions: singular covariance, still ~0.
    rng = np.random.default_rng(1)
    cov = _random_spd(rng, 32, rank=10)
    mu = rng.normal(size=32)
    assert abs(frechet_distance(mu, cov, mu, cov)) < 1e-8


def test_one_dimensional_closed_form() -> None:
    # FID(N(m1, s1), N(m2, s2)) = (m1 - m2)^2 + s1 + s2 - 2 sqrt(s1 s2)
    m1, s1, m2, s2 = 0.3, 4.0, -1.2, 0.25
    expected = (m1 - m2) ** 2 + s1 + s2 - 2 * np.sqrt(s1 * s2)
    assert frechet_distance(np.array([m1]), np.array([[s1]]), np.array([m2]), np.array([[s2]])) \
        == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(2.25 + 2.25)  # by hand: 1.5^2 + (2 - 0.5)^2


def test_diagonal_closed_form() -> None:
    rng = np.random.default_rng(2)
    d = 20
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 3.0, size=d), rng.uniform(0.1, 3.0, size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_agrees_with_scipy_sqrtm_on_random_spd() -> None:
    rng = np.random.default_rng(3)
    for d in (3, 16, 100):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        c1, c2 = _random_spd(rng, d), _random_spd(rng, d)
        ours = frechet_distance(mu1, c1, mu2, c2)
        ref = _scipy_fid(mu1, c1, mu2, c2)
        assert ours == pytest.approx(ref, rel=1e-6)
        # symmetric in its arguments
        assert frechet_distance(mu2, c2, mu1, c1) == pytest.approx(ours, rel=1e-9)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


def test_streaming_chunks_equal_one_shot_numpy() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(loc=2.0, scale=3.0, size=(1001, 7))
    stats = FeatureStats()
    for chunk in np.array_split(x, [1, 10, 300, 777]):
        stats.update(torch.from_numpy(chunk).float() if chunk.shape[0] == 1 else chunk)
    # the float32 chunk loses precision: compare on the same data
    x[0] = np.float32(x[0])
    assert stats.count == 1001
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)


def test_merge_equals_single_stream_and_fid_of_same_data_is_zero() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(500, 4))
    a = FeatureStats().update(x[:200])
    b = FeatureStats().update(x[200:])
    whole = FeatureStats().update(x)
    merged = FeatureStats().merge(a).merge(b)
    assert merged.count == whole.count
    np.testing.assert_allclose(merged.cov, whole.cov, rtol=1e-12)
    assert fid_from_stats(merged, whole) < 1e-10


def test_all_reduce_is_identity_on_one_process_and_roundtrips_state() -> None:
    x = np.random.default_rng(6).normal(size=(50, 3))
    s = FeatureStats().update(x)
    mean, cov = s.mean.copy(), s.cov.copy()
    s.all_reduce()
    assert s.count == 50
    np.testing.assert_allclose(s.mean, mean)
    np.testing.assert_allclose(s.cov, cov)
    t = FeatureStats.from_state_dict(s.state_dict())
    np.testing.assert_allclose(t.cov, cov)


def test_empty_and_single_sample_statistics_are_errors() -> None:
    with pytest.raises(ValueError):
        _ = FeatureStats().mean
    with pytest.raises(ValueError, match="at least 2"):
        _ = FeatureStats().update(np.ones((1, 3))).cov


def test_fid_of_shifted_samples_matches_shift() -> None:
    # Same samples shifted by a constant vector: FID = |shift|^2 exactly (covariances equal).
    x = np.random.default_rng(7).normal(size=(300, 6))
    shift = np.array([1.0, -2.0, 0.5, 0.0, 0.0, 3.0])
    a, b = FeatureStats().update(x), FeatureStats().update(x + shift)
    assert fid_from_stats(a, b) == pytest.approx(float(shift @ shift), rel=1e-8)


def _all_reduce_worker(rank: int, world: int, port: int, x: np.ndarray, out: str) -> None:
    import os

    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    part = np.array_split(x, [37])[rank]  # unequal shares: 37 and 263 rows
    stats = FeatureStats().update(part).all_reduce()
    if rank == 0:
        torch.save({"count": stats.count, "mean": stats.mean, "cov": stats.cov}, out)
    dist.barrier()
    # Leave without tearing the group down: under torch 2.2 (tox -e lowest) the main thread
    # holds the GIL while ~ProcessGroupGloo joins its worker thread, which may still be
    # freeing the last work's tensors and needs the GIL: a deadlock, seen with py-spy. This
    # test is about all_reduce; a finished worker process needs no orderly teardown.
    os._exit(0)


@pytest.mark.distributed
def test_all_reduce_over_two_processes_equals_one_process(tmp_path) -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    x = np.random.default_rng(8).normal(size=(300, 5))
    out = tmp_path / "stats.pt"
    mp.spawn(_all_reduce_worker, args=(2, port, x, str(out)), nprocs=2, join=True)
    got = torch.load(out, weights_only=False)
    assert got["count"] == 300
    np.testing.assert_allclose(got["mean"], x.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(got["cov"], np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)


def test_small_generated_set_route_equals_the_d_by_d_route() -> None:
    from harness.evaluation.fid import fid_from_features

    rng = np.random.default_rng(9)
    d = 400
    mix = rng.normal(size=(d, d)) * (np.arange(1, d + 1) ** -0.7)[:, None]
    ref = FeatureStats().update(rng.normal(size=(1000, d)) @ mix + 0.2)
    for n in (2, 50, 399, 401, 600):  # N - 1 < d takes the N x N route, otherwise d x d
        gen = 1.2 * rng.normal(size=(n, d)) @ mix
        fast = fid_from_features(gen, ref)
        full = fid_from_stats(FeatureStats().update(gen), ref)
        assert fast == pytest.approx(full, rel=1e-9), n
        assert fast > 0.1
    # identical sets: 0 (a rank-deficient reference, d > N_ref, too)
    x = rng.normal(size=(60, 80))
    assert fid_from_features(x, FeatureStats().update(x)) < 1e-9


def test_reference_factor_is_cached_saved_and_invalidated() -> None:
    from harness.evaluation.fid import fid_from_features

    rng = np.random.default_rng(10)
    ref = FeatureStats().update(rng.normal(size=(200, 30)))
    factor = ref.factor()
    assert ref.factor() is factor  # computed once
    np.testing.assert_allclose(factor @ factor.T, ref.cov, atol=1e-12)
    state = ref.state_dict()
    assert "factor" in state
    again = FeatureStats.from_state_dict(state)
    assert again._factor is not None
    gen = rng.normal(size=(20, 30)) + 0.5
    assert fid_from_features(gen, again) == pytest.approx(fid_from_features(gen, ref), rel=1e-12)
    ref.update(rng.normal(size=(5, 30)))  # new data: the factor is recomputed
    assert ref._factor is None
    np.testing.assert_allclose(ref.factor() @ ref.factor().T, ref.cov, atol=1e-12)
    with pytest.raises(ValueError, match="dimension 31"):
        fid_from_features(rng.normal(size=(4, 31)), ref)
