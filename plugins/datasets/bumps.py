"""The paper's synthetic Gaussian bumps, generated as the paper describes (docs/maths.md).

Every image is one isotropic Gaussian bump on a 64×64 grid covering [-1, 1]^2::

    image[r, c] = exp(-((x[c] - x0)^2 + (y[r] - y0)^2) / (2 * 0.2^2)),   x = y = linspace(-1, 1, 64)

so the column index follows x and the row index follows y (numpy ``meshgrid``'s default
"xy" indexing, as the reference) and the peak value is 1. Splits:

* ``train``: the 10×10 mesh of centres ``linspace(-0.5, 0.5, 10)`` in x and y — 100 images,
  ordered x0-major (``(x0_0, y0_0), (x0_0, y0_1), ...``);
* ``test``: :data:`N_TEST` = 100 centres drawn uniformly in [-0.5, 0.5]^2 with
  ``numpy.random.default_rng(data.seed)`` (x0 then y0 per row of a (100, 2) draw), so the
  same seed always gives the same test set;
* ``extra["diagonal"]``: :data:`N_DIAGONAL` = 20 centres with x0 = y0 on
  ``linspace(-0.5, 0.5, 20)``, for the latent-path figure.

Images are **standardised** (docs/maths.md): rendered in [0, 1] with peak 1, then ``(raw - m) / s``
with ONE scalar mean ``m`` and std ``s`` computed on the *training* split (float64, population
std) and applied to every split (train, test, diagonal). The reference computed them on each
split separately, which leaks test statistics. ``info.metadata["standardization"] = {"mean":
m, "std": s}`` records the transform so that any consumer can undo it generically
(``raw = x * s + m``): the Gaussian-fit metric does, before fitting, and so do the benchmark
report's figures. ``train_mean`` / ``train_std`` repeat the two numbers. The centres, the spread
and the grid are in the metadata too, for that metric. Labels are -1 (no classes).
``data.size`` changes the grid resolution (the bump is evaluated on size×size points of the
same [-1, 1]^2 square, not resampled).
"""

from __future__ import annotations

import itertools

import numpy as np

from harness.api import DataConfig, DatasetInfo, DataSplits

from ._common import ArrayDataset, build_splits

SIZE = 64
SPREAD = 0.2
EXTENT = (-1.0, 1.0)
CENTRE_RANGE = (-0.5, 0.5)
N_MESH = 10
N_TEST = 100
N_DIAGONAL = 20


def grid(size: int = SIZE) -> np.ndarray:
    """The pixel coordinates along one axis: ``linspace(-1, 1, size)``."""
    return np.linspace(EXTENT[0], EXTENT[1], size)


def render(centres: np.ndarray, size: int = SIZE, spread: float = SPREAD) -> np.ndarray:
    """Bumps centred at ``centres`` (n, 2) as float32 images (n, 1, size, size)."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    axis = grid(size)
    xs = axis[None, None, :]  # columns
    ys = axis[None, :, None]  # rows
    x0 = centres[:, 0, None, None]
    y0 = centres[:, 1, None, None]
    images = np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2.0 * spread**2))
    return images[:, None].astype(np.float32)


def train_centres() -> np.ndarray:
    """The 10×10 training mesh, x0-major, as (100, 2)."""
    axis = np.linspace(CENTRE_RANGE[0], CENTRE_RANGE[1], N_MESH)
    return np.array(list(itertools.product(axis, axis)), dtype=np.float64)


def test_centres(seed: int, n: int = N_TEST) -> np.ndarray:
    """``n`` centres uniform in [-0.5, 0.5]^2, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return rng.uniform(CENTRE_RANGE[0], CENTRE_RANGE[1], size=(n, 2))


def diagonal_centres(n: int = N_DIAGONAL) -> np.ndarray:
    """``n`` centres on the diagonal x0 = y0 across [-0.5, 0.5]."""
    t = np.linspace(CENTRE_RANGE[0], CENTRE_RANGE[1], n)
    return np.stack([t, t], axis=1)


def load(config: DataConfig) -> DataSplits:
    """Generate the bumps (no files, no download; a few milliseconds)."""
    size = SIZE if config.size is None else int(config.size)
    if size <= 0:
        from harness import HarnessError

        raise HarnessError(f"data.size must be a positive number of pixels, got {size}")
    tr, te, dg = train_centres(), test_centres(config.seed), diagonal_centres()
    raw_train = render(tr, size)
    mean = float(raw_train.astype(np.float64).mean())
    std = float(raw_train.astype(np.float64).std())

    def standardise(images: np.ndarray) -> np.ndarray:
        return ((images.astype(np.float64) - mean) / std).astype(np.float32)

    info = DatasetInfo(
        name="bumps",
        shape=(1, size, size),
        num_classes=None,
        source="generated",
        metadata={
            # scored by the closed-form Gaussian-fit error (paper Table 1), not by FID
            "synthetic": True,
            "train_centres": tr.tolist(),
            "test_centres": te.tolist(),
            "diagonal_centres": dg.tolist(),
            "spread": SPREAD,
            "grid": {"extent": list(EXTENT), "size": size, "indexing": "xy"},
            "centre_range": list(CENTRE_RANGE),
            "seed": int(config.seed),
            # float64 statistics of the training split, applied to every split
            "standardization": {"mean": mean, "std": std},
            "train_mean": mean,
            "train_std": std,
        },
    )
    return build_splits(
        info,
        ArrayDataset(standardise(raw_train)),
        ArrayDataset(standardise(render(te, size))),
        config,
        extra={"diagonal": ArrayDataset(standardise(render(dg, size)))},
    )
