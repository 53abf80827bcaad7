"""Nearest-neighbour metrics in the features of ``fid``: precision, recall, density, coverage
and memorisation (authenticity).

Why: FID folds fidelity and diversity into one number and cannot tell a model that
generalises from one that copies its training set. These metrics separate the three, in the
same feature space as ``fid`` (the same extractor option, the same reference cache).

With real (reference) features R (n rows), generated features G (m rows), ``d`` the Euclidean
distance and ``r_k(x)`` the distance from a point of a set to its k-th nearest neighbour in
that set (itself excluded):

* precision (Kynkäänniemi et al. 2019, k = 3): share of generated points inside the union of
  the real balls B(x, r_3(x));
* recall (same, k = 3): share of real points inside the union of generated balls
  B(y, r_3(y));
* density (Naeem et al. 2020, k = 5): ``1/(k m) * sum_y #{x : d(x, y) < r_5(x)}``;
* coverage (same, k = 5): share of real points whose nearest generated point lies within
  r_5(x);
* authenticity (Alaa et al. 2022, computed as dgm-eval does): for each generated y, let x be
  its nearest training point, d1 = d(y, x), d2 = x's distance to its own nearest training
  point; y is authentic when d2 < d1. ``authenticity`` is the authentic share;
  ``memorised`` the share with d1 < d2 (y closer to x than any other training image is).
  A copy of a training image has d1 = 0: memorised. A fresh sample of the data distribution
  is memorised about as often as a held-out image would be (a third to a half of them on
  Gaussian test data): compare models with each other, not with 0.

They apply where ``fid`` applies (labelled, not synthetic data). Not on the bumps: their
training set is a regular 10 × 10 mesh, so *every* fresh bump lies closer to its nearest mesh
bump than mesh bumps lie to each other, and the authenticity rule calls all 100 test images
memorised in pixel space (tests/test_neighbours.py); ``bump-copies`` (fitted centres on a
training centre) is the bumps' memorisation count instead.

All comparisons are strict (``<``), like the ``prdc`` package (``compute_prdc``), which these
values equal to 1e-6 on the same features (tests/test_neighbours.py). Distances are
computed in float64 torch, chunked (``chunk`` reference rows at a time, never an n × n
matrix), on the GPU when the run has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from harness.api import DatasetInfo, ValueDisplay
from harness.errors import HarnessError

from .fid import FeatureMetric, FeatureOptions

NEIGHBOURS_VERSION = 1
CHUNK = 2048


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (len(a), len(b)) through the Gram expansion, clamped at 0."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return sq.clamp_min_(0.0).sqrt_()


def kth_neighbour_distance(x: torch.Tensor, k: int, chunk: int = CHUNK) -> torch.Tensor:
    """r_k of every row of ``x``: the distance to its k-th nearest other row."""
    if x.shape[0] <= k:
        raise HarnessError(f"the k = {k} nearest-neighbour radius needs more than {k} points, "
                           f"got {x.shape[0]}")  # fmt: skip
    out = []
    for i in range(0, x.shape[0], chunk):
        d = _distances(x[i : i + chunk], x)
        rows = torch.arange(d.shape[0], device=d.device)
        d[rows, rows + i] = float("inf")  # not itself
        out.append(d.topk(k, dim=1, largest=False).values[:, -1])
    return torch.cat(out)


def prdc(real: torch.Tensor, fake: torch.Tensor, *, k_pr: int = 3, k_dc: int = 5,
         chunk: int = CHUNK, device: Any = None) -> dict[str, float]:  # fmt: skip
    """Precision and recall (k = ``k_pr``), density and coverage (k = ``k_dc``)."""
    real = torch.as_tensor(real, dtype=torch.float64, device=device)
    fake = torch.as_tensor(fake, dtype=torch.float64, device=device)
    r_pr, r_dc = kth_neighbour_distance(real, k_pr, chunk), kth_neighbour_distance(real, k_dc, chunk)
    f_pr = kth_neighbour_distance(fake, k_pr, chunk)
    in_real = torch.zeros(fake.shape[0], dtype=torch.bool, device=real.device)
    density_count = torch.zeros(fake.shape[0], dtype=torch.float64, device=real.device)
    recalled, covered = [], []
    for i in range(0, real.shape[0], chunk):
        d = _distances(real[i : i + chunk], fake)  # (c, m)
        in_real |= (d < r_pr[i : i + chunk, None]).any(0)
        density_count += (d < r_dc[i : i + chunk, None]).sum(0)
        recalled.append((d < f_pr[None, :]).any(1))
        covered.append(d.min(1).values < r_dc[i : i + chunk])
    return {
        "precision": float(in_real.double().mean()),
        "recall": float(torch.cat(recalled).double().mean()),
        "density": float(density_count.mean() / k_dc),
        "coverage": float(torch.cat(covered).double().mean()),
    }


def authenticity(train: torch.Tensor, fake: torch.Tensor, *, chunk: int = CHUNK,
                 device: Any = None) -> dict[str, float]:  # fmt: skip
    """``authenticity`` (share with d2 < d1) and ``memorised`` (share with d1 < d2)."""
    train = torch.as_tensor(train, dtype=torch.float64, device=device)
    fake = torch.as_tensor(fake, dtype=torch.float64, device=device)
    own = kth_neighbour_distance(train, 1, chunk)  # d2 of every training point
    best = torch.full((fake.shape[0],), float("inf"), dtype=torch.float64, device=train.device)
    which = torch.zeros(fake.shape[0], dtype=torch.long, device=train.device)
    for i in range(0, train.shape[0], chunk):
        d = _distances(train[i : i + chunk], fake).min(0)  # nearest in this chunk
        closer = d.values < best  # strict: the first of equal distances wins, like argmin
        best = torch.where(closer, d.values, best)
        which = torch.where(closer, d.indices + i, which)
    d2 = own[which]
    return {"authenticity": float((d2 < best).double().mean()),
            "memorised": float((best < d2).double().mean())}  # fmt: skip


@dataclass
class NeighboursConfig(FeatureOptions):
    """Options of ``memorisation``, and shared with ``prdc`` (``eval.<metric>.<key>``)."""

    metric: ClassVar[str] = "memorisation"

    #: training images compared with (None: all); a fixed random subset (seed 0)
    n_reference: int | None = 10_000
    #: reference rows per distance chunk (does not change the value)
    chunk: int = CHUNK

    def __post_init__(self) -> None:
        if self.chunk < 1:
            raise HarnessError(f"eval.{self.metric}.chunk must be >= 1, got {self.chunk}")
        super().__post_init__()


@dataclass
class PRDCConfig(NeighboursConfig):
    """Options of ``prdc``: the neighbourhood sizes of the two papers."""

    metric: ClassVar[str] = "prdc"

    k_precision_recall: int = 3
    k_density_coverage: int = 5

    def min_reference(self) -> tuple[int, str]:
        """A k-th nearest-neighbour radius needs more than k reference images."""
        k = max(self.k_precision_recall, self.k_density_coverage)
        key = "k_precision_recall" if k == self.k_precision_recall else "k_density_coverage"
        return k + 1, f"eval.prdc.{key}={k}: the k-th nearest-neighbour radius needs k + 1"

    def __post_init__(self) -> None:
        for key in ("k_precision_recall", "k_density_coverage"):
            if getattr(self, key) < 1:
                raise HarnessError(f"eval.prdc.{key} must be >= 1, got {getattr(self, key)}")
        super().__post_init__()


class NeighbourMetric(FeatureMetric):
    """Features of the generated images and of the reference, then a nearest-neighbour rule."""

    higher_is_better = True
    version = NEIGHBOURS_VERSION
    inputs = ("samples",)  # every sample-producing protocol, third-party ones included

    def __init__(self, config: Any = None, *, progress: bool = False,
                 extractor: Any = None) -> None:  # fmt: skip
        super().__init__(config if config is not None else self.Config(), progress, extractor)

    def _both(self, images: torch.Tensor, reference: Dataset, info: DatasetInfo,
              device: Any) -> tuple[Any, torch.Tensor, torch.Tensor]:  # fmt: skip
        self._details = {}
        extractor = self._get_extractor(info, reference, device)
        real = self.reference_features(reference, info, device)
        bs = self.config.batch_size
        chunks = (images[i : i + bs] for i in range(0, images.shape[0], bs))
        fake = torch.cat(list(self._features(extractor, chunks, device)))
        return extractor, real, fake

    def _finish(self, extractor: Any, reference: Dataset, info: DatasetInfo,
                n_real: int, n_fake: int, **extra: Any) -> None:  # fmt: skip
        self._stamp = {**self._base_stamp(extractor, reference, info, n_real, n_fake), **extra}
        provenance = getattr(extractor, "provenance", None)
        self._details.update(provenance() if callable(provenance) else {})


class PRDC(NeighbourMetric):
    """``prdc``: precision, recall, density, coverage (higher is better; density can pass 1)."""

    name = "prdc"
    Config: type = PRDCConfig
    direction = "higher"
    description = ("precision (fidelity) and recall (diversity), k = 3; density and coverage, "
                   "k = 5; in the fid features")
    #: per value: name in words, unit, direction of better
    display = {
        "precision": ValueDisplay("precision (generated within the real manifold)", "fraction",
                                  True),
        "recall": ValueDisplay("recall (real within the generated manifold)", "fraction", True),
        "density": ValueDisplay("density (real neighbourhoods per generated image / k)",
                                "ratio (1 = as dense as real)", True),
        "coverage": ValueDisplay("coverage (real images with a generated neighbour)",
                                 "fraction", True),
    }

    def __call__(self, images: torch.Tensor, reference: Dataset, info: DatasetInfo, *,
                 device: Any = None) -> dict[str, float]:  # fmt: skip
        c = self.config
        extractor, real, fake = self._both(images, reference, info, device)
        values = prdc(real, fake, k_pr=c.k_precision_recall, k_dc=c.k_density_coverage,
                      chunk=c.chunk, device=_device(device))  # fmt: skip
        self._finish(extractor, reference, info, real.shape[0], fake.shape[0],
                     k_precision_recall=c.k_precision_recall,
                     k_density_coverage=c.k_density_coverage)  # fmt: skip
        return values


class Memorisation(NeighbourMetric):
    """``memorisation``: authenticity (higher is better) and the memorised share (lower)."""

    name = "memorisation"
    Config: type = NeighboursConfig
    direction = "higher"  # of authenticity; memorised: lower
    description = ("authenticity (share of generated images farther from their nearest "
                   "training image than it is from its own) and the memorised share")
    display = {
        "authenticity": ValueDisplay("authenticity (not closer to a training image than its "
                                     "own nearest neighbour)", "fraction", True),
        "memorised": ValueDisplay("memorised (closer to a training image than its own nearest "
                                  "neighbour)", "fraction", False),
    }

    def __call__(self, images: torch.Tensor, reference: Dataset, info: DatasetInfo, *,
                 device: Any = None) -> dict[str, float]:  # fmt: skip
        extractor, real, fake = self._both(images, reference, info, device)
        values = authenticity(real, fake, chunk=self.config.chunk, device=_device(device))
        self._finish(extractor, reference, info, real.shape[0], fake.shape[0], k=1,
                     rule="authentic: d(train NN, its NN) < d(sample, train NN)")
        return values


def _device(device: Any) -> Any:
    """The run's device for the distance chunks (features live on the CPU)."""
    return torch.device(device) if device is not None else None
