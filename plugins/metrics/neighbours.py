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
  ``memorised`` the rest (d1 <= d2: y as close to x as any other training image is, or
  closer). A verbatim copy of a training image has d1 = 0: memorised, even when the copied
  image has a duplicate in the training set (d2 = 0). Every training image is compared with
  (``n_reference`` None): a 10 000-image subset of 60 000 misses 5/6 of the copies. A fresh
  sample of the data distribution is memorised by chance often (a third to a half on
  Gaussian data), so the metric reports the same two shares for held-out real images (the
  test split) beside the model's: ``memorised`` well above ``memorised_held_out`` is copying.

They apply where ``fid`` applies (labelled, not synthetic data). Not on the bumps: their
training set is a regular 10 × 10 mesh, so *every* fresh bump lies closer to its nearest mesh
bump than mesh bumps lie to each other, and the authenticity rule calls all 100 test images
memorised in pixel space (tests/test_neighbours.py); ``bump-copies`` (fitted centres on a
training centre) is the bumps' memorisation count instead.

All comparisons are strict (``<``), like the ``prdc`` package (``compute_prdc``), which these
values equal to 1e-6 on the same features (tests/test_neighbours.py). Distances are float64
torch, streamed in ``chunk`` × ``chunk`` blocks (memory: one block plus O(n + m), never
n × n), on the GPU when the run has one. The Gram expansion (fast) rounds: identical rows come
out ~1e-7 apart, and a tie could fall either way depending on the block. So every distance
within the expansion's rounding bound of a decision (a radius, a minimum, a k-th nearest) is
recomputed from the difference of the two rows: identical rows are exactly 0 apart, and no
value depends on ``chunk``. Memorisation costs O(m n) (d2 only for the training rows that are
some sample's nearest); precision/recall/density/coverage O(n^2) (every real radius).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset, Subset

from harness.api import DatasetInfo, ValueDisplay
from harness.errors import HarnessError

from .features import FeatureMetric, FeatureOptions, image_batches, subset_indices

NEIGHBOURS_VERSION = 2  # 2: exact distances at every decision, memorised = not authentic
CHUNK = 2048
#: bound on the Gram expansion's rounding, relative to |a|^2 + |b|^2 (float64 makes about
#: dimension x 1e-16): a distance this close to a decision is recomputed from the difference
GRAM_TOLERANCE = 1e-9


def _sq_norms(x: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """Squared row norms, a block of rows at a time (no temporary as large as ``x``)."""
    return torch.cat([(part * part).sum(1) for part in x.split(chunk)]) if len(x) else x.sum(1)


def _gram_sq(a: torch.Tensor, a_sq: torch.Tensor, b: torch.Tensor,
             b_sq: torch.Tensor) -> tuple[torch.Tensor, float]:  # fmt: skip
    """Squared distances (len(a), len(b)) by the Gram expansion (fast, rounded), and the bound
    on their rounding error."""
    sq = (a_sq[:, None] + b_sq[None, :] - 2.0 * a @ b.T).clamp_min_(0.0)
    slack = GRAM_TOLERANCE * float(a_sq.max() + b_sq.max()) if a.numel() and b.numel() else 0.0
    return sq, slack


def _make_exact(sq: torch.Tensor, a: torch.Tensor, b: torch.Tensor, near: torch.Tensor) -> None:
    """Replace the entries of ``sq`` flagged ``near`` by the squared distance summed from the
    difference: a function of the two rows alone (the same bits in any chunk), exactly 0 for
    identical rows."""
    rows, cols = near.nonzero(as_tuple=True)
    if rows.numel():
        sq[rows, cols] = ((a[rows] - b[cols]) ** 2).sum(1)


def _blocks(n: int, chunk: int) -> range:
    return range(0, n, chunk)


def nearest_neighbours(x: torch.Tensor, k: int, *, rows: torch.Tensor | None = None,
                       chunk: int = CHUNK) -> torch.Tensor:  # fmt: skip
    """Squared distances (len(rows), k) from rows ``rows`` of ``x`` (default: all) to their
    k nearest other rows of ``x``, ascending and exact (:func:`_make_exact` on every candidate).
    Streams ``chunk`` × ``chunk`` blocks: memory is that block plus the output, never n × n."""
    rows = torch.arange(x.shape[0], device=x.device) if rows is None else rows
    if x.shape[0] <= k:
        raise HarnessError(f"the k = {k} nearest-neighbour radius needs more than {k} points, "
                           f"got {x.shape[0]}")  # fmt: skip
    x_sq = _sq_norms(x)
    out = []
    for i in _blocks(rows.shape[0], chunk):
        q_idx = rows[i : i + chunk]
        q, q_sq = x[q_idx], x_sq[q_idx]
        best = torch.full((q.shape[0], k), float("inf"), dtype=x.dtype, device=x.device)
        for j in _blocks(x.shape[0], chunk):
            sq, slack = _gram_sq(q, q_sq, x[j : j + chunk], x_sq[j : j + chunk])
            itself = q_idx[:, None] == torch.arange(j, j + sq.shape[1], device=x.device)
            sq[itself] = float("inf")
            kk = min(k, sq.shape[1])
            # every entry that may be among the block's k nearest is made exact
            bound = sq.topk(kk, dim=1, largest=False).values[:, -1:] + 2 * slack
            _make_exact(sq, q, x[j : j + chunk], (sq <= bound) & ~itself)
            block = sq.topk(kk, dim=1, largest=False).values
            best = torch.cat([best, block], 1).topk(k, dim=1, largest=False).values
        out.append(best)
    return torch.cat(out)


def nearest_in(reference: torch.Tensor, queries: torch.Tensor, *,
               chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """For each query row: the exact squared distance to its nearest ``reference`` row and that
    row's index (the lowest among equal distances, whatever the chunking)."""
    r_sq, q_sq = _sq_norms(reference), _sq_norms(queries)
    best = torch.full((queries.shape[0],), float("inf"), dtype=queries.dtype,
                      device=queries.device)  # fmt: skip
    which = torch.zeros(queries.shape[0], dtype=torch.long, device=queries.device)
    for i in _blocks(queries.shape[0], chunk):
        q = queries[i : i + chunk]
        for j in _blocks(reference.shape[0], chunk):
            r = reference[j : j + chunk]
            sq, slack = _gram_sq(q, q_sq[i : i + chunk], r, r_sq[j : j + chunk])
            _make_exact(sq, q, r, sq <= sq.min(1, keepdim=True).values + 2 * slack)
            index = sq.argmin(1)  # the first of equal values
            value = sq.gather(1, index[:, None])[:, 0]
            closer = value < best[i : i + chunk]  # strict: an earlier block wins a tie
            best[i : i + chunk] = torch.where(closer, value, best[i : i + chunk])
            which[i : i + chunk] = torch.where(closer, index + j, which[i : i + chunk])
    return best, which


def kth_neighbour_distance(x: torch.Tensor, k: int, chunk: int = CHUNK) -> torch.Tensor:
    """r_k of every row of ``x``: the distance to its k-th nearest other row."""
    return nearest_neighbours(x, k, chunk=chunk)[:, -1].sqrt()


def prdc(real: torch.Tensor, fake: torch.Tensor, *, k_pr: int = 3, k_dc: int = 5,
         chunk: int = CHUNK, device: Any = None) -> dict[str, float]:  # fmt: skip
    """Precision and recall (k = ``k_pr``), density and coverage (k = ``k_dc``). Every
    comparison is decided on exact distances (a Gram-expansion value within its rounding
    bound of the radius is recomputed), so the value does not depend on ``chunk``; memory is
    one ``chunk`` × ``chunk`` block plus O(n + m)."""
    real = torch.as_tensor(real, dtype=torch.float64, device=device)
    fake = torch.as_tensor(fake, dtype=torch.float64, device=device)
    own = nearest_neighbours(real, max(k_pr, k_dc), chunk=chunk)
    r_pr, r_dc = own[:, k_pr - 1], own[:, k_dc - 1]  # squared radii
    f_pr = nearest_neighbours(fake, k_pr, chunk=chunk)[:, -1]
    real_sq, fake_sq = _sq_norms(real), _sq_norms(fake)
    in_real = torch.zeros(fake.shape[0], dtype=torch.bool, device=real.device)
    density_count = torch.zeros(fake.shape[0], dtype=torch.float64, device=real.device)
    recalled = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    nearest_fake = torch.full((real.shape[0],), float("inf"), dtype=torch.float64,
                              device=real.device)  # fmt: skip
    for i in _blocks(real.shape[0], chunk):
        x, pr, dc = real[i : i + chunk], r_pr[i : i + chunk, None], r_dc[i : i + chunk, None]
        for j in _blocks(fake.shape[0], chunk):
            y, fr = fake[j : j + chunk], f_pr[None, j : j + chunk]
            sq, slack = _gram_sq(x, real_sq[i : i + chunk], y, fake_sq[j : j + chunk])
            near = ((sq - pr).abs() <= slack) | ((sq - dc).abs() <= slack) | \
                ((sq - fr).abs() <= slack) | (sq <= sq.min(1, keepdim=True).values + 2 * slack)
            _make_exact(sq, x, y, near)
            in_real[j : j + chunk] |= (sq < pr).any(0)
            density_count[j : j + chunk] += (sq < dc).sum(0)
            recalled[i : i + chunk] |= (sq < fr).any(1)
            nearest_fake[i : i + chunk] = torch.minimum(nearest_fake[i : i + chunk], sq.min(1).values)
    return {
        "precision": float(in_real.double().mean()),
        "recall": float(recalled.double().mean()),
        "density": float(density_count.mean() / k_dc),
        "coverage": float((nearest_fake < r_dc).double().mean()),
    }


def authenticity(train: torch.Tensor, fake: torch.Tensor, *, chunk: int = CHUNK,
                 device: Any = None) -> dict[str, float]:  # fmt: skip
    """``authenticity`` (share with d2 < d1) and ``memorised`` (the rest: d1 <= d2, so a
    verbatim copy, d1 = 0, is memorised even when the copied image has a duplicate in the
    training set). Compares with every training row in O(m n) time: d2 is computed only for
    the training rows that are some sample's nearest, and memory is one block plus O(n + m)."""
    train = torch.as_tensor(train, dtype=torch.float64, device=device)
    fake = torch.as_tensor(fake, dtype=torch.float64, device=device)
    if train.shape[0] < 2:
        raise HarnessError(f"authenticity needs at least 2 training points, got {train.shape[0]}")
    d1, which = nearest_in(train, fake, chunk=chunk)
    hit, slot = which.unique(return_inverse=True)
    d2 = nearest_neighbours(train, 1, rows=hit, chunk=chunk)[:, 0][slot]
    authentic = d2 < d1
    return {"authenticity": float(authentic.double().mean()),
            "memorised": float((~authentic).double().mean())}  # fmt: skip


@dataclass
class NeighboursConfig(FeatureOptions):
    """Options shared by ``prdc`` and ``memorisation`` (``eval.<metric>.<key>``): the feature
    metrics' shared options (``n_reference`` None: all the training images; a subset is a
    fixed random one, seed 0), and the distance blocks."""

    metric: ClassVar[str] = "<metric>"

    #: rows per side of a distance block (does not change the value; memory ~ chunk^2 x 8 B)
    chunk: int = CHUNK

    def __post_init__(self) -> None:
        if self.chunk < 1:
            raise HarnessError(f"eval.{self.metric}.chunk must be >= 1, got {self.chunk}")
        super().__post_init__()


@dataclass
class MemorisationConfig(NeighboursConfig):
    """Options of ``memorisation``: all training images (a copy of an image outside a subset
    would not be seen), and the calibrated null."""

    metric: ClassVar[str] = "memorisation"

    #: also score held-out real images (the test split, at most this many, seed-0 subset;
    #: 0: none) with the same rule and report them beside the model's values
    n_held_out: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_held_out < 0:
            raise HarnessError(f"eval.memorisation.n_held_out must be >= 0 (0: no held-out "
                               f"null), got {self.n_held_out}")


@dataclass
class PRDCConfig(NeighboursConfig):
    """Options of ``prdc``: the neighbourhood sizes of the two papers, and a 10 000-image
    reference (the real-real neighbourhoods cost n^2: 10k takes seconds, 60k minutes)."""

    metric: ClassVar[str] = "prdc"

    n_reference: int | None = 10_000
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
    """``memorisation``: authenticity (higher is better) and the memorised share (lower),
    against every training image, with the same two shares for held-out real images beside
    them (the calibrated null: what a model that copies nothing would score)."""

    name = "memorisation"
    Config: type = MemorisationConfig
    direction = "higher"  # of authenticity; memorised: lower
    #: the evaluation hands over the test split as ``held_out`` (the null's images)
    uses_held_out = True
    description = ("authenticity (share of generated images farther from their nearest "
                   "training image than it is from its own) and the memorised share, beside "
                   "the same shares for held-out real images")
    display = {
        "authenticity": ValueDisplay("authenticity (not closer to a training image than its "
                                     "own nearest neighbour)", "fraction", True),
        "memorised": ValueDisplay("memorised (as close to a training image as its own nearest "
                                  "neighbour, or closer)", "fraction", False),
        "authenticity_held_out": ValueDisplay("authenticity of held-out real images (the "
                                              "null: no copying)", "fraction", None),
        "memorised_held_out": ValueDisplay("memorised share of held-out real images (the "
                                           "null: chance)", "fraction", None),
    }

    def __init__(self, config: Any = None, *, progress: bool = False,
                 extractor: Any = None) -> None:  # fmt: skip
        super().__init__(config, progress=progress, extractor=extractor)
        self._held_out: dict[tuple[Any, ...], torch.Tensor] = {}

    def __call__(self, images: torch.Tensor, reference: Dataset, info: DatasetInfo, *,
                 device: Any = None, held_out: Dataset | None = None) -> dict[str, float]:  # fmt: skip
        c = self.config
        extractor, real, fake = self._both(images, reference, info, device)
        values = authenticity(real, fake, chunk=c.chunk, device=_device(device))
        n_null = 0
        if held_out is not None and c.n_held_out > 0 and len(held_out):  # type: ignore[arg-type]
            null = self._held_out_features(extractor, held_out, device)
            n_null = null.shape[0]
            values.update({f"{key}_held_out": value for key, value in
                           authenticity(real, null, chunk=c.chunk, device=_device(device)).items()})
        self._finish(extractor, reference, info, real.shape[0], fake.shape[0], k=1,
                     rule="authentic: d(train NN, its NN) < d(sample, train NN); "
                          "memorised: the rest",
                     held_out="test" if n_null else None, n_held_out=n_null)  # fmt: skip
        return values


    def _held_out_features(self, extractor: Any, held_out: Dataset, device: Any) -> torch.Tensor:
        """Features of the null's held-out images (up to ``n_held_out``, seed-0 subset),
        extracted once per evaluation (random generation and interpolation share them)."""
        c = self.config
        key = (id(held_out), len(held_out), c.n_held_out)  # type: ignore[arg-type]
        cache = self._held_out
        if key not in cache:
            idx = subset_indices(len(held_out), c.n_held_out)  # type: ignore[arg-type]
            chosen = held_out if idx is None else Subset(held_out, idx)
            cache[key] = torch.cat(list(self._features(
                extractor, image_batches(chosen, c.batch_size), device, "the held-out images",
                len(chosen))))  # type: ignore[arg-type]
        return cache[key]


def _device(device: Any) -> Any:
    """The run's device for the distance chunks (features live on the CPU)."""
    return torch.device(device) if device is not None else None
