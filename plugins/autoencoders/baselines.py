"""The four baselines the field compares generative autoencoders against: ``irmae``,
``lorae``, ``rae`` and ``wae``.

Each reuses the paper family's encoder/decoder for the dataset (:mod:`.networks`, code size
``k`` like ``ae``), so that a difference between models comes from the latent regularisation
alone. The papers' losses, with B the *global* batch, z_i = codes, x_i = images:

* **irmae** (Jing, Zbontar, LeCun, "Implicit Rank-Minimizing Autoencoder", NeurIPS 2020,
  eq. 1 with the linear layers of section 3): z = W_l ... W_1 e(x), ``n_linear`` square
  matrices without bias or activation; loss = rec only.
* **lorae** (Mazumder et al., "Learning Low-Rank Latent Spaces with Simple Deterministic
  Autoencoder", WACV 2024, and the authors' code): z = W e(x) with one bias-free k×k linear
  layer; loss = rec + λ ||W||_*, the nuclear norm of that layer's weight, λ = 1e-5 (the
  authors' default). ``penalty = "codes"`` is a different regulariser, not LoRAE: the nuclear
  norm of the B×k matrix of the batch's codes (what this harness ran as ``lorae`` before;
  its committed baseline numbers used it with λ = 1e-3).
* **rae** (Ghosh et al., "From Variational to Deterministic Autoencoders", ICLR 2020, eq. 11):
  loss = rec + β (1/B) Σ_i ½||z_i||² + λ R, with R = ||θ_D||² (``reg = "l2"``, the decoder's
  weights) or R = (1/B) Σ_i ||∇_z Σ_j D(z_i)_j||² (``reg = "gp"``, the gradient penalty on the
  decoder, with the gradient of the summed outputs as in pythae's implementation).
* **wae** (Tolstikhin et al., "Wasserstein Auto-Encoders", ICLR 2018, algorithm 2 with the
  MMD of eq. 4): loss = rec + λ MMD_k(q(z), N(0, I)), the unbiased estimate over the batch
  and as many prior draws, with the inverse multiquadratic kernel k(x, y) = Σ_s C_s / (C_s +
  ||x - y||²), C_s = 2 k s for the scales s of section 4 (0.1 ... 10, prior variance 1).

The reconstruction term (``rec_loss``): ``"relative"`` (the default) is the paper family's
100 ||X̂ - X||_F / ||X||_F over the global batch, so every model of a comparison is trained
on the same data term; ``"squared"`` is the papers' own (1/B) Σ_i ||x̂_i - x_i||², the sum of
squared errors per sample averaged over the batch (IRMAE and LoRAE use a per-pixel mean,
which is this divided by the image size: the same minimiser, λ rescaled).

Distributed training: every batch-level term (the nuclear norm, the MMD) is computed on the
latents of *all* processes (``ctx.gather``), per-sample averages are global sums divided by
the global batch size, and the prior draws come from ``ctx.randn_global``; N processes at
batch B/N compute the loss of one process at batch B.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from harness import DatasetInfo, StepContext, api

from .base import AEConfig, ModelConfigError, _Autoencoder, relative_error

REC_LOSSES = ("relative", "squared")
RAE_REGS = ("l2", "gp")
#: what LoRAE's nuclear norm is taken of: the published layer weight, or the batch codes
LORAE_PENALTIES = ("weight", "codes")
#: the WAE paper's kernel scales (multiples of 2 k sigma^2, sigma^2 = 1 the prior variance)
WAE_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


# ----------------------------------------------------------------------------------- configs
@dataclass
class BaselineConfig(AEConfig):
    """What the four baselines share: ``rec_loss`` = ``relative`` (the family's, default) or
    ``squared`` (the papers' own sum of squared errors per sample)."""

    rec_loss: str = "relative"

    def validate(self) -> None:
        super().validate()
        if self.rec_loss not in REC_LOSSES:
            raise ModelConfigError(
                f"model.rec_loss must be one of {', '.join(REC_LOSSES)}, got {self.rec_loss!r}")
        weight = getattr(self, "reg_weight", 0.0)
        if weight < 0:
            raise ModelConfigError(f"model.reg_weight must be >= 0, got {weight}")


@dataclass
class IRMAEConfig(BaselineConfig):
    """``irmae``: ``n_linear`` k×k linear layers (no bias) after the encoder; the paper's 4."""

    n_linear: int = 4

    def validate(self) -> None:
        super().validate()
        if self.n_linear < 1:
            raise ModelConfigError(f"model.n_linear must be >= 1, got {self.n_linear}")


@dataclass
class LoRAEConfig(BaselineConfig):
    """``lorae``: ``reg_weight`` is λ of the nuclear norm (the authors' default 1e-5);
    ``penalty`` what it is taken of: ``weight`` (LoRAE as published: the linear layer's k×k
    weight) or ``codes`` (the batch's B×k code matrix: the harness's former, unpublished
    variant, kept so its committed numbers can be reproduced)."""

    reg_weight: float = 1e-5
    penalty: str = "weight"

    def validate(self) -> None:
        super().validate()
        if self.penalty not in LORAE_PENALTIES:
            raise ModelConfigError(f"model.penalty must be one of {', '.join(LORAE_PENALTIES)}"
                                   f" (weight: LoRAE as published), got {self.penalty!r}")


@dataclass
class RAEConfig(BaselineConfig):
    """``rae``: ``beta`` weighs ½||z||², ``reg_weight`` (λ) the decoder regulariser ``reg``
    (``l2`` or ``gp``); defaults 1e-4 and 1e-7 as in pythae's RAE configurations."""

    beta: float = 1e-4
    reg: str = "l2"
    reg_weight: float = 1e-7

    def validate(self) -> None:
        super().validate()
        if self.reg not in RAE_REGS:
            raise ModelConfigError(
                f"model.reg must be one of {', '.join(RAE_REGS)}, got {self.reg!r}")


@dataclass
class WAEConfig(BaselineConfig):
    """``wae``: ``reg_weight`` is λ of the MMD (the paper's 10 on MNIST), ``mmd_scales`` the
    inverse multiquadratic kernel's scales."""

    reg_weight: float = 10.0
    mmd_scales: list[float] = field(default_factory=lambda: list(WAE_SCALES))

    def validate(self) -> None:
        super().validate()
        if not self.mmd_scales or min(self.mmd_scales) <= 0:
            raise ModelConfigError(f"model.mmd_scales must be positive, got {self.mmd_scales}")


# ------------------------------------------------------------------------------ loss terms
def global_count(n_local: int, ctx: StepContext, like: torch.Tensor) -> torch.Tensor:
    """The global batch size (a float tensor, no gradient)."""
    return api.all_reduce_sum(torch.tensor(float(n_local), dtype=like.dtype, device=like.device))


def squared_error(x_hat: torch.Tensor, x: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    """``(1/B) Σ_i ||x̂_i - x_i||²`` over the global batch (the papers' reconstruction)."""
    total = ctx.all_reduce_sum((x_hat - x).pow(2).sum())
    return total / global_count(x.shape[0], ctx, total)


def nuclear_norm(z: torch.Tensor) -> torch.Tensor:
    """``||Z||_*``, the sum of the singular values of the matrix ``z``, in float64.
    ``svdvals``' gradient is ``U V^T``, stable under ties and zero singular values (no
    division by singular-value gaps, unlike a full SVD's backward)."""
    return torch.linalg.svdvals(z.to(torch.float64)).sum().to(z.dtype)


def imq_kernel(a: torch.Tensor, b: torch.Tensor, scales: Any) -> torch.Tensor:
    """``Σ_s C_s / (C_s + ||a_i - b_j||²)``, ``C_s = 2 d s`` (d = code size): the WAE
    paper's inverse multiquadratic kernel summed over its scales."""
    d2 = (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)
    base = 2.0 * a.shape[1]
    return sum(base * s / (base * s + d2) for s in scales)  # type: ignore[return-value]


def mmd_imq(z: torch.Tensor, prior: torch.Tensor, scales: Any) -> torch.Tensor:
    """The unbiased MMD² estimate between the rows of ``z`` and of ``prior`` (both n×d):
    off-diagonal means within each sample, minus twice the mean of the cross kernel."""
    n = z.shape[0]
    if n < 2:
        raise ValueError("the MMD estimate needs a global batch of at least 2 samples")
    k_zz, k_pp, k_zp = (imq_kernel(z, z, scales), imq_kernel(prior, prior, scales),
                        imq_kernel(z, prior, scales))
    off = n * (n - 1)
    return ((k_zz.sum() - k_zz.diagonal().sum()) / off
            + (k_pp.sum() - k_pp.diagonal().sum()) / off - 2.0 * k_zp.mean())


def decoder_gradient_penalty(decoder: nn.Module, z: torch.Tensor, ctx: StepContext
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x̂, (1/B) Σ_i ||∇_{z_i} Σ_j D(z_i)_j||²)`` over the global batch; the gradient keeps
    its graph, so the penalty trains the decoder (and the encoder through z). Also works
    when the loss is evaluated without gradients (the penalty needs one backward pass)."""
    training = torch.is_grad_enabled()
    with torch.enable_grad():
        if not z.requires_grad:
            z = z.detach().requires_grad_(True)
        x_hat = decoder(z)
        (grad,) = torch.autograd.grad(x_hat.sum(), z, create_graph=training)
    if not training:
        x_hat, grad = x_hat.detach(), grad.detach()
    total = ctx.all_reduce_sum(grad.pow(2).sum())
    return x_hat, total / global_count(z.shape[0], ctx, total)


def decoder_l2(decoder: nn.Module) -> torch.Tensor:
    """``||θ_D||²``: the squared norm of every decoder parameter (weights and biases)."""
    return sum(p.pow(2).sum() for p in decoder.parameters())  # type: ignore[return-value]


# ----------------------------------------------------------------------------------- models
class _Baseline(_Autoencoder):
    """A k-dimensional code ``z = latent_map(e(x))``, decoded by the family's decoder."""

    Config: ClassVar[type] = BaselineConfig
    n_maps: ClassVar[int] = 0  # linear layers between encoder and decoder

    def __init__(self, config: Any, info: DatasetInfo) -> None:
        super().__init__(config, info)
        k, n = config.k, self._n_maps()
        self.latent_map = nn.Sequential(*[nn.Linear(k, k, bias=False) for _ in range(n)])

    def _n_maps(self) -> int:
        return self.n_maps

    def reconstruction(self, x_hat: torch.Tensor, x: torch.Tensor,
                       ctx: StepContext) -> torch.Tensor:
        """The ``rec_loss`` term chosen in the config."""
        if self.config.rec_loss == "squared":
            return squared_error(x_hat, x, ctx)
        return relative_error(x_hat, x, ctx)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.latent_map(self.encoder(x))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(codes)

    def forward(self, x: torch.Tensor, ctx: StepContext | None = None) -> dict[str, torch.Tensor]:
        ctx = ctx or StepContext()
        z = self.encode(x)
        rec = self.reconstruction(self.decoder(z), x, ctx)
        return {"total": rec, "rec": rec}


class IRMAE(_Baseline):
    """Implicit Rank-Minimizing Autoencoder (Jing, Zbontar, LeCun, NeurIPS 2020):
    z = W_l ... W_1 e(x) with ``n_linear`` = l bias-free k×k layers; loss = rec (eq. 1). The
    extra linear layers lower the effective rank of the codes through gradient descent alone."""

    name = "irmae"
    Config = IRMAEConfig

    def _n_maps(self) -> int:
        return int(self.config.n_linear)


class LoRAE(_Baseline):
    """Low-Rank Autoencoder (Mazumder et al., WACV 2024): z = W e(x), one bias-free k×k layer;
    loss = rec + λ ||W||_*, the nuclear norm of that layer's weight (the authors' code:
    ``torch.linalg.norm(weight, ord="nuc")``, λ 1e-5). ``penalty = "codes"``: λ ||Z||_* of
    the *global* B×k code matrix instead (not LoRAE; the harness's former variant)."""

    name = "lorae"
    Config = LoRAEConfig
    n_maps = 1

    def forward(self, x: torch.Tensor, ctx: StepContext | None = None) -> dict[str, torch.Tensor]:
        ctx = ctx or StepContext()
        z = self.encode(x)
        rec = self.reconstruction(self.decoder(z), x, ctx)
        if self.config.penalty == "codes":
            nuc = nuclear_norm(ctx.gather(z))
        else:  # the same on every process: the weight is replicated
            nuc = nuclear_norm(self.latent_map[0].weight)
        weight = float(self.config.reg_weight)
        return {"total": rec + weight * nuc if weight else rec, "rec": rec, "nuclear": nuc}


class RAE(_Baseline):
    """Regularized Autoencoder (Ghosh et al., ICLR 2020, eq. 11): loss = rec +
    β (1/B) Σ ½||z_i||² + λ R(D), R = ||θ_D||² (``reg = "l2"``) or the gradient penalty
    (1/B) Σ ||∇_z Σ_j D(z_i)_j||² (``reg = "gp"``). Deterministic: samples come from an
    ex-post density fitted to the codes (the random-generation protocol's ``gmm`` or
    ``gaussian`` sampler)."""

    name = "rae"
    Config = RAEConfig

    def forward(self, x: torch.Tensor, ctx: StepContext | None = None) -> dict[str, torch.Tensor]:
        ctx = ctx or StepContext()
        z = self.encode(x)
        if self.config.reg == "gp":
            x_hat, reg = decoder_gradient_penalty(self.decoder, z, ctx)
        else:
            x_hat, reg = self.decoder(z), decoder_l2(self.decoder)
        rec = self.reconstruction(x_hat, x, ctx)
        half_sq = ctx.all_reduce_sum(0.5 * z.pow(2).sum())
        z_term = half_sq / global_count(x.shape[0], ctx, half_sq)
        total = rec + self.config.beta * z_term + self.config.reg_weight * reg
        return {"total": total, "rec": rec, "z_norm": z_term, "reg": reg}


class WAE(_Baseline):
    """Wasserstein Auto-Encoder with the MMD penalty (Tolstikhin et al., ICLR 2018, algorithm 2,
    eq. 4): loss = rec + λ MMD²(codes, N(0, I) draws), the unbiased estimate on the *global*
    batch with the inverse multiquadratic kernel at the paper's scales. Samples: its prior,
    N(0, I) (``eval.random-generation.sampler = "prior"``), or an ex-post density."""

    name = "wae"
    Config = WAEConfig

    @property
    def has_prior(self) -> bool:
        return float(self.config.reg_weight) > 0

    def forward(self, x: torch.Tensor, ctx: StepContext | None = None) -> dict[str, torch.Tensor]:
        ctx = ctx or StepContext()
        z = self.encode(x)
        rec = self.reconstruction(self.decoder(z), x, ctx)
        z_all = ctx.gather(z)
        prior = ctx.randn_global(z_all.shape, like=z_all)
        mmd = mmd_imq(z_all, prior, self.config.mmd_scales)
        weight = float(self.config.reg_weight)
        return {"total": rec + weight * mmd if weight else rec, "rec": rec, "mmd": mmd}


__all__ = [
    "IRMAE", "LoRAE", "RAE", "WAE", "IRMAEConfig", "LoRAEConfig", "RAEConfig", "WAEConfig",
    "LORAE_PENALTIES",
    "decoder_gradient_penalty", "decoder_l2", "imq_kernel", "mmd_imq", "nuclear_norm",
    "squared_error",
]
