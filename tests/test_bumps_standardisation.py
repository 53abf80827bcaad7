"""The bumps are standardised with the training split's scalar statistics, and the
Gaussian-fit metric undoes it (paper Table 1 numbers are on the raw scale)."""

from __future__ import annotations

import pytest
import torch
from harness_plugins.datasets import bumps
from harness_plugins.metrics.gaussian_fit import GaussianFit

from harness.api import DataConfig


def test_gaussian_fit_scores_standardised_bumps_on_the_raw_scale() -> None:
    splits = bumps.load(DataConfig())
    images = splits.test.tensor()[:20]
    metric = GaussianFit()
    perfect = metric(images, splits.train, splits.info)["gaussian_fit_error_percent"]
    assert perfect < 0.01  # exact bumps, once the standardisation is undone
    # the same images read as raw values would be far off: the undo is what makes it ~0
    info = bumps.load(DataConfig()).info
    del info.metadata["standardization"]
    naive = metric(images, splits.train, info)["gaussian_fit_error_percent"]
    assert naive > 100.0
    # half-magnitude bumps score 50 % (the error is measured against the peak-1 bump)
    std = splits.info.metadata["standardization"]
    half = ((images * std["std"] + std["mean"]) * 0.5 - std["mean"]) / std["std"]
    assert metric(half, splits.train, splits.info)["gaussian_fit_error_percent"] == (
        pytest.approx(50.0, abs=0.01))


def test_standardisation_is_one_scalar_pair_from_training() -> None:
    a, b = bumps.load(DataConfig(seed=1)), bumps.load(DataConfig(seed=2))
    assert a.info.metadata["standardization"] == b.info.metadata["standardization"]
    diag = a.extra["diagonal"].tensor().double()
    std = a.info.metadata["standardization"]
    raw = torch.from_numpy(bumps.render(bumps.diagonal_centres())).double()
    assert torch.allclose(diag, (raw - std["mean"]) / std["std"], atol=1e-5)
