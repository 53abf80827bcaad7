"""Metric ``kid``: Kernel Inception Distance (Binkowski et al. 2018), unbiased at small N.

Follows the metric contract of :mod:`.fid` (``Config`` dataclass, ``factory(config,
progress=...)``, ``stamp()`` = what defines the number, ``details()`` = provenance).

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
(:meth:`.fid.FeatureMetric.reference_features`): ``fid``, ``kid`` and the nearest-neighbour
metrics on the same dataset and extractor extract them once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from harness.api import DatasetInfo, ValueDisplay
from harness.errors import HarnessError

from .fid import FeatureMetric, FeatureOptions

KID_VERSION = 1


def poly_kernel(a: torch.Tensor, b: torch.Tensor, degree: int, gamma: float | None,
                coef: float) -> torch.Tensor:  # fmt: skip
    g = 1.0 / a.shape[1] if gamma is None else gamma
    return (a @ b.T * g + coef) ** degree


def mmd2_unbiased(real: torch.Tensor, fake: torch.Tensor, degree: int = 3,
                  gamma: float | None = None, coef: float = 1.0) -> float:  # fmt: skip
    """Unbiased MMD² of two equal-size samples (m rows each): within-set kernel sums without
    their diagonals over ``m (m - 1)``, minus twice the cross sum over ``m²``."""
    m = real.shape[0]
    k_rr = poly_kernel(real, real, degree, gamma, coef)
    k_ff = poly_kernel(fake, fake, degree, gamma, coef)
    k_rf = poly_kernel(real, fake, degree, gamma, coef)
    within = (k_rr.sum() - k_rr.diagonal().sum()) + (k_ff.sum() - k_ff.diagonal().sum())
    return float(within / (m * (m - 1)) - 2.0 * k_rf.sum() / (m * m))


def kid_from_features(real: torch.Tensor, fake: torch.Tensor, *, subsets: int = 100,
                      subset_size: int = 1000, degree: int = 3, gamma: float | None = None,
                      coef: float = 1.0, seed: int = 0) -> tuple[float, float, int]:  # fmt: skip
    """(mean, population std, subset size used) of the MMD² over random subsets."""
    real = torch.as_tensor(real).double()
    fake = torch.as_tensor(fake).double()
    m = min(subset_size, real.shape[0], fake.shape[0])
    if m < 2:
        raise HarnessError(f"KID needs at least 2 reference and 2 generated images, got "
                           f"{real.shape[0]} and {fake.shape[0]}")  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(subsets):
        r = real[torch.randperm(real.shape[0], generator=gen)[:m]]
        f = fake[torch.randperm(fake.shape[0], generator=gen)[:m]]
        scores.append(mmd2_unbiased(r, f, degree, gamma, coef))
    values = torch.tensor(scores, dtype=torch.float64)
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

    def __init__(self, config: Any = None, *, progress: bool = False,
                 extractor: Any = None) -> None:  # fmt: skip
        super().__init__(config if config is not None else self.Config(), progress, extractor)

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
