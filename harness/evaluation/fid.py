"""The one place FID statistics are computed: streaming feature sums and the Frechet distance.

Why it is written this way (and not with ``pytorch_fid.fid_score`` or ``scipy.linalg.sqrtm``):

* **Streaming float64 sums.** :class:`FeatureStats` keeps the count, the sum of features and
  the sum of their outer products, all in float64 (as torchmetrics' FID does). Sums can be fed
  batch by batch, merged, and all-reduced across processes, so the statistics do not depend on
  the batch size or the number of processes, and float32 round-off in the covariance of 2048-d
  features (which shifts FID in the second decimal) is avoided.
* **A symmetric eigendecomposition instead of sqrtm.** ``tr(sqrt(C1 C2))`` is computed as the
  sum of the square roots of the eigenvalues of the *symmetric* PSD matrix
  ``sqrt(C1) C2 sqrt(C1)`` (same eigenvalues as ``C1 C2``), with ``sqrt(C1)`` from ``eigh``.
  ``scipy.linalg.sqrtm`` works on the non-symmetric product, is slow, returns complex noise
  and has changed results between scipy releases; ``eigh`` is stable, real and fast.
* **An N x N route when the generated set is small.** With N generated feature rows of
  dimension d > N - 1 (1 250 images, 2 048 Inception features), the generated covariance is
  ``C2 = Xc^T Xc / (N - 1)`` (``Xc`` the centred rows) and the non-zero eigenvalues of
  ``sqrt(C1) C2 sqrt(C1)`` are those of the N x N matrix ``(Xc L)(Xc L)^T / (N - 1)``, where
  ``L L^T = C1`` is a factor of the *reference* covariance. ``L`` depends on the reference
  only, so it is computed once per dataset and kept with its statistics
  (:meth:`FeatureStats.factor`); a score then costs two matrix products and one N x N
  ``eigvalsh`` instead of two d x d eigendecompositions (:func:`fid_from_features`; see
  ``benchmarks/bench_fid.py``). Both routes agree to ~1e-12 relative.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from harness import distributed

__all__ = ["FeatureStats", "fid_from_features", "fid_from_stats", "frechet_distance"]


class FeatureStats:
    """Count, sum and sum of outer products of feature vectors, in float64.

    ``update`` accepts (N, d) tensors or arrays; ``mean`` and ``cov`` (unbiased, divided by
    N - 1, as numpy's ``np.cov`` and pytorch-fid) are derived from the sums only, so chunked
    updates give the same result as one update with everything.
    """

    def __init__(self, dim: int | None = None) -> None:
        self.count = 0
        self.sum: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None
        self._factor: np.ndarray | None = None  # L with L L^T = cov, see factor()
        if dim is not None:
            self._alloc(dim)

    def _alloc(self, dim: int) -> None:
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)

    @property
    def dim(self) -> int | None:
        return None if self.sum is None else int(self.sum.shape[0])

    def update(self, features: torch.Tensor | np.ndarray) -> FeatureStats:
        """Add a batch of feature vectors (N, d); returns ``self``."""
        x = torch.as_tensor(features).detach().to("cpu", torch.float64)
        if x.ndim != 2:
            x = x.reshape(x.shape[0], -1)
        if self.sum is None:
            self._alloc(x.shape[1])
        if x.shape[1] != self.dim:
            raise ValueError(f"features have dimension {x.shape[1]}, the statistics {self.dim}")
        assert self.sum is not None and self.outer is not None
        self._factor = None
        self.count += int(x.shape[0])
        self.sum += x.sum(dim=0)
        self.outer += x.T @ x
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Add another set of statistics (of the same dimension) into this one; returns self."""
        if other.sum is None:
            return self
        if self.sum is None:
            self._alloc(int(other.sum.shape[0]))
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {other.dim} into {self.dim}")
        assert self.sum is not None and self.outer is not None and other.outer is not None
        self._factor = None
        self.count += other.count
        self.sum += other.sum
        self.outer += other.outer
        return self

    def all_reduce(self) -> FeatureStats:
        """Sum the statistics over processes (in place; identity with one process).

        Every process must call it, with statistics of the same dimension.
        """
        if self.sum is None or self.outer is None:
            raise ValueError("all_reduce on empty FeatureStats: update it first (dim unknown)")
        d = self.dim
        assert d is not None
        packed = torch.cat(
            [torch.tensor([float(self.count)], dtype=torch.float64), self.sum, self.outer.ravel()]
        )
        reduced = distributed.all_reduce_sum(packed)
        self._factor = None
        self.count = int(round(float(reduced[0])))
        self.sum = reduced[1 : 1 + d].clone()
        self.outer = reduced[1 + d :].reshape(d, d).clone()
        return self

    @property
    def mean(self) -> np.ndarray:
        if self.sum is None or self.count < 1:
            raise ValueError("no features were added")
        return (self.sum / self.count).numpy()

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance ``(sum x x^T - n mu mu^T) / (n - 1)``."""
        if self.sum is None or self.outer is None or self.count < 2:
            raise ValueError(f"a covariance needs at least 2 feature vectors, got {self.count}")
        mu = self.sum / self.count
        cov = (self.outer - self.count * torch.outer(mu, mu)) / (self.count - 1)
        cov = 0.5 * (cov + cov.T)  # exact symmetry despite round-off
        return cov.numpy()

    def factor(self) -> np.ndarray:
        """``L`` (d x r) with ``L L^T = cov``: the eigenvectors of the covariance scaled by the
        square roots of its positive eigenvalues (r of them; round-off negatives dropped).

        It depends on these statistics only, so it is computed once and kept (and saved by
        :meth:`state_dict`): the reference side of :func:`fid_from_features`.
        """
        if self._factor is None:
            w, v = np.linalg.eigh(self.cov)
            keep = w > 0.0
            self._factor = np.ascontiguousarray(v[:, keep] * np.sqrt(w[keep]))
        return self._factor

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"count": self.count, "sum": self.sum, "outer": self.outer}
        if self._factor is not None:
            state["factor"] = torch.from_numpy(self._factor)
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> FeatureStats:
        stats = cls()
        stats.count = int(state["count"])
        stats.sum = state["sum"]
        stats.outer = state["outer"]
        if state.get("factor") is not None:
            stats._factor = torch.as_tensor(state["factor"]).numpy()
        return stats


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix; tiny negative eigenvalues -> 0."""
    w, v = np.linalg.eigh(matrix)
    w = np.clip(w, 0.0, None)
    return (v * np.sqrt(w)) @ v.T


def _sum_sqrt_eig(matrix: np.ndarray) -> float:
    """Sum of the square roots of the eigenvalues of a symmetric PSD matrix, eigenvalues at
    round-off level (``<= n * eps * lambda_max``) counted as zero."""
    eig = np.linalg.eigvalsh(0.5 * (matrix + matrix.T))
    if eig.size == 0:
        return 0.0
    tol = max(float(eig[-1]), 0.0) * eig.size * np.finfo(np.float64).eps
    return float(np.sqrt(eig[eig > tol]).sum())


def frechet_distance(
    mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray
) -> float:
    """Frechet distance between N(mu1, cov1) and N(mu2, cov2), in float64.

    ``|mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr(sqrt(C1 C2))`` with
    ``tr(sqrt(C1 C2)) = sum_i sqrt(lambda_i(sqrt(C1) C2 sqrt(C1)))``; eigenvalues at round-off
    level (below ``d * eps * lambda_max``, e.g. the d - N + 1 zero eigenvalues when C2 comes
    from N < d samples) count as 0 (their square roots would add ~1e-8 relative noise), and a
    final value within round-off below zero is clipped to 0.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    cov1 = np.atleast_2d(np.asarray(cov1, dtype=np.float64))
    cov2 = np.atleast_2d(np.asarray(cov2, dtype=np.float64))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.size,) * 2:
        raise ValueError(
            f"shape mismatch: mu1 {mu1.shape}, mu2 {mu2.shape}, cov1 {cov1.shape}, "
            f"cov2 {cov2.shape}"
        )
    cov1 = 0.5 * (cov1 + cov1.T)
    cov2 = 0.5 * (cov2 + cov2.T)
    root1 = _sqrt_psd(cov1)
    middle = root1 @ cov2 @ root1
    tr_covmean = _sum_sqrt_eig(middle)
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_covmean)
    return max(value, 0.0)


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """FID between two sets of feature statistics."""
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


def trace_sqrt_product_small(features: np.ndarray, factor: np.ndarray) -> float:
    """``tr sqrt(sqrt(C1) C2 sqrt(C1))`` for ``C2`` the covariance of ``features`` (N, d) and
    ``C1 = factor @ factor.T``: the sum of the square roots of the eigenvalues of the N x N
    matrix ``(Xc L)(Xc L)^T / (N - 1)`` (same non-zero eigenvalues as the d x d product)."""
    x = np.asarray(features, dtype=np.float64)
    xc = x - x.mean(axis=0)
    m = xc @ factor
    return _sum_sqrt_eig(m @ m.T / (x.shape[0] - 1))


def fid_from_features(features: torch.Tensor | np.ndarray, reference: FeatureStats) -> float:
    """FID between the feature rows ``features`` (N, d) and the reference statistics.

    When ``N - 1 < d`` this takes the N x N route (module docstring), reusing the reference's
    cached :meth:`FeatureStats.factor`; otherwise it is :func:`fid_from_stats`. Equal to the
    d x d route to ~1e-12 relative (tests/test_fid.py).
    """
    x = torch.as_tensor(features).detach().to("cpu", torch.float64).numpy()
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need (N >= 2, d) feature rows, got shape {tuple(x.shape)}")
    if reference.dim != x.shape[1]:
        raise ValueError(f"features have dimension {x.shape[1]}, the reference {reference.dim}")
    n, d = x.shape
    if n - 1 >= d:
        return fid_from_stats(FeatureStats().update(x), reference)
    mu1, cov1 = reference.mean, reference.cov
    mu2 = x.mean(axis=0)
    xc = x - mu2
    tr2 = float(np.einsum("ij,ij->", xc, xc)) / (n - 1)
    tr_covmean = trace_sqrt_product_small(x, reference.factor())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(cov1) + tr2 - 2.0 * tr_covmean)
    return max(value, 0.0)
