"""What every autoencoder of this plugin builds on: the ``model`` section's base
(:class:`AEConfig`) and its error, the reconstruction error, and :class:`_Autoencoder`
(config, networks, save/load).

Why a module of its own: the paper's models (:mod:`.models`) and the baselines
(:mod:`.baselines`) both stand on it, and :mod:`.models` gathers all eleven into the plugin's
table; so this base imports neither of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from harness import ConfigError, DatasetInfo, StepContext, api

from .networks import build_networks, resolve_arch


class ModelConfigError(ConfigError, ValueError):
    """A bad ``model`` section. Both a :class:`harness.ConfigError` (the CLI prints it
    without a traceback) and a ``ValueError`` (what Python callers expect)."""


#: how the KL enters the loss. ``sum``: summed over the global batch (the paper's): the
#: reconstruction term is a batch ratio, so the effective β grows with the batch size B.
#: ``mean``: divided by B, so β means the same at any batch size (β_mean = B β_sum).
KL_REDUCTIONS = ("sum", "mean")


# ----------------------------------------------------------------------------------- configs
@dataclass
class AEConfig:
    """The ``model`` section of ``ae``. ``k``: the bottleneck (the latent size for ae/vae)."""

    k: int = 2
    arch: str = "auto"  # conv | mlp | auto (mlp for vector-like data: H == 1 or W == 1)
    hidden: int = 256  # width of the MLP variant's hidden layers
    enc_channels: list[int] = field(default_factory=lambda: [32, 64])
    dec_channels: list[int] = field(default_factory=lambda: [32, 256, 128, 32, 8])

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse impossible values, naming the key. Runs once, when the config is built
        (``__post_init__``), whoever builds it: the host from a run's ``model`` section, or
        Python code."""
        if self.k < 1:
            raise ModelConfigError(f"model.k must be >= 1, got {self.k}")
        try:
            resolve_arch(self.arch, (1, 2, 2))
        except ValueError as exc:
            raise ModelConfigError(str(exc)) from None
        if self.hidden < 1:
            raise ModelConfigError(f"model.hidden must be >= 1, got {self.hidden}")
        if not self.enc_channels or min(self.enc_channels) < 1:
            raise ModelConfigError(f"model.enc_channels must be positive, got {self.enc_channels}")
        if len(self.dec_channels) < 2 or min(self.dec_channels) < 1:
            raise ModelConfigError(
                "model.dec_channels needs >= 2 positive entries (reshape channels, then one per "
                f"upsampling), got {self.dec_channels}"
            )
        beta = getattr(self, "beta", 0.0)
        if beta < 0:
            raise ModelConfigError(f"model.beta must be >= 0, got {beta}")
        reduction = getattr(self, "kl_reduction", "sum")
        if reduction not in KL_REDUCTIONS:
            raise ModelConfigError(f"model.kl_reduction must be one of {', '.join(KL_REDUCTIONS)}"
                                   f" (sum: the paper's; mean: per sample), got {reduction!r}")



# ----------------------------------------------------------------------------- shared parts
def relative_error(x_hat: torch.Tensor, x: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    """``100 * ||X_hat - X||_F / ||X||_F`` over the *global* batch (rec, in percent: docs/maths.md).

    The two squared norms are summed over processes; only the error needs gradients.
    """
    err = ctx.all_reduce_sum((x_hat - x).pow(2).sum())
    ref = api.all_reduce_sum(x.detach().pow(2).sum())
    return 100.0 * torch.sqrt(err / ref)



class _Autoencoder(nn.Module):
    """What every model of the family shares: config, networks, rec, save/load."""

    name: ClassVar[str]
    Config: ClassVar[type] = AEConfig
    variational: ClassVar[bool] = False

    def __init__(self, config: Any, info: DatasetInfo) -> None:
        super().__init__()
        self.config = config
        self.info = info
        self.encoder, self.decoder = build_networks(
            config.arch,
            info.shape,
            self._latent_size(),
            hidden=config.hidden,
            enc_channels=config.enc_channels,
            dec_channels=config.dec_channels,
        )

    def _latent_size(self) -> int:
        return int(self.config.k)

    @classmethod
    def preset(cls, dataset: str) -> tuple[str, dict[str, dict[str, Any]]] | None:
        """The paper's configuration for ``dataset`` (:mod:`.presets`): ``(name, sections)``,
        or None for a dataset the paper does not train on. The host applies it below
        ``--config`` and ``--set``."""
        from .presets import PRESETS

        found = PRESETS.get(dataset)
        if found is None:
            return None
        has_latent_dim = any(f.name == "latent_dim" for f in fields(cls.Config))
        return found.qualified_name, found.sections(has_latent_dim)

    @classmethod
    def from_config(cls, config: Any, info: DatasetInfo) -> _Autoencoder:
        """Build the model for a dataset described by ``info`` (only ``info.shape`` is used)."""
        if not isinstance(config, cls.Config):
            raise TypeError(f"{cls.__name__} expects a {cls.Config.__name__}, got {config!r}")
        return cls(config, info)

    # ------------------------------------------------------------------ scripting names
    @property
    def k(self) -> int:
        """The bottleneck: the size of the codes."""
        return int(self.config.k)

    @property
    def latent_dim(self) -> int:
        """The encoder output size: L for the rrae family, k for ae/vae."""
        return self._latent_size()

    @property
    def beta(self) -> float:
        """The KL weight (0 for models without a KL term)."""
        return float(getattr(self.config, "beta", 0.0))

    def _kl_per(self, n_global: Any) -> Any:
        """What the summed KL is divided by: 1 (``kl_reduction = "sum"``) or the global batch
        size (``"mean"``)."""
        return n_global if getattr(self.config, "kl_reduction", "sum") == "mean" else 1.0

    @property
    def has_prior(self) -> bool:
        """Whether training pulls the codes towards N(0, I), so that decoding prior draws
        makes sense (the random-generation protocol's ``prior`` sampler): the variational
        models with a non-zero KL weight (and ``wae``). Deterministic models have none."""
        return self.variational and self.beta > 0

    @property
    def bottleneck_dim(self) -> int:
        return self.k

    @property
    def min_batch_size(self) -> int:
        return 1

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------------ evaluation
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction; by construction ``decode(encode(x))``."""
        return self.decode(self.encode(x))

    def calibrate(self, batches: Iterable[torch.Tensor], ctx: StepContext | None = None) -> None:
        """Nothing to calibrate for ae/vae models."""

    # ----------------------------------------------------------------------- save / load
    def save_pretrained(self, path: str | Path) -> Path:
        """Write the model into directory ``path`` in the host's model format
        (:func:`harness.api.save_model`: ``model.safetensors`` with the parameters and
        buffers, e.g. the inference basis, and ``model_config.json``). No pickle: both files
        are safe to load from an untrusted source. A run directory holds the same files."""
        return Path(api.save_model(path, self, name=self.name, config=self.config,
                                   info=self.info))

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        map_location: str | torch.device = "cpu",
        info: DatasetInfo | None = None,
    ) -> Any:
        """Rebuild a model of this class written by :meth:`save_pretrained` (or a run
        directory); a directory holding another model is refused (any model of the plugin:
        :func:`harness_plugins.autoencoders.models.load_pretrained`). ``info`` is needed only
        when ``model_config.json`` does not record the data shape (files written by other
        tools with just ``model`` and ``config``)."""
        path = Path(path)
        doc, state = api.read_model_files(path, device=str(map_location))
        if doc.get("model") != cls.name:
            raise ValueError(f"{path} holds a '{doc.get('model')}' model, not a '{cls.name}' "
                             "model")
        return cls.from_files(path, doc, state, map_location, info)

    @classmethod
    def from_files(cls, path: Path, doc: dict[str, Any], state: dict[str, torch.Tensor],
                   map_location: str | torch.device = "cpu",
                   info: DatasetInfo | None = None) -> Any:  # fmt: skip
        """This class's model from the files of the model directory ``path``, as
        :func:`harness.api.read_model_files` read them: its config built and checked by the
        host, as for a run's ``[model]`` section, and its weights loaded."""
        config = api.build_config(cls.Config, doc["config"], "model",
                                  owner=f"model '{cls.name}'")  # fmt: skip
        if info is None:
            raw = doc.get("info")
            if raw is None:
                raise ValueError(
                    f"{path} does not record the data shape ('info' in model_config.json); "
                    "pass info=DatasetInfo(name, (C, H, W)) of the dataset the model was "
                    "trained on"
                )
            info = DatasetInfo(
                name=raw["name"], shape=tuple(raw["shape"]), num_classes=raw.get("num_classes")
            )
        model = cls.from_config(config, info)
        model.load_state_dict(state)
        return model.to(map_location)
