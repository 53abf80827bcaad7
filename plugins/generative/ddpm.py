"""``ddpm``: a small denoising diffusion probabilistic model (Ho et al., NeurIPS 2020) with
EMA weights and a DDIM sampler (Song et al., ICLR 2021), at any dataset's shape.

Training: images scaled to [-1, 1], ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` with a
linear beta schedule (1e-4 to 0.02 over ``model.timesteps``), t uniform; the U-Net predicts
eps, loss ``mean (eps_hat - eps)^2``. The model owns its step so that, after each optimizer
update, it moves an exponential moving average of the weights (``model.ema_decay``); the
EMA copy is a buffer-like submodule (saved in checkpoints and the weights) and is what
samples. Sampling: deterministic DDIM (eta = 0) over ``model.sample_steps`` evenly spaced
timesteps, x_0 clipped to [-1, 1] at each step.

The U-Net: a 3x3 stem, then per resolution a residual block with the time embedding and a
stride-2 convolution (:func:`.networks.levels` of them), a middle block, and the mirror
image upwards with skip connections (a skip's size wins where an odd side was halved).
GroupNorm only: N processes at B/N train as one process at B.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.api import DatasetInfo, StepContext
from harness.errors import ConfigError

from .networks import TimeResBlock, levels, timestep_embedding


@dataclass
class DDPMConfig:
    """The ``model`` section."""

    channels: int = 32  # width at full resolution (doubled per level, at most 4x)
    timesteps: int = 1000  # T of the forward process
    sample_steps: int = 50  # DDIM steps when sampling
    ema_decay: float = 0.995

    def __post_init__(self) -> None:
        for key in ("channels", "timesteps", "sample_steps"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        if self.sample_steps > self.timesteps:
            raise ConfigError(f"model.sample_steps={self.sample_steps} must be at most "
                              f"model.timesteps={self.timesteps}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"model.ema_decay must be in [0, 1), got {self.ema_decay}")


class UNet(nn.Module):
    """eps_hat(x_t, t) for images of ``shape``."""

    def __init__(self, shape: tuple[int, int, int], channels: int) -> None:
        super().__init__()
        n = levels(shape, most=3)
        widths = [channels * min(2**i, 4) for i in range(n + 1)]
        self.t_dim = channels * 2
        self.time = nn.Sequential(nn.Linear(channels, self.t_dim), nn.SiLU(),
                                  nn.Linear(self.t_dim, self.t_dim))
        self.stem = nn.Conv2d(shape[0], widths[0], 3, 1, 1)
        self.down_blocks = nn.ModuleList(
            TimeResBlock(widths[i], widths[i], self.t_dim) for i in range(n))
        self.downsample = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 3, 2, 1) for i in range(n))
        self.middle = TimeResBlock(widths[n], widths[n], self.t_dim)
        self.upsample = nn.ModuleList(
            nn.Conv2d(widths[i + 1], widths[i], 3, 1, 1) for i in range(n))
        self.up_blocks = nn.ModuleList(
            TimeResBlock(2 * widths[i], widths[i], self.t_dim) for i in range(n))
        self.out = nn.Sequential(nn.GroupNorm(8 if widths[0] % 8 == 0 else 1, widths[0]),
                                 nn.SiLU(), nn.Conv2d(widths[0], shape[0], 3, 1, 1))
        self.channels = channels

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.channels))
        h = self.stem(x)
        skips = []
        for block, down in zip(self.down_blocks, self.downsample, strict=True):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.middle(h, emb)
        for i in reversed(range(len(self.up_blocks))):
            skip = skips[i]
            h = self.upsample[i](F.interpolate(h, size=skip.shape[2:], mode="nearest"))
            h = self.up_blocks[i](torch.cat([h, skip], dim=1), emb)
        return self.out(h)  # type: ignore[no-any-return]


class DDPM(nn.Module):
    Config = DDPMConfig
    capabilities = frozenset({"sample"})

    def __init__(self, config: DDPMConfig, info: DatasetInfo) -> None:
        super().__init__()
        self.config, self.shape = config, tuple(int(s) for s in info.shape)
        self.denoiser = UNet(self.shape, config.channels)
        self.ema = copy.deepcopy(self.denoiser).requires_grad_(False)
        betas = torch.linspace(1e-4, 0.02, config.timesteps, dtype=torch.float64)
        self.register_buffer("alpha_bar", torch.cumprod(1 - betas, 0).float(), persistent=False)

    @classmethod
    def from_config(cls, config: DDPMConfig, info: DatasetInfo) -> DDPM:
        return cls(config, info)

    @classmethod
    def preset(cls, dataset: str) -> tuple[str, dict[str, dict[str, Any]]]:
        """Adam at 1e-3 (the model builds it; train.optimizer is not used), batch 64, 3000
        steps on every dataset (a few CPU minutes on digits)."""
        return "generative:ddpm", {"train": {"lr": 1e-3, "batch_size": 64, "steps": 3000}}

    # ------------------------------------------------------------------------- training
    def configure_optimizers(self, train: Any) -> dict[str, torch.optim.Optimizer]:
        return {"denoiser": torch.optim.Adam(self.denoiser.parameters(), lr=train.lr)}

    def training_step(self, x: torch.Tensor, ctx: StepContext, update: Any
                      ) -> dict[str, torch.Tensor]:
        x0 = x * 2 - 1
        eps = ctx.randn_local(x0)
        # t uniform on {0..T-1}: the normal CDF of global-batch noise, so N processes draw
        # the timesteps one process would
        u = 0.5 * (1 + torch.erf(ctx.randn_local(x0.new_zeros(x0.shape[0])) / 2**0.5))
        t = (u * self.config.timesteps).long().clamp_(0, self.config.timesteps - 1)
        abar = self.alpha_bar[t].view(-1, 1, 1, 1)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
        loss = F.mse_loss(self.denoiser(x_t, t), eps)
        update("denoiser", loss)
        with torch.no_grad():  # the EMA weights, after the update
            decay = self.config.ema_decay
            for ema, live in zip(self.ema.parameters(), self.denoiser.parameters(), strict=True):
                ema.lerp_(live.detach(), 1 - decay)
        return {"mse": loss.detach()}

    def forward(self, x: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        raise NotImplementedError("ddpm trains through training_step (EMA after each update)")

    # ----------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """DDIM (eta = 0) from x_T ~ N(0, I) with the EMA weights, in [0, 1]."""
        device = self.alpha_bar.device
        x = torch.randn((n, *self.shape), generator=generator).to(device)
        steps = torch.linspace(self.config.timesteps - 1, 0, self.config.sample_steps).round()
        steps = steps.long().tolist()
        for i, t in enumerate(steps):
            abar = self.alpha_bar[t]
            abar_prev = self.alpha_bar[steps[i + 1]] if i + 1 < len(steps) else x.new_tensor(1.0)
            eps = self.ema(x, torch.full((n,), t, device=device))
            x0 = ((x - (1 - abar).sqrt() * eps) / abar.sqrt()).clamp(-1, 1)
            x = abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps
        return ((x + 1) / 2).clamp(0, 1)
