"""Metric ``gaussian-fit``: the synthetic random-generation error of the paper (Table 1).

For each generated image I, fit a 2-D Gaussian bump ``a * g(x0, y0)`` of the dataset's spread
``sigma`` (``g = exp(-((x-x0)^2 + (y-y0)^2) / (2 sigma^2))``, peak 1) by least squares over the
centre and the magnitude ``a``; the magnitude is free so that a faint or saturated image still
gets the right centre. The error is then measured against the bump **of the right magnitude
(peak 1)** at that centre, like rec: ``100 * ||I - g(x0*, y0*)||_F / ||g(x0*, y0*)||_F``
(the ideal bump is the reference, as X is in rec; an all-zero image scores 100 %).

Fitting: for a fixed centre the best ``a`` is ``<I, g> / <g, g>``, so the centre maximises
``<I, g>^2 / <g, g>``. Because g is separable, ``<I, g>`` for a whole grid of centres is one
product ``Gy I Gx^T``: a coarse grid of centres over the image's extent, then repeated 5×
zoom-ins around the best centre down to ~1e-7 — vectorised over images, deterministic, and
exact enough that perfect bumps score ~0 %.

Dataset contract (``info.metadata``): ``spread`` (sigma, 0.2 for the bumps; ``sigma`` is
accepted too) makes the metric apply; optional ``grid.extent`` (or ``extent``) ``[lo, hi]`` of
the square grid (default ``[-1, 1]``, pixel centres at ``linspace(lo, hi, n)``, as the bumps
dataset plugin records it) and optional
``standardization`` ``{"mean": m, "std": s}`` when images were stored as ``(raw - m) / s``
(it is undone before fitting).

Metric contract (see :mod:`.fid`): ``GaussianFit(config, progress=...)`` with an empty
``GaussianFit.Config`` (no options); ``stamp()`` holds what defines the numbers,
``details()`` is empty (nothing is cached).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from harness.api import DatasetInfo, ValueDisplay

GAUSSIAN_FIT_VERSION = 1
COARSE = 65
ZOOM = 11
LEVELS = 10


def _spread(info: DatasetInfo) -> float | None:
    value = info.metadata.get("spread", info.metadata.get("sigma"))
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _extent(info: DatasetInfo) -> tuple[float, float]:
    grid = info.metadata.get("grid")
    value = grid.get("extent") if isinstance(grid, dict) else info.metadata.get("extent")
    lo, hi = value if value is not None else (-1.0, 1.0)
    return float(lo), float(hi)


def _profiles(centres: torch.Tensor, coords: torch.Tensor, sigma: float) -> torch.Tensor:
    """(..., m) centres, (n,) coords -> (..., m, n) 1-D Gaussian profiles."""
    return torch.exp(-((coords - centres.unsqueeze(-1)) ** 2) / (2 * sigma**2))


def fit_bumps(
    images: torch.Tensor, sigma: float, extent: tuple[float, float] = (-1.0, 1.0)
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Least-squares bump fit of (N, H, W) images: centres x0 (N,), y0 (N,), magnitudes (N,)."""
    x = images.double()
    n, h, w = x.shape
    lo, hi = extent
    xs = torch.linspace(lo, hi, w, dtype=torch.float64)
    ys = torch.linspace(lo, hi, h, dtype=torch.float64)

    def best(cx: torch.Tensor, cy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # cx: (N, m) candidate x0, cy: (N, m) candidate y0 -> best (x0, y0) per image
        gx = _profiles(cx, xs, sigma)  # (N, m, W)
        gy = _profiles(cy, ys, sigma)  # (N, m, H)
        corr = gy @ x @ gx.transpose(1, 2)  # (N, my, mx): <I, gy ⊗ gx>
        norm = (gy**2).sum(-1).unsqueeze(2) * (gx**2).sum(-1).unsqueeze(1)
        score = corr**2 / norm.clamp_min(1e-300)
        score = torch.where(corr > 0, score, torch.zeros_like(score))  # a positive bump
        flat = score.reshape(n, -1).argmax(dim=1)
        iy, ix = flat // cx.shape[1], flat % cx.shape[1]
        rows = torch.arange(n)
        return cx[rows, ix], cy[rows, iy]

    grid = torch.linspace(lo, hi, COARSE, dtype=torch.float64).expand(n, COARSE)
    x0, y0 = best(grid, grid)
    step = (hi - lo) / (COARSE - 1)
    offsets = torch.linspace(-1.0, 1.0, ZOOM, dtype=torch.float64)
    for _ in range(LEVELS):
        x0, y0 = best(x0[:, None] + step * offsets, y0[:, None] + step * offsets)
        step *= 2.0 / (ZOOM - 1)
    g = _profiles(y0[:, None], ys, sigma)[:, 0, :, None] * _profiles(x0[:, None], xs, sigma)[
        :, 0, None, :
    ]
    a = (g * x).sum((1, 2)) / (g * g).sum((1, 2))
    return x0, y0, a


def bump_errors(
    images: torch.Tensor, sigma: float, extent: tuple[float, float] = (-1.0, 1.0)
) -> torch.Tensor:
    """Per-image relative error (percent) against the fitted peak-1 bump."""
    x = images.double()
    x0, y0, _ = fit_bumps(x, sigma, extent)
    h, w = x.shape[-2:]
    xs = torch.linspace(extent[0], extent[1], w, dtype=torch.float64)
    ys = torch.linspace(extent[0], extent[1], h, dtype=torch.float64)
    g = _profiles(y0[:, None], ys, sigma)[:, 0, :, None] * _profiles(x0[:, None], xs, sigma)[
        :, 0, None, :
    ]
    diff = torch.linalg.vector_norm(x - g, dim=(1, 2))
    return 100.0 * diff / torch.linalg.vector_norm(g, dim=(1, 2))


@dataclass
class GaussianFitConfig:
    """``gaussian-fit`` has no options: the spread and the grid come from the dataset."""


class GaussianFit:
    """``gaussian-fit``: mean and std of the per-image bump-fit error (lower is better)."""

    name = "gaussian-fit"
    higher_is_better = False
    protocols = ("random-generation",)
    display = {
        "gaussian_fit_error_percent": ValueDisplay(
            "Gaussian-fit error", "%", False,
            "mean distance of each generated image to the nearest ideal bump"),
        "gaussian_fit_error_percent_std": ValueDisplay("Gaussian-fit error spread over "
                                                       "images", "%", None),
    }
    Config = GaussianFitConfig

    def __init__(self, config: GaussianFitConfig | None = None, *,
                 progress: bool = False) -> None:  # fmt: skip
        self.config = config if config is not None else GaussianFitConfig()
        self._stamp: dict[str, Any] = {}

    def details(self) -> dict[str, Any]:
        return {}

    def applies(self, info: DatasetInfo) -> bool:
        return _spread(info) is not None and info.shape[0] == 1

    def stamp(self) -> dict[str, Any]:
        return dict(self._stamp)

    def __call__(self, images: torch.Tensor, reference: Dataset, info: DatasetInfo, *,
                 device: Any = None) -> dict[str, float]:  # fmt: skip
        sigma = _spread(info)
        if sigma is None:
            raise ValueError(f"dataset '{info.name}' has no 'spread' in its metadata")
        extent = _extent(info)
        x = images.detach().cpu().double()[:, 0]
        std = info.metadata.get("standardization")
        if isinstance(std, dict):
            x = x * float(std["std"]) + float(std["mean"])
        errors = torch.cat([bump_errors(x[i : i + 256], sigma, extent)  # type: ignore[arg-type]
                            for i in range(0, x.shape[0], 256)])  # fmt: skip
        self._stamp = {"metric": self.name, "metric_version": GAUSSIAN_FIT_VERSION,
                       "spread": sigma, "extent": list(extent), "n_images": int(x.shape[0]),
                       "error": "100*||I - g||/||g||, g the fitted bump with peak 1"}  # fmt: skip
        return {
            "gaussian_fit_error_percent": float(errors.mean()),
            "gaussian_fit_error_percent_std": float(errors.std(unbiased=False)),
        }


@dataclass
class BumpCopiesConfig:
    """Options of ``bump-copies`` (``eval.bump-copies.<key>``)."""

    #: a fitted centre "sits on" a training centre within this fraction of the mesh spacing
    tolerance: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < float(self.tolerance) < 0.5:
            raise ValueError(f"eval.bump-copies.tolerance must be in (0, 0.5), got "
                             f"{self.tolerance}")  # fmt: skip


class BumpCopies(GaussianFit):
    """``bump-copies``: how many generated bumps sit on a training centre (lower is better).

    The bumps' training set is 100 images on a 10 × 10 mesh of centres; a model that copies
    its training images generates bumps on those centres, one that generalises anywhere in
    the centre range. Each generated image's centre is fitted as for ``gaussian-fit``; it
    counts when it lies within ``tolerance`` × the mesh spacing of a training centre. The
    stamp gives the share expected by chance for centres uniform over the centre range
    (``n_centres · π (tolerance · spacing)² / area``) to compare with.
    """

    name = "bump-copies"
    higher_is_better = False
    direction = "lower"
    description = "generated bumps whose fitted centre sits on a training centre"
    display = {
        "bumps_on_training_centre": ValueDisplay("generated bumps on a training centre",
                                                 "images", False),
        "bumps_on_training_centre_share": ValueDisplay(
            "share of generated bumps on a training centre", "fraction", False),
    }
    Config = BumpCopiesConfig  # type: ignore[assignment]

    def __init__(self, config: BumpCopiesConfig | None = None, *,
                 progress: bool = False) -> None:  # fmt: skip
        self.config = config if config is not None else BumpCopiesConfig()  # type: ignore
        self._stamp = {}

    def applies(self, info: DatasetInfo) -> bool:
        return super().applies(info) and len(info.metadata.get("train_centres") or []) > 1

    def __call__(self, images: torch.Tensor, reference: Dataset, info: DatasetInfo, *,
                 device: Any = None) -> dict[str, float]:  # fmt: skip
        sigma, extent = _spread(info), _extent(info)
        x = images.detach().cpu().double()[:, 0]
        std = info.metadata.get("standardization")
        if isinstance(std, dict):
            x = x * float(std["std"]) + float(std["mean"])
        x0, y0, _ = fit_bumps(x, sigma, extent)  # type: ignore[arg-type]
        centres = torch.tensor(info.metadata["train_centres"], dtype=torch.float64)
        lo, hi = info.metadata.get("centre_range", (-0.5, 0.5))
        spacing = (float(hi) - float(lo)) / (round(len(centres) ** 0.5) - 1)
        radius = float(self.config.tolerance) * spacing
        nearest = torch.cdist(torch.stack([x0, y0], 1), centres).min(1).values
        on = int((nearest < radius).sum())
        chance = min(1.0, len(centres) * math.pi * radius**2 / (float(hi) - float(lo)) ** 2)
        self._stamp = {"metric": self.name, "metric_version": 1, "n_images": int(x.shape[0]),
                       "n_training_centres": len(centres), "mesh_spacing": spacing,
                       "tolerance": float(self.config.tolerance), "radius": radius,
                       "chance_share": chance}  # fmt: skip
        return {"bumps_on_training_centre": on,
                "bumps_on_training_centre_share": on / max(1, int(x.shape[0]))}
