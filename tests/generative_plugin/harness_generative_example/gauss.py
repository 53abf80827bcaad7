"""``gauss``: x ~ N(mu, W W^T + diag(sigma^2)), fitted by maximum likelihood. It has no encoder
and no reconstruction: it declares only the base capability, ``sample``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.api import DatasetInfo, StepContext
from harness.errors import ConfigError


@dataclass
class GaussConfig:
    """The ``model`` section: ``--set model.rank=4``."""

    rank: int = 8  # columns of W

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ConfigError(f"model.rank must be >= 1, got {self.rank}")


class LowRankGaussian(nn.Module):
    Config = GaussConfig
    capabilities = frozenset({"sample"})

    def __init__(self, config: GaussConfig, info: DatasetInfo) -> None:
        super().__init__()
        self.config, self.shape = config, tuple(info.shape)
        d = self.shape[0] * self.shape[1] * self.shape[2]
        self.mu = nn.Parameter(torch.full((d,), 0.5))
        self.W = nn.Parameter(0.01 * torch.randn(d, config.rank))
        self.log_sigma = nn.Parameter(torch.full((d,), -1.0))

    @classmethod
    def from_config(cls, config: GaussConfig, info: DatasetInfo) -> LowRankGaussian:
        return cls(config, info)

    def _density(self) -> torch.distributions.LowRankMultivariateNormal:
        return torch.distributions.LowRankMultivariateNormal(
            self.mu, self.W, self.log_sigma.exp().pow(2) + 1e-4)

    def forward(self, x: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Mean negative log-likelihood per pixel over the *global* batch."""
        flat = x.reshape(x.shape[0], -1)
        total = ctx.all_reduce_sum(-self._density().log_prob(flat).sum())
        count = ctx.all_reduce_sum(torch.tensor(float(flat.numel()), device=x.device))
        nll = total / count
        return {"total": nll, "nll": nll}

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn((n, self.W.shape[1]), generator=generator).to(self.mu)
        eps = torch.randn((n, self.mu.shape[0]), generator=generator).to(self.mu)
        x = self.mu + z @ self.W.T + eps * self.log_sigma.exp()
        return x.clamp(0, 1).view(n, *self.shape)
