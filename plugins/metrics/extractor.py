"""What the FID feature extractors share: a frozen network and a description for the stamp."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn


class FeatureExtractor:
    """Maps images (N, C, H, W) to float64 feature rows (N, dim) on the CPU.

    Subclasses set ``name`` and ``dim`` and, when the features are not the network's output,
    override :meth:`features`. ``describe()`` is what the FID record's stamp says about them.
    """

    name = ""
    dim = 0

    def __init__(self, network: nn.Module, description: dict[str, Any]) -> None:
        self.network = network.eval()
        self._description = description

    def describe(self) -> dict[str, Any]:
        return dict(self._description)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, device: Any = None) -> torch.Tensor:
        device = torch.device(device) if device is not None else torch.device("cpu")
        self.network.to(device)
        return self.features(images.to(device)).double().cpu()
