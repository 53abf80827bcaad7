"""Small data and models shared by the training tests and the two-process script.

Not a test module: ``tests/test_train*.py`` and ``tests/dist_train.py`` import it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from harness.api import DatasetInfo, DataSplits, StepContext
from harness.configuration.run_config import RunConfig, TrainConfig


class PairDataset(Dataset):
    """``(image, label)`` items from one tensor, as a dataset plugin returns them."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], -1


def bump_images(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    """``n`` Gaussian bumps at random centres on a size×size grid, (n, 1, size, size) in
    [0, 1]: smooth, low-dimensional data whose latent matrices have distinct singular values."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n, 2, generator=g) - 0.5
    lin = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    d2 = (xx[None] - centres[:, 0, None, None]) ** 2 + (yy[None] - centres[:, 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * 0.3**2))[:, None].float()


def make_splits(n_train: int = 48, size: int = 8, seed: int = 0) -> DataSplits:
    info = DatasetInfo(name="toy-bumps", shape=(1, size, size), source="generated")
    return DataSplits(
        info=info,
        train=PairDataset(bump_images(n_train, size, seed)),
        test=PairDataset(bump_images(8, size, seed + 1)),
    )


def make_config(seed: int = 0, **train: Any) -> RunConfig:
    return RunConfig(model="toy", dataset="toy-bumps", seed=seed, train=TrainConfig(**train))


# -------------------------------------------------------------------------- toy models
class ToyVAE(nn.Module):
    """A linear VAE following the model contract: global-batch loss through the ctx
    collectives, noise from the ctx generator. ``nan_at``: return a NaN ``kl`` at that
    ctx.step (to test the NaN stop). ``calibrate`` records what it was given."""

    @dataclass
    class Config:
        k: int = 3
        nan_at: int | None = None

    def __init__(self, config: Config, info: DatasetInfo) -> None:
        super().__init__()
        self.config = config
        d = info.shape[0] * info.shape[1] * info.shape[2]
        self.shape = info.shape
        self.enc = nn.Linear(d, config.k)
        self.dec = nn.Linear(config.k, d)
        self.seen_in_calibration = 0
        self.calibrated_in_eval = None
        self.calibrated_with_grad = None

    @classmethod
    def from_config(cls, config: Config, info: DatasetInfo) -> ToyVAE:
        return cls(config, info)

    @property
    def bottleneck_dim(self) -> int:
        return self.config.k

    @property
    def min_batch_size(self) -> int:
        return 1

    def forward(self, x: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        flat = x.flatten(1)
        y = self.enc(flat)
        z = y + 0.1 * ctx.randn_local(y)
        err = ctx.all_reduce_sum((self.dec(z) - flat).pow(2).sum())
        ref = ctx.all_reduce_sum(flat.pow(2).sum()).detach()
        rec = 100 * torch.sqrt(err / ref)
        kl = 1e-3 * ctx.all_reduce_sum(y.pow(2).sum())
        if self.config.nan_at is not None and ctx.step == self.config.nan_at:
            kl = kl * float("nan")
        return {"total": rec + kl, "rec": rec, "kl": kl}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x.flatten(1))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.dec(codes).reshape(-1, *self.shape)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def calibrate(self, batches: Iterable[torch.Tensor], ctx: StepContext) -> None:
        self.calibrated_in_eval = not self.training
        self.calibrated_with_grad = torch.is_grad_enabled()
        for b in batches:
            assert isinstance(b, torch.Tensor) and b.shape[1:] == self.shape
            self.seen_in_calibration += b.shape[0]


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
