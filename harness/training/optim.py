"""The optimizers ``train.optimizer`` names.

Why a module of its own: the paper's optimizer is AdaBelief, and "AdaBelief" names several
algorithms depending on a library's flags; this is the one place that pins which one runs
(and ``tests/test_train.py`` checks it against the formula).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from harness.configuration.run_config import OPTIMIZERS, TrainConfig
from harness.errors import ConfigError


def _unknown(cfg: TrainConfig) -> ConfigError:
    return ConfigError(
        f"train.optimizer '{cfg.optimizer}' is not known; valid: {', '.join(OPTIMIZERS)}"
    )


def build_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: TrainConfig
) -> torch.optim.Optimizer:
    """The optimizer ``train.optimizer`` names.

    ``adabelief`` is ``pytorch_optimizer.AdaBelief`` set to be the plain algorithm of the
    paper, the same update as the reference's ``optax.adabelief(b1=0.9, b2=0.999, eps=1e-16,
    eps_root=1e-16)``: m = b1 m + (1-b1) g; s = b2 s + (1-b2)(g-m)^2 + eps;
    p -= lr * m_hat / (sqrt(s_hat) + eps) with Adam's bias corrections. The flags set are
    the ones whose library defaults are not that algorithm or could change under us:
    ``rectify=False`` (no RAdam-style warm-up), ``ams_bound=False``, ``weight_decay`` from the
    config (0 by default, the paper's) with ``weight_decouple=True`` so a non-zero value means
    AdamW-style decay, ``fixed_decay=False``, ``maximize=False``; eps 1e-16, betas (0.9, 0.999).
    ``tests/test_train.py`` checks the update against that formula step by step.
    """
    params = list(params)
    name = cfg.optimizer.lower()
    if name == "adabelief":
        from pytorch_optimizer import AdaBelief

        return AdaBelief(
            params,
            lr=cfg.lr,
            betas=(0.9, 0.999),
            eps=1e-16,
            weight_decay=cfg.weight_decay,
            weight_decouple=True,
            fixed_decay=False,
            rectify=False,
            ams_bound=False,
            maximize=False,
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise _unknown(cfg)


__all__ = ["OPTIMIZERS", "build_optimizer"]
