"""The seven models of the paper (docs/maths.md): ``ae``, ``vae``, ``rrae``, ``vrrae``,
``rrae-vae``, ``vae-identity`` and ``vrrae-nokl``; and the plugin's table of all its models
(:data:`MODELS`, with the four baselines ``irmae``, ``lorae``, ``rae`` and ``wae`` of
:mod:`.baselines`, docs/models.md) and :func:`load_pretrained`, which loads any of them. What
every model shares (the config base, the reconstruction error, save/load) is in :mod:`.base`.

Each is a ``torch.nn.Module`` following :class:`harness.api.GenerativeModel`. Two families:

* **ae / vae / vae-identity**: the encoder outputs a k-dimensional latent directly.
* **rrae / vrrae / rrae-vae / vrrae-nokl**: the encoder outputs an L-dimensional latent; the
  bottleneck is the *rank* k of the L×B latent matrix of the batch (a truncated SVD, see
  :mod:`.svd`). After training, :meth:`RRAE.calibrate` stores one inference basis
  U (L×k) built from the whole training set; evaluation then uses ``c = U^T y`` and ``U c``.

Distributed training (see :class:`harness.api.StepContext`): ``forward`` returns the loss of the
*global* batch, identical on every process. The rrae family gathers the latents of all
processes (with gradients) before the SVD, because the SVD of a local batch is a different
function; every global sum (squared error, KL of local codes) goes through
``ctx.all_reduce_sum``; noise comes from ``ctx.randn_global``/``ctx.randn_local``. With one
process all of these are identities.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from harness import DatasetInfo, StepContext, api

from . import MODELS as _TABLE
from . import baselines
from .base import AEConfig, ModelConfigError, _Autoencoder, relative_error
from .svd import METHODS, TruncatedSVD, basis_from_gram, truncated_svd


# ----------------------------------------------------------------------------------- configs
@dataclass
class VAEConfig(AEConfig):
    """``vae`` / ``vae-identity``: ``beta`` scales the KL term, ``kl_reduction`` says over
    what (:data:`.base.KL_REDUCTIONS`)."""

    beta: float = 1e-3
    kl_reduction: str = "sum"


@dataclass
class RRAEConfig(AEConfig):
    """``rrae``: ``latent_dim`` is L, the size of the encoder output; k is the SVD rank.

    The SVD needs a global batch of at least k samples: the trainer refuses smaller ones
    (``min_batch_size``) and the loss raises if one reaches it.
    """

    latent_dim: int = 200
    svd_method: str = "auto"  # auto | gram | svd (see harness_plugins.autoencoders.svd)

    def validate(self) -> None:
        super().validate()
        if self.latent_dim < self.k:
            raise ModelConfigError(
                f"model.latent_dim (L={self.latent_dim}) must be >= model.k ({self.k}): the "
                "bottleneck is a rank-k truncation of the L×B latent matrix"
            )
        if self.svd_method not in METHODS:
            raise ModelConfigError(
                f"model.svd_method must be one of {', '.join(METHODS)}, got {self.svd_method!r}"
            )


@dataclass
class VRRAEConfig(RRAEConfig):
    """``vrrae`` / ``rrae-vae``: ``beta`` scales the KL term, ``kl_reduction`` says over
    what (:data:`.base.KL_REDUCTIONS`)."""

    beta: float = 1e-3
    kl_reduction: str = "sum"


@dataclass
class VRRAENoKLConfig(RRAEConfig):
    """``vrrae-nokl``: vrrae with beta = 0 (the field exists so sweeps can set it, to 0)."""

    beta: float = 0.0

    def validate(self) -> None:
        super().validate()
        if self.beta != 0:
            raise ModelConfigError(
                f"model 'vrrae-nokl' is vrrae with beta = 0, got model.beta={self.beta}; "
                "use model 'vrrae' for a non-zero beta"
            )


# ----------------------------------------------------------------------------- shared parts

def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``sum -0.5 * (1 + logvar - mu^2 - exp(logvar))`` over every entry (summed over the
    batch, not averaged: docs/maths.md)."""
    return -0.5 * torch.sum(1.0 + logvar - mu.pow(2) - logvar.exp())




def _losses(rec: torch.Tensor, kl: torch.Tensor | None, beta: float,
            per: Any = 1.0) -> dict[str, torch.Tensor]:  # fmt: skip
    """``{"total", "rec"[, "kl"]}``: total = rec + beta * kl / per (``per``: 1, or the global
    batch size for ``kl_reduction = "mean"``); ``kl`` is reported summed either way. With beta
    = 0 the total is rec itself (never 0 * kl, which would turn an infinite KL into a NaN
    total)."""
    out = {"total": rec + beta * kl / per if kl is not None and beta else rec, "rec": rec}
    if kl is not None:
        out["kl"] = kl
    return out


# ------------------------------------------------------------------------------ ae / vae
class AE(_Autoencoder):
    """Diabolo autoencoder: z = e(x) in R^k, loss = rec."""

    name = "ae"
    Config = AEConfig

    def forward(self, x: torch.Tensor, ctx: StepContext | None = None) -> dict[str, torch.Tensor]:
        ctx = ctx or StepContext()
        rec = relative_error(self.decoder(self.encoder(x)), x, ctx)
        return _losses(rec, None, 0.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(codes)


class VAE(_Autoencoder):
    """VAE: mu and logvar are Linear(k->k) maps of y = e(x) in R^k; z = mu + eps*exp(logvar/2).
    Subclasses replace the mean map by the identity (``vae-identity``)."""

    name = "vae"
    Config = VAEConfig
    variational = True
    identity_mean: ClassVar[bool] = False

    def __init__(self, config: Any, info: DatasetInfo) -> None:
        super().__init__(config, info)
        k = config.k
        self.mu_map: nn.Module = nn.Identity() if self.identity_mean else nn.Linear(k, k)
        self.logvar_map = nn.Linear(k, k)

    def forward(self, x: torch.Tensor, ctx: StepContext | None = None) -> dict[str, torch.Tensor]:
        ctx = ctx or StepContext()
        y = self.encoder(x)
        mu, logvar = self.mu_map(y), self.logvar_map(y)
        z = mu + ctx.randn_local(mu) * torch.exp(0.5 * logvar)
        rec = relative_error(self.decoder(z), x, ctx)
        kl = ctx.all_reduce_sum(gaussian_kl(mu, logvar))
        return _losses(rec, kl, self.beta, self._kl_per(
            api.all_reduce_sum(torch.tensor(float(x.shape[0]), dtype=kl.dtype, device=kl.device))))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean."""
        return self.mu_map(self.encoder(x))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(codes)


class VAEIdentity(VAE):
    """Ablation "VAE (f = I)": mu = y, logvar = Linear(k->k)(y)."""

    name = "vae-identity"
    identity_mean = True


# --------------------------------------------------------------------------- rrae family
class LatentStep(NamedTuple):
    """Everything the rrae-family latent step computes (exposed for tests and analysis)."""

    svd: TruncatedSVD
    coefficients: torch.Tensor  # B×k, A^T
    z: torch.Tensor  # B×k, the decoded codes (= coefficients for rrae)
    decoder_input: torch.Tensor  # B×L, rows (U_k z_i)^T
    mu: torch.Tensor | None
    logvar: torch.Tensor | None
    kl: torch.Tensor | None


class RRAE(_Autoencoder):
    """RRAE: Y = U S V^T of the global L×B latent matrix, A = S_k V_k^T, decoder input U_k A.

    Variational subclasses sample the coefficients (``vrrae``: mu = A; ``rrae-vae``:
    mu = Linear(A)). Evaluation uses the stored inference basis (see :meth:`calibrate`).
    """

    name = "rrae"
    Config = RRAEConfig
    mean_map: ClassVar[bool] = False  # rrae-vae: a learnable Linear(k->k) for mu

    def __init__(self, config: Any, info: DatasetInfo) -> None:
        super().__init__(config, info)
        k, latent = config.k, config.latent_dim
        if self.variational:
            self.mu_map: nn.Module = nn.Linear(k, k) if self.mean_map else nn.Identity()
            self.logvar_map = nn.Linear(k, k)
        # The inference basis lives in the state dict, so it is saved with the weights.
        self.register_buffer("basis", torch.zeros(latent, k))
        self.register_buffer("basis_singular_values", torch.zeros(k))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))

    def _latent_size(self) -> int:
        return int(self.config.latent_dim)

    @property
    def min_batch_size(self) -> int:
        return self.k

    @property
    def min_batch_reason(self) -> str:
        return (f"the truncated SVD of the latent batch needs at least model.k={self.k} "
                "columns; lower model.k or raise the batch")

    @property
    def svd_method(self) -> str:
        return "gram" if self.config.svd_method == "auto" else str(self.config.svd_method)

    def bottleneck(self, latents: torch.Tensor) -> TruncatedSVD:
        """Truncated SVD of the L×B matrix whose columns are the rows of ``latents`` (B×L)."""
        return truncated_svd(latents.mT, self.k, self.svd_method)

    def forward(self, x: torch.Tensor, ctx: StepContext | None = None) -> dict[str, torch.Tensor]:
        ctx = ctx or StepContext()
        n_local = x.shape[0]
        y_global = ctx.gather(self.encoder(x))  # B×L, every process's latents, with grad
        if y_global.shape[0] < self.k:
            raise ValueError(
                f"model '{self.name}': global batch size {y_global.shape[0]} is smaller than "
                f"k={self.k}; the truncated SVD needs at least k samples per step. Use "
                f"train.batch_size >= {self.k} and drop or merge the last partial batch."
            )
        step = self.latent_step(y_global, ctx)
        dec_in = step.decoder_input[ctx.local_slice(n_local)]  # this process's rows
        rec = relative_error(self.decoder(dec_in), x, ctx)
        return _losses(rec, step.kl, self.beta, self._kl_per(y_global.shape[0]))

    def latent_step(self, y_global: torch.Tensor, ctx: StepContext) -> LatentStep:
        """The training-time latent step on the global B×L latents (the table of docs/maths.md): SVD,
        coefficients, sampling for the variational models, decoder input ``(U_k z_i)^T``."""
        svd = self.bottleneck(y_global)
        coeffs = svd.coefficients.mT  # B×k, row i = a_i
        mu = logvar = kl = None
        z = coeffs
        if self.variational:
            mu, logvar = self.mu_map(coeffs), self.logvar_map(coeffs)
            z = mu + ctx.randn_global(mu.shape, like=mu) * torch.exp(0.5 * logvar)
            kl = gaussian_kl(mu, logvar)  # from global tensors: already identical everywhere
        return LatentStep(svd, coeffs, z, z @ svd.U.mT, mu, logvar, kl)

    # ------------------------------------------------------------------- inference basis
    @torch.no_grad()
    def calibrate(self, batches: Iterable[torch.Tensor], ctx: StepContext | None = None) -> None:
        """Build and store the inference basis from the whole training set.

        Streams the batches (this process's share), accumulating the L×L Gram matrix
        ``C = sum_b Y_b Y_b^T`` in float64, sums it over processes, and keeps its top-k
        eigenvectors: the left singular vectors of the full training-set latent matrix,
        without ever holding the N latents (O(L^2) memory). Same result whatever the batch
        size or the number of processes. Signs: largest entry of each column positive.
        """
        was_training = self.training
        self.eval()
        device = self._device()
        gram = torch.zeros(self.latent_dim, self.latent_dim, dtype=torch.float64, device=device)
        count = torch.zeros((), dtype=torch.float64, device=device)
        for batch in batches:
            y = self.encoder(api.images_of(batch).to(device)).to(torch.float64)
            gram += y.mT @ y
            count += y.shape[0]
        gram = api.all_reduce_sum(gram)
        count = api.all_reduce_sum(count)
        if int(count.item()) < self.k:
            raise ValueError(
                f"model '{self.name}': calibration saw {int(count.item())} samples, fewer than "
                f"k={self.k}; the inference basis needs at least k training samples"
            )
        basis, sv = basis_from_gram(gram, self.k)
        self.basis.copy_(basis.to(self.basis.dtype))
        self.basis_singular_values.copy_(sv.to(self.basis.dtype))
        self.calibrated.fill_(True)
        self.train(was_training)

    def _require_basis(self) -> None:
        if not bool(self.calibrated):
            raise RuntimeError(
                f"model '{self.name}' was not calibrated: call model.calibrate(train_batches) "
                "after training to build the inference basis (the trainer does this), or load "
                "a calibrated checkpoint"
            )

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """``c = U^T y`` (B×k) with the stored basis."""
        self._require_basis()
        return self.encoder(x) @ self.basis

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The codes decoded through U: c = U^T y (rrae, vrrae: z = mu = c; rrae-vae: mu(c))."""
        c = self.coefficients(x)
        return self.mu_map(c) if self.variational else c

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Images from codes: the decoder of ``U c``."""
        self._require_basis()
        return self.decoder(codes @ self.basis.mT)


class VRRAE(RRAE):
    """VRRAE: mu = A (identity), logvar = Linear(k->k)(a_i), z_i = mu_i + eps_i*exp(logvar_i/2),
    decoder input U_k z_i; loss = rec + beta*KL (KL mean part = sum of s_j^2, docs/maths.md)."""

    name = "vrrae"
    Config = VRRAEConfig
    variational = True


class RRAEVAE(RRAE):
    """Ablation "RRAE + VAE": as vrrae, but mu = Linear(k->k)(a_i), a learnable map."""

    name = "rrae-vae"
    Config = VRRAEConfig
    variational = True
    mean_map = True


class VRRAENoKL(RRAE):
    """Ablation "VRRAE (beta = 0)": vrrae's sampling, loss = rec (KL reported, not used)."""

    name = "vrrae-nokl"
    Config = VRRAENoKLConfig
    variational = True


#: the modules the plugin's table of models names (``"Class"``: this one, ``"baselines:Class"``)
_MODULES = {"": sys.modules[__name__], "baselines": baselines}
#: name -> class, from the plugin's one table of models (``harness_plugins.autoencoders``)
MODELS: dict[str, type[_Autoencoder]] = {
    name: getattr(_MODULES[attr.rpartition(":")[0]], attr.rpartition(":")[2])
    for name, attr, _ in _TABLE}


def load_pretrained(
    path: str | Path, map_location: str | torch.device = "cpu", info: DatasetInfo | None = None
) -> Any:
    """Load any model of this plugin saved with ``save_pretrained``: the class its
    ``model_config.json`` names (:data:`MODELS`), built as
    :meth:`~harness_plugins.autoencoders.base._Autoencoder.from_files` says."""
    path = Path(path)
    doc, state = api.read_model_files(path, device=str(map_location))
    name = doc.get("model")
    target = MODELS.get(name) if isinstance(name, str) else None
    if target is None:
        raise ValueError(f"{path}: unknown model {name!r}; known: {sorted(MODELS)}")
    return target.from_files(path, doc, state, map_location, info)


__all__ = [
    "AE",
    "MODELS",
    "RRAE",
    "RRAEVAE",
    "VAE",
    "VRRAE",
    "AEConfig",
    "ModelConfigError",
    "RRAEConfig",
    "VAEConfig",
    "VAEIdentity",
    "VRRAEConfig",
    "VRRAENoKL",
    "VRRAENoKLConfig",
    "load_pretrained",
    "gaussian_kl",
    "relative_error",
]
