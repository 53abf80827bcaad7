"""``tiny-ae``: the smallest model that follows :class:`harness.api.GenerativeModel`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from harness.api import DatasetInfo, StepContext


@dataclass
class TinyAEConfig:
    """The ``model`` section of a run: ``--set model.k=16``."""

    k: int = 8  # bottleneck size
    hidden: int = 64  # width of the hidden layer of encoder and decoder


class TinyAE(nn.Module):
    """Flatten -> Linear -> ReLU -> Linear(k) -> ... -> Sigmoid, back to the image shape."""

    Config = TinyAEConfig

    def __init__(self, config: TinyAEConfig, info: DatasetInfo) -> None:
        super().__init__()
        if config.k < 1 or config.hidden < 1:
            raise ValueError(f"model.k and model.hidden must be >= 1, got {config}")
        self.config = config
        self.shape = tuple(info.shape)
        pixels = self.shape[0] * self.shape[1] * self.shape[2]
        self.encoder = nn.Sequential(
            nn.Flatten(),
            nn.Linear(pixels, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.k),
        )
        self.decoder = nn.Sequential(
            nn.Linear(config.k, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, pixels),
            nn.Sigmoid(),
        )

    @classmethod
    def from_config(cls, config: TinyAEConfig, info: DatasetInfo) -> TinyAE:
        return cls(config, info)

    @property
    def bottleneck_dim(self) -> int:
        return self.config.k

    @property
    def min_batch_size(self) -> int:
        return 1

    def forward(self, x: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Relative reconstruction error of the *global* batch, in percent:
        ``100 * ||X_hat - X|| / ||X||``. The two sums of squares go through
        ``ctx.all_reduce_sum``, so every process returns the same loss."""
        x_hat = self.decode(self.encode(x))
        err = ctx.all_reduce_sum((x_hat - x).pow(2).sum())
        ref = ctx.all_reduce_sum(x.pow(2).sum())
        rec = 100.0 * err.sqrt() / ref.sqrt().clamp_min(1e-12)
        return {"total": rec, "rec": rec}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(codes).view(codes.shape[0], *self.shape)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def calibrate(self, batches: Iterable[torch.Tensor], ctx: StepContext) -> None:
        """Nothing to fit after training."""
