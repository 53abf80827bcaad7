"""Built-in autoencoders plugin: AE, VAE, RRAE, VRRAE, the three ablations of the paper, and
the baselines IRMAE, LoRAE, RAE and WAE.

Registered through the public ``register_models`` hook with lazy ``"module:attr"`` factories,
exactly as a third-party plugin would: importing this module does not import torch, so
listing plugins stays fast. The paper's models and the table of all of them live in
:mod:`.models`, the baselines in :mod:`.baselines`, what both build on in :mod:`.base`, the
networks in :mod:`.networks`, the SVD bottleneck in :mod:`.svd`.
"""

from __future__ import annotations

from typing import Any

from harness import hookimpl

#: the plugin's one table of models: (name, class in .models or "module:class", description)
MODELS = (
    ("ae", "AE", "Diabolo autoencoder: k-dimensional latent, loss = relative rec error"),
    ("vae", "VAE", "VAE: mu, logvar = Linear(k->k) of a k-dim latent; rec + beta*KL"),
    ("rrae", "RRAE", "Rank reduction AE: truncated SVD (rank k) of the L×B latent matrix"),
    ("vrrae", "VRRAE", "Variational RRAE: SVD coefficients sampled with mu = A (identity)"),
    ("rrae-vae", "RRAEVAE", "Ablation RRAE + VAE: vrrae with a learnable mean map Linear(A)"),
    ("vae-identity", "VAEIdentity", "Ablation VAE (f = I): vae with mu = y"),
    ("vrrae-nokl", "VRRAENoKL", "Ablation VRRAE (beta = 0): vrrae sampling without the KL term"),
    ("irmae", "baselines:IRMAE", "IRMAE (Jing et al. 2020): n_linear bias-free k×k layers after the "
     "encoder; loss = rec"),
    ("lorae", "baselines:LoRAE", "LoRAE (Mazumder et al. 2024): one k×k layer W; rec + reg_weight*"
     "nuclear norm of W (model.penalty=codes: of the batch codes instead)"),
    ("rae", "baselines:RAE", "RAE (Ghosh et al. 2020): rec + beta*|z|^2/2 + reg_weight*(decoder L2 or "
     "gradient penalty, model.reg)"),
    ("wae", "baselines:WAE", "WAE-MMD (Tolstikhin et al. 2018): rec + reg_weight*MMD(codes, N(0,I)), "
     "inverse multiquadratic kernel"),
)


@hookimpl
def register_models(register: Any) -> None:
    for name, attr, description in MODELS:
        target = attr if ":" in attr else f"models:{attr}"
        register(name, f"harness_plugins.autoencoders.{target}", description)
