"""Encoders and decoders: the paper's convolutional pair (as the paper describes it) and an MLP pair
for vector data.

Every model of the family uses the same networks; only the latent size differs (k for
ae/vae, L for the rrae family), so the comparison between models is about the bottleneck.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def conv_out_size(size: int, n_layers: int) -> int:
    """Spatial size after ``n_layers`` Conv(k3, s2, p1): each one maps h to ceil(h / 2)."""
    for _ in range(n_layers):
        size = (size + 2 - 3) // 2 + 1
    return size


def decoder_geometry(size: int, n_up: int) -> tuple[int, int]:
    """``(h0, kernel)`` of the decoder for an image side ``size`` and ``n_up`` stride-2
    upsamplings: h0 undoes the upsamplings rounding up each time, and the final stride-1
    Conv2d of kernel ``1 + (h0 * 2**n_up - size)`` (padding 0) trims the surplus exactly.
    (28 -> (2, 5); 32 -> (2, 1); 64 -> (4, 1); 160 -> (10, 1) for four upsamplings.)
    """
    h0 = size
    for _ in range(n_up):
        h0 = math.ceil(h0 / 2)
    return h0, 1 + h0 * 2**n_up - size


class ConvEncoder(nn.Module):
    """Conv(C->32, k3, s2, p1), ReLU, Conv(32->64, k3, s2, p1), ReLU, flatten, Linear -> latent."""

    def __init__(
        self, shape: Sequence[int], latent: int, channels: Sequence[int] = (32, 64)
    ) -> None:
        super().__init__()
        c, h, w = shape
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(c, out, kernel_size=3, stride=2, padding=1), nn.ReLU()]
            c = out
        self.features = nn.Sequential(*layers, nn.Flatten())
        n = len(channels)
        self.linear = nn.Linear(c * conv_out_size(h, n) * conv_out_size(w, n), latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


class ConvDecoder(nn.Module):
    """Linear(latent -> c0·h0·w0), reshape, ConvTranspose(k3, s2, p1, op1) + ReLU per channel
    step (32->256->128->32->8 by default), then Conv2d(8->C, stride 1, padding 0) whose kernel
    trims the upsampled size to the image size. Identity output activation."""

    def __init__(
        self,
        shape: Sequence[int],
        latent: int,
        channels: Sequence[int] = (32, 256, 128, 32, 8),
    ) -> None:
        super().__init__()
        c_img, h, w = shape
        n_up = len(channels) - 1
        self.h0, kh = decoder_geometry(h, n_up)
        self.w0, kw = decoder_geometry(w, n_up)
        self.c0 = channels[0]
        self.linear = nn.Linear(latent, self.c0 * self.h0 * self.w0)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1),
                nn.ReLU(),
            ]
        layers.append(nn.Conv2d(channels[-1], c_img, kernel_size=(kh, kw), stride=1, padding=0))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.linear(z).view(-1, self.c0, self.h0, self.w0))


class MLPEncoder(nn.Module):
    """flatten, Linear(D -> hidden), ReLU, Linear(hidden -> hidden), ReLU, Linear -> latent."""

    def __init__(self, shape: Sequence[int], latent: int, hidden: int = 256) -> None:
        super().__init__()
        d = math.prod(shape)
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(d, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, latent),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    """The mirror of :class:`MLPEncoder`, identity output, reshaped to C×H×W."""

    def __init__(self, shape: Sequence[int], latent: int, hidden: int = 256) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.net = nn.Sequential(
            nn.Linear(latent, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, math.prod(shape)),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)


def resolve_arch(arch: str, shape: Sequence[int]) -> str:
    """``"auto"`` -> ``"mlp"`` for vector-like data (H == 1 or W == 1), else ``"conv"``."""
    if arch not in ("auto", "conv", "mlp"):
        raise ValueError(f"model.arch must be 'auto', 'conv' or 'mlp', got {arch!r}")
    if arch != "auto":
        return arch
    _, h, w = shape
    return "mlp" if h == 1 or w == 1 else "conv"


def build_networks(
    arch: str,
    shape: Sequence[int],
    latent: int,
    *,
    hidden: int = 256,
    enc_channels: Sequence[int] = (32, 64),
    dec_channels: Sequence[int] = (32, 256, 128, 32, 8),
) -> tuple[nn.Module, nn.Module]:
    """The encoder/decoder pair for data of ``shape`` (C, H, W) and a latent of size ``latent``."""
    if resolve_arch(arch, shape) == "mlp":
        return MLPEncoder(shape, latent, hidden), MLPDecoder(shape, latent, hidden)
    return ConvEncoder(shape, latent, enc_channels), ConvDecoder(shape, latent, dec_channels)
