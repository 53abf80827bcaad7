"""``tiny-gan``: an MLP GAN that owns its training step: each step updates the discriminator,
then the generator (non-saturating loss), through the harness's ``update(name, loss)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.api import DatasetInfo, StepContext
from harness.errors import ConfigError


@dataclass
class TinyGANConfig:
    """The ``model`` section: noise size and hidden width."""

    z_dim: int = 16
    hidden: int = 128

    def __post_init__(self) -> None:
        for key in ("z_dim", "hidden"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must be >= 1, got {getattr(self, key)}")


class TinyGAN(nn.Module):
    Config = TinyGANConfig
    capabilities = frozenset({"sample"})

    def __init__(self, config: TinyGANConfig, info: DatasetInfo) -> None:
        super().__init__()
        self.config, self.shape = config, tuple(info.shape)
        d = self.shape[0] * self.shape[1] * self.shape[2]
        self.generator = nn.Sequential(nn.Linear(config.z_dim, config.hidden), nn.ReLU(),
                                       nn.Linear(config.hidden, d), nn.Sigmoid())
        self.discriminator = nn.Sequential(nn.Linear(d, config.hidden), nn.LeakyReLU(0.2),
                                           nn.Linear(config.hidden, 1))

    @classmethod
    def from_config(cls, config: TinyGANConfig, info: DatasetInfo) -> TinyGAN:
        return cls(config, info)

    def configure_optimizers(self, train: Any) -> dict[str, torch.optim.Optimizer]:
        def adam(module: nn.Module) -> torch.optim.Optimizer:
            return torch.optim.Adam(module.parameters(), lr=train.lr, betas=(0.5, 0.999))

        return {"discriminator": adam(self.discriminator), "generator": adam(self.generator)}

    def training_step(self, x: torch.Tensor, ctx: StepContext, update: Any
                      ) -> dict[str, torch.Tensor]:
        real = x.reshape(x.shape[0], -1)
        z = ctx.randn_local(real.new_zeros(real.shape[0], self.config.z_dim))
        fake = self.generator(z)
        d_real, d_fake = self.discriminator(real), self.discriminator(fake.detach())
        loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        update("discriminator", loss_d)
        loss_g = F.softplus(-self.discriminator(fake)).mean()  # non-saturating
        update("generator", loss_g)
        return {"d": loss_d.detach(), "g": loss_g.detach()}

    def forward(self, x: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        raise NotImplementedError("tiny-gan trains through training_step")

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn((n, self.config.z_dim), generator=generator)
        return self.generator(z.to(next(self.parameters()))).view(n, *self.shape)
