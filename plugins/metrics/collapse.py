"""Metric ``collapse``: the posterior-collapse diagnostic (paper section 3.1, fig. 2).

This is a **codes** metric: the protocol runner calls it with the (N, k) deterministic
bottleneck codes of the whole training set (``model.encode``: z for ae, mu for vae-type models,
``c = U^T y`` for the rrae family) instead of images — its ``protocols`` is ``("codes",)``.

Per-dimension variance of the codes across the data (population variance, float64). A
dimension is *collapsed* when its variance is below ``threshold`` (default 1e-3) times the
largest variance, i.e. its standard deviation is under ~3 % of the most informative
dimension's: it then carries almost no information about the input. The threshold is
relative so the diagnostic does not depend on the scale of the codes; when every variance is
zero all dimensions count as collapsed.

Metric contract (see :mod:`.fid`): ``Collapse(config, progress=...)`` with ``Collapse.Config``
(``eval.collapse.threshold``); ``stamp()`` holds what defines the numbers, ``details()`` is
empty (nothing is cached).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from harness.api import DatasetInfo, ValueDisplay
from harness.errors import HarnessError

COLLAPSE_VERSION = 1


def code_variances(codes: torch.Tensor) -> torch.Tensor:
    return codes.detach().cpu().double().var(dim=0, unbiased=False)


def collapsed_mask(variances: torch.Tensor, threshold: float) -> torch.Tensor:
    top = float(variances.max()) if variances.numel() else 0.0
    if top <= 0.0:
        return torch.ones_like(variances, dtype=torch.bool)
    return variances < threshold * top


@dataclass
class CollapseConfig:
    """Options of ``collapse`` (``eval.collapse.<key>``)."""

    #: a dimension is collapsed when its variance is below threshold x the largest variance
    threshold: float = 1e-3

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold < 1.0:
            raise HarnessError(f"eval.collapse.threshold must be in [0, 1), got {self.threshold}")


class Collapse:
    """``collapse``: number of collapsed bottleneck dimensions (lower is better)."""

    name = "collapse"
    higher_is_better = False
    protocols = ("codes",)
    display = {
        "collapsed_dims": ValueDisplay("Collapsed latent dimensions", "dims", False,
                                       "code dimensions whose variance is negligible"),
        "active_dims": ValueDisplay("Active latent dimensions", "dims", None),
    }
    Config = CollapseConfig

    def __init__(self, config: CollapseConfig | None = None, *, progress: bool = False) -> None:
        self.config = config if config is not None else CollapseConfig()
        self.threshold = self.config.threshold
        self._stamp: dict[str, Any] = {}

    def applies(self, info: DatasetInfo) -> bool:
        return True

    def stamp(self) -> dict[str, Any]:
        return dict(self._stamp)

    def details(self) -> dict[str, Any]:
        return {}

    def __call__(self, codes: torch.Tensor, reference: Dataset, info: DatasetInfo, *,
                 device: Any = None) -> dict[str, Any]:  # fmt: skip
        if codes.ndim != 2:
            raise ValueError(f"collapse expects (N, k) codes, got shape {tuple(codes.shape)}")
        var = code_variances(codes)
        mask = collapsed_mask(var, self.threshold)
        self._stamp = {
            "metric": self.name, "metric_version": COLLAPSE_VERSION,
            "threshold": f"variance < {self.threshold:g} x largest variance",
            "n_codes": int(codes.shape[0]),
            "k": int(codes.shape[1]),
        }
        return {
            "collapsed_dims": int(mask.sum()),
            "active_dims": int((~mask).sum()),
            "code_variances": [float(v) for v in var],
        }
