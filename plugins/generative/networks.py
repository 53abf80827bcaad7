"""The convolutional pieces the generative models share: how many times an image of a
dataset's shape is halved (:func:`levels`), the base grid a generator starts from, and a
residual block with a time embedding for the diffusion model's U-Net.

Every normalisation is per sample (GroupNorm), never over the batch: a batch statistic would
make N processes at B/N train differently from one process at B."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def levels(shape: tuple[int, int, int], most: int = 4) -> int:
    """How many stride-2 stages fit an image of ``shape`` (C, H, W) down to a grid of about
    4 pixels a side (8x8: 1, 28x28: 2, 32x32: 3, 64x64 and more: ``most``)."""
    side = min(shape[1], shape[2])
    return max(1, min(most, int(math.floor(math.log2(max(side, 8) / 4)))))


def base_grid(shape: tuple[int, int, int], n_levels: int) -> tuple[int, int]:
    """The grid a generator starts from: doubled ``n_levels`` times it covers (H, W)."""
    scale = 2**n_levels
    return math.ceil(shape[1] / scale), math.ceil(shape[2] / scale)


def groups(channels: int) -> int:
    """GroupNorm groups: 8 when the channels allow, else 1 (layer norm)."""
    return 8 if channels % 8 == 0 else 1


def fit(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Crop the centre of ``x`` to the (H, W) of ``shape`` (a base grid rounded up)."""
    h, w = shape[1], shape[2]
    top, left = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
    return x[:, :, top : top + h, left : left + w]


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The transformer's sinusoidal embedding of (float) timesteps, (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class TimeResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time embedding added between, and a skip."""

    def __init__(self, c_in: int, c_out: int, t_dim: int) -> None:
        super().__init__()
        # no bias: the time embedding's shift follows it
        self.norm1 = nn.GroupNorm(groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)
        self.time = nn.Linear(t_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(groups(c_out), c_out), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(t_emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)
