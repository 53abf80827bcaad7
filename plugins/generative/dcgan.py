"""``dcgan``: a small DCGAN (Radford et al., ICLR 2016) at any dataset's shape.

The generator maps z ~ N(0, I) through a linear layer to a base grid, then transposed
convolutions (4x4, stride 2) double it :func:`.networks.levels` times, halving the channels,
to the image (a sigmoid: the data are in [0, 1]); the discriminator mirrors it with strided
convolutions and LeakyReLU(0.2). Each training step updates the discriminator on real and
generated images, then the generator with the non-saturating loss ``softplus(-D(G(z)))``
(Goodfellow et al. 2014), both with Adam(beta1 = 0.5, beta2 = 0.999), DCGAN's setting.

One departure from the paper, and why: batch norm is replaced by per-sample GroupNorm in
the generator (and none in the discriminator), so that N processes at B/N train exactly as
one at B (a batch statistic depends on how the batch is split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.api import DatasetInfo, StepContext
from harness.errors import ConfigError

from .networks import base_grid, fit, groups, levels


@dataclass
class DCGANConfig:
    """The ``model`` section: latent size and the widest layer's channels."""

    z_dim: int = 64
    channels: int = 128  # generator's first and discriminator's last width

    def __post_init__(self) -> None:
        for key in ("z_dim", "channels"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        if self.channels < 8:
            raise ConfigError(f"model.channels must be >= 8 (it is halved per level), got "
                              f"{self.channels}")


class DCGAN(nn.Module):
    Config = DCGANConfig
    capabilities = frozenset({"sample"})

    def __init__(self, config: DCGANConfig, info: DatasetInfo) -> None:
        super().__init__()
        self.config, self.shape = config, tuple(int(s) for s in info.shape)
        n, c = levels(self.shape), config.channels
        self.grid = base_grid(self.shape, n)
        widths = [max(8, c // 2**i) for i in range(n + 1)]  # c, c/2, ... at each resolution
        self.project = nn.Linear(config.z_dim, widths[0] * self.grid[0] * self.grid[1])
        up: list[nn.Module] = [nn.GroupNorm(groups(widths[0]), widths[0]), nn.ReLU()]
        for i in range(n):
            up += [nn.ConvTranspose2d(widths[i], widths[i + 1], 4, 2, 1, bias=False),  # normed next
                   nn.GroupNorm(groups(widths[i + 1]), widths[i + 1]), nn.ReLU()]
        up += [nn.Conv2d(widths[n], self.shape[0], 3, 1, 1)]
        self.generator = nn.Sequential(*up)
        down: list[nn.Module] = [nn.Conv2d(self.shape[0], widths[n], 3, 1, 1), nn.LeakyReLU(0.2)]
        for i in range(n, 0, -1):
            down += [nn.Conv2d(widths[i], widths[i - 1], 4, 2, 1), nn.LeakyReLU(0.2)]
        self.discriminator_features = nn.Sequential(*down)
        self.discriminator_head = nn.Linear(widths[0] * self._d_cells(n), 1)

    def _d_cells(self, n: int) -> int:
        h, w = self.shape[1], self.shape[2]
        for _ in range(n):  # conv 4x4, stride 2, padding 1: floor(s / 2)
            h, w = h // 2, w // 2
        return h * w

    @classmethod
    def from_config(cls, config: DCGANConfig, info: DatasetInfo) -> DCGAN:
        return cls(config, info)

    @classmethod
    def preset(cls, dataset: str) -> tuple[str, dict[str, dict[str, Any]]]:
        """DCGAN's setting on every dataset: Adam at 2e-4 (the model builds it; train.optimizer
        is not used), batch 64; 3000 steps (a few CPU minutes on digits)."""
        return "generative:dcgan", {"train": {"lr": 2e-4, "batch_size": 64, "steps": 3000}}

    # ------------------------------------------------------------------------- networks
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(z.shape[0], -1, *self.grid)
        return torch.sigmoid(fit(self.generator(h), self.shape))

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator_head(self.discriminator_features(x).flatten(1)).squeeze(1)

    # ------------------------------------------------------------------------- training
    def configure_optimizers(self, train: Any) -> dict[str, torch.optim.Optimizer]:
        def adam(params: Any) -> torch.optim.Optimizer:
            return torch.optim.Adam(params, lr=train.lr, betas=(0.5, 0.999))

        d_params = [*self.discriminator_features.parameters(),
                    *self.discriminator_head.parameters()]
        g_params = [*self.project.parameters(), *self.generator.parameters()]
        return {"discriminator": adam(d_params), "generator": adam(g_params)}

    def training_step(self, x: torch.Tensor, ctx: StepContext, update: Any
                      ) -> dict[str, torch.Tensor]:
        z = ctx.randn_local(x.new_zeros(x.shape[0], self.config.z_dim))
        fake = self.generate(z)
        d_real, d_fake = self.discriminate(x), self.discriminate(fake.detach())
        loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        update("discriminator", loss_d)
        loss_g = F.softplus(-self.discriminate(fake)).mean()  # non-saturating
        update("generator", loss_g)
        return {"d": loss_d.detach(), "g": loss_g.detach(),
                "d_real": torch.sigmoid(d_real).mean().detach(),
                "d_fake": torch.sigmoid(d_fake).mean().detach()}

    def forward(self, x: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        raise NotImplementedError("dcgan trains through training_step (two optimizers)")

    # ----------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn((n, self.config.z_dim), generator=generator)
        return self.generate(z.to(self.project.weight))
