"""Built-in generative plugin: two reference models that are not autoencoders, so that the
harness is exercised by what only samples: ``dcgan`` (a small DCGAN, discriminator then
generator each step, non-saturating loss) and ``ddpm`` (a small denoising diffusion model
with EMA weights and a DDIM sampler). Both declare only the ``sample`` capability and own
their training step; the protocols needing an encoder do not apply to them.

Registered through the public ``register_models`` hook with lazy factories, like a
third-party plugin: importing this module does not import torch.
"""

from __future__ import annotations

from typing import Any

from harness import hookimpl

#: (name, "module:class", description)
MODELS = (
    ("dcgan", "dcgan:DCGAN", "Small DCGAN (Radford et al. 2016): alternating D then G updates, "
     "non-saturating loss, Adam(0.5, 0.999); per-sample GroupNorm instead of batch norm"),
    ("ddpm", "ddpm:DDPM", "Small DDPM (Ho et al. 2020): eps-prediction U-Net, linear betas, EMA "
     "weights, DDIM sampler (Song et al. 2021) with model.sample_steps steps"),
)


@hookimpl
def register_models(register: Any) -> None:
    for name, target, description in MODELS:
        register(name, f"harness_plugins.generative.{target}", description)
