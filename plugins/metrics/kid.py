"""Metric ``kid``: Kernel Inception Distance (Binkowski et al. 2018), unbiased at small N.

Follows the metric contract of :mod:`harness_plugins.metrics` (``Config`` dataclass,
``factory(config, progress=...)``, ``stamp()`` = what defines the number, ``details()`` =
provenance).

Semantics are those of torchmetrics' ``KernelInceptionDistance`` (checked against it in
tests/test_metrics_crosscheck.py): features of the reference and of the generated images from
the **same extractor as ``fid``** (``Config.feature_extractor``, default the dataset-trained
``domain`` CNN); ``subsets`` times, draw ``subset_size`` reference rows and ``subset_size``
generated rows (``randperm`` of each set, reference first) and compute the unbiased MMD² with
the polynomial kernel ``k(x, y) = (gamma x·y + coef) ** degree`` (``gamma`` = 1/d by
default); report the mean and the (population) standard deviation over subsets. The draws use
a generator seeded with ``Config.seed`` (torchmetrics uses the global RNG), so the value is
reproducible. When fewer than ``subset_size`` images are available the subset size is that
number (recorded in the stamp) instead of an error.

Reference features (all training images, or ``n_reference`` of them drawn with seed 0) come
from the one reference cache the feature metrics share
(:meth:`.features.FeatureMetric.reference_features`): ``fid``, ``kid`` and the nearest-neighbour
metrics on the same dataset and extractor extract them once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from harness.api import DatasetInfo, ValueDisplay
from harness.errors import HarnessError

from .features import FeatureMetric, FeatureOptions

KID_VERSION = 1


class PolyKernel:
    """``k(x, y) = (gamma x·y + coef) ** degree`` on float64 rows (``gamma`` None: 1/d)."""

    def __init__(self, dim: int, degree: int = 3, gamma: float | None = None,
                 coef: float = 1.0) -> None:  # fmt: skip
        self.gamma = 1.0 / dim if gamma is None else gamma
        self.degree, self.coef = degree, coef

    def of_products(self, dots: torch.Tensor) -> torch.Tensor:
        """The kernel of a tensor of dot products, in place."""
        return dots.mul_(self.gamma).add_(self.coef).pow_(self.degree)

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.of_products(a @ b.T)

    def self_values(self, a: torch.Tensor) -> torch.Tensor:
        """``k(a_i, a_i)`` for each row."""
        return self.of_products(torch.einsum("ij,ij->i", a, a))


#: entries of a kernel block computed at once: a subset's blocks (half a MB) stay in the
#: CPU's caches while they are raised to the degree and summed; the kernel over the union
#: of the rows drawn is computed in larger blocks, each summed by a matrix product
BLOCK_ENTRIES = 1 << 16
UNION_BLOCK_ENTRIES = 1 << 21


def _blocks(n: int, width: int, entries: int = BLOCK_ENTRIES) -> Iterator[tuple[int, int]]:
    step = max(1, entries // max(1, width))
    for lo in range(0, n, step):
        yield lo, min(n, lo + step)


def _indicator(positions: torch.Tensor, n: int) -> torch.Tensor:
    """(subsets, n) float64 matrix with a 1 where a subset holds a row."""
    out = torch.zeros(positions.shape[0], n, dtype=torch.float64)
    return out.scatter_(1, positions, 1.0)


def _sums_over_union(x: torch.Tensor, rows: torch.Tensor, y: torch.Tensor,
                     cols: torch.Tensor, kernel: PolyKernel) -> torch.Tensor:  # fmt: skip
    """For each subset s: the sum of ``k(x_i, y_j)`` over ``i`` in ``rows[s]`` and ``j`` in
    ``cols[s]`` (all pairs), from the kernel of every row drawn by any subset with every
    column drawn by any, computed once, block by block, and summed per subset through 0/1
    membership matrices."""
    ux, rx = torch.unique(rows, return_inverse=True)
    uy, cy = torch.unique(cols, return_inverse=True)
    in_x, in_y = _indicator(rx, len(ux)), _indicator(cy, len(uy))
    xs, ys = x[ux], y[uy]
    per_column = torch.zeros(rows.shape[0], len(uy), dtype=torch.float64)
    for lo, hi in _blocks(len(ux), len(uy), UNION_BLOCK_ENTRIES):
        per_column.addmm_(in_x[:, lo:hi], kernel(xs[lo:hi], ys))
    return (per_column * in_y).sum(1)


def _within_by_subset(x: torch.Tensor, rows: torch.Tensor, kernel: PolyKernel) -> torch.Tensor:
    """For each subset s: the sum of ``k(x_i, x_j)`` over ``i != j`` in ``rows[s]``, from the
    upper half of the subset's kernel matrix (block rows against the rows from theirs on)."""
    out = torch.empty(rows.shape[0], dtype=torch.float64)
    m = rows.shape[1]
    for s in range(rows.shape[0]):
        xs = x[rows[s]]
        total = torch.zeros((), dtype=torch.float64)
        for lo, hi in _blocks(m, m // 2 + 1):
            k = kernel(xs[lo:hi], xs[lo:])
            k[:, : hi - lo].diagonal().zero_()  # i == j: not a pair
            total += 2.0 * k[:, hi - lo :].sum() + k[:, : hi - lo].sum()
        out[s] = total
    return out


def _cross_by_subset(x: torch.Tensor, rows: torch.Tensor, y: torch.Tensor,
                     cols: torch.Tensor, kernel: PolyKernel) -> torch.Tensor:  # fmt: skip
    """For each subset s: the sum of ``k(x_i, y_j)`` over ``rows[s]`` × ``cols[s]``."""
    out = torch.empty(rows.shape[0], dtype=torch.float64)
    for s in range(rows.shape[0]):
        xs, ys = x[rows[s]], y[cols[s]]
        out[s] = sum(kernel(xs[lo:hi], ys).sum() for lo, hi in _blocks(len(xs), len(ys)))
    return out


def _union_is_cheaper(rows: torch.Tensor, cols: torch.Tensor, dim: int, half: bool) -> bool:
    """Whether the kernel over every drawn row and column (plus summing it per subset) costs
    less than one kernel matrix per subset (``half``: of which only the upper half is
    computed); the cost of an entry is its dot product plus the bookkeeping around it."""
    n_x, n_y = len(torch.unique(rows)), len(torch.unique(cols))
    subsets, m = rows.shape
    per_subset = subsets * m * m * (dim + 8) * (0.5 if half else 1.0)
    return n_x * n_y * (dim + subsets + 8) < per_subset


def subset_mmd2(real: torch.Tensor, fake: torch.Tensor, real_rows: torch.Tensor,
                fake_rows: torch.Tensor, kernel: PolyKernel) -> torch.Tensor:  # fmt: skip
    """Unbiased MMD² of each subset (row s of ``real_rows`` and ``fake_rows``: m indices each):
    within-set kernel sums without their diagonals over ``m (m - 1)``, minus twice the cross
    sum over ``m²``. Every sum is float64; a set drawn from few rows (the 1 250 generated
    images of a protocol, a small reference set) gets its kernel computed once over the
    rows drawn and summed per subset, a large one (60 000 training images) one per subset."""
    m, d = real_rows.shape[1], real.shape[1]
    within = []
    for x, rows in ((real, real_rows), (fake, fake_rows)):
        if _union_is_cheaper(rows, rows, d, half=True):
            diag = kernel.self_values(x)[rows].sum(1)
            within.append(_sums_over_union(x, rows, x, rows, kernel) - diag)
        else:
            within.append(_within_by_subset(x, rows, kernel))
    if _union_is_cheaper(real_rows, fake_rows, d, half=False):
        cross = _sums_over_union(real, real_rows, fake, fake_rows, kernel)
    else:
        cross = _cross_by_subset(real, real_rows, fake, fake_rows, kernel)
    return (within[0] + within[1]) / (m * (m - 1)) - 2.0 * cross / (m * m)


def kid_from_features(real: torch.Tensor, fake: torch.Tensor, *, subsets: int = 100,
                      subset_size: int = 1000, degree: int = 3, gamma: float | None = None,
                      coef: float = 1.0, seed: int = 0) -> tuple[float, float, int]:  # fmt: skip
    """(mean, population std, subset size used) of the MMD² over random subsets: for each
    subset, ``randperm`` of the reference rows then of the generated rows, the first m of
    each (torchmetrics' draws, from a generator seeded with ``seed``)."""
    real = torch.as_tensor(real).double()
    fake = torch.as_tensor(fake).double()
    m = min(subset_size, real.shape[0], fake.shape[0])
    if m < 2:
        raise HarnessError(f"KID needs at least 2 reference and 2 generated images, got "
                           f"{real.shape[0]} and {fake.shape[0]}")  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    draws = [(torch.randperm(real.shape[0], generator=gen)[:m],
              torch.randperm(fake.shape[0], generator=gen)[:m]) for _ in range(subsets)]
    real_rows = torch.stack([r for r, _ in draws])
    fake_rows = torch.stack([f for _, f in draws])
    values = subset_mmd2(real, fake, real_rows, fake_rows,
                         PolyKernel(real.shape[1], degree, gamma, coef))
    return float(values.mean()), float(values.std(unbiased=False)), m


@dataclass
class KIDConfig(FeatureOptions):
    """Options of ``kid`` (``eval.kid.<key>``): the shared feature options, and the subsets;
    defaults: torchmetrics' and torch-fidelity's."""

    metric: ClassVar[str] = "kid"

    subsets: int = 100
    #: rows of each side per subset (at least 2: the unbiased MMD divides by m (m - 1))
    subset_size: int = 1000
    degree: int = 3
    gamma: float | None = None  # None: 1 / feature dimension
    coef: float = 1.0
    seed: int = 0  # for the subset draws

    def __post_init__(self) -> None:
        for key, least in (("subsets", 1), ("subset_size", 2), ("degree", 1)):
            if getattr(self, key) < least:
                raise HarnessError(f"eval.kid.{key} must be >= {least}, got {getattr(self, key)}")
        super().__post_init__()


class KID(FeatureMetric):
    """``kid``: ``kid`` (mean MMD²) and ``kid_std``; lower is better."""

    name = "kid"
    Config: type = KIDConfig
    display = {
        "kid": ValueDisplay("KID", "", False, "kernel inception distance (mean MMD² over "
                            "subsets)"),
        "kid_std": ValueDisplay("KID spread over subsets", "", None),
    }
    version = KID_VERSION

    def __call__(self, images: torch.Tensor, reference: Dataset, info: DatasetInfo, *,
                 device: Any = None) -> dict[str, float]:  # fmt: skip
        self._details = {}
        extractor = self._get_extractor(info, reference, device)
        real = self.reference_features(reference, info, device)
        bs = self.config.batch_size
        start = time.perf_counter()
        chunks = (images[i : i + bs] for i in range(0, images.shape[0], bs))
        fake = torch.cat(list(self._features(extractor, chunks, device)))
        c = self.config
        mean, std, m = kid_from_features(real, fake, subsets=c.subsets, subset_size=c.subset_size,
                                         degree=c.degree, gamma=c.gamma, coef=c.coef,
                                         seed=c.seed)  # fmt: skip
        self._stamp = {
            **self._base_stamp(extractor, reference, info, int(real.shape[0]), fake.shape[0]),
            "subsets": c.subsets, "subset_size": m, "subset_seed": c.seed,
            "kernel": f"(gamma x.y + {c.coef:g})^{c.degree}, gamma "
                      + ("1/d" if c.gamma is None else f"{c.gamma:g}"),
        }  # fmt: skip
        provenance = getattr(extractor, "provenance", None)
        self._details.update({**(provenance() if callable(provenance) else {}),
                              "seconds": round(time.perf_counter() - start, 3)})  # fmt: skip
        return {"kid": mean, "kid_std": std}
