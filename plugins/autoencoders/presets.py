"""The paper's configuration per dataset (the configurations of its experiments), as presets.

A preset is the lowest layer of a run's configuration: ``harness run --model vrrae --dataset
fashion-mnist`` trains with L=100, k=16, batch 576, 20 epochs, lr 1e-3; ``--config`` and
``--set`` override any value. The host finds them through the model class's ``presets``
mapping (dataset name -> :class:`Preset`) and records the one used as ``run.preset`` in
config.toml (``autoencoders:mnist-like``).

ae/vae have no ``latent_dim``: their latent *is* the bottleneck, so they get ``k`` only; the
rrae family gets ``latent_dim`` (L) and ``k`` (the SVD rank). β is not part of a preset: the
paper picks it per model by a sweep (``harness benchmark beta-sweep``); the model's default
(1e-3) stays.

Bumps: the paper trains 2000 steps; the preset keeps the harness's 1000 so that the quick
start (``harness run --model vrrae``) stays about two minutes on two CPU cores. The
``paper`` budget of ``harness benchmark`` sets the 2000 steps.

Torch-free on purpose: the host reads presets while resolving a configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PLUGIN = "autoencoders"


@dataclass(frozen=True)
class Preset:
    """One named configuration: ``model`` values for the rrae family (L and k), ``train`` and
    ``data`` sections, and a note shown with it."""

    name: str
    latent_dim: int
    k: int
    train: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def sections(self, rank_reduction: bool) -> dict[str, dict[str, Any]]:
        """The config sections this preset sets for a model (``rank_reduction``: has an L)."""
        model: dict[str, Any] = {"k": self.k}
        if rank_reduction:
            model["latent_dim"] = self.latent_dim
        return {"model": model, "train": dict(self.train), "data": dict(self.data)}

    @property
    def qualified_name(self) -> str:
        return f"{PLUGIN}:{self.name}"


SYNTHETIC = Preset("synthetic", 200, 2, {"batch_size": 64, "lr": 1e-3, "steps": 1000},
                   note="the paper trains 2000 steps; 1000 keeps the quick start short")
MNIST_LIKE = Preset("mnist-like", 100, 16, {"batch_size": 576, "lr": 1e-3, "epochs": 20})
CIFAR10 = Preset("cifar10", 512, 60, {"batch_size": 64, "lr": 1e-4, "epochs": 5})
CELEBA = Preset("celeba", 512, 186, {"batch_size": 576, "lr": 1e-3, "epochs": 8},
                data={"size": 160})

#: dataset name -> preset (the datasets plugin's names)
PRESETS: dict[str, Preset] = {
    "bumps": SYNTHETIC,
    "mnist": MNIST_LIKE,
    "fashion-mnist": MNIST_LIKE,
    "cifar10": CIFAR10,
    "celeba": CELEBA,
}
