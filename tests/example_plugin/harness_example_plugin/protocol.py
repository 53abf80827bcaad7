"""``latent-traversal``: the smallest protocol that follows
:class:`harness.api.EvaluationProtocol`.

Walk each of the first ``n_dims`` bottleneck dimensions from ``-span`` to ``+span`` standard
deviations around the mean training code (the other dimensions held at the mean), decode
every point, and report how much consecutive images differ (a smoothness diagnostic). The
decoded images are ``"samples"``: every metric scoring samples (e.g. ``mean-intensity``)
scores them too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.api import EvalContext, ProtocolOutput
from harness.errors import ConfigError


@dataclass
class LatentTraversalConfig:
    """The ``eval.latent-traversal`` section: ``--set eval.latent-traversal.n_steps=9``."""

    n_dims: int = 2  # dimensions walked (at most the bottleneck size)
    n_steps: int = 7  # points per dimension, endpoints included
    span: float = 2.0  # how far to walk, in standard deviations of the training codes

    def __post_init__(self) -> None:
        if self.n_dims < 1 or self.n_steps < 2 or not self.span > 0:
            raise ConfigError("eval.latent-traversal needs n_dims >= 1, n_steps >= 2 and "
                              f"span > 0, got {self}")


class LatentTraversal:
    kind = "samples"
    version = 1
    Config = LatentTraversalConfig

    def __init__(self, config: LatentTraversalConfig) -> None:
        self.config = config

    def run(self, ctx: EvalContext) -> ProtocolOutput:
        cfg = self.config
        codes = ctx.encode_split("train")  # shared with other protocols: encoded once
        mean, std = codes.mean(0), codes.std(0)
        dims = min(cfg.n_dims, codes.shape[1])
        t = torch.linspace(-cfg.span, cfg.span, cfg.n_steps)
        walks = mean.repeat(dims * cfg.n_steps, 1)
        for d in range(dims):
            walks[d * cfg.n_steps : (d + 1) * cfg.n_steps, d] += t * std[d]
        images = ctx.decode(walks)
        steps = images.reshape(dims, cfg.n_steps, -1)
        change = (steps[:, 1:] - steps[:, :-1]).abs().mean()
        return ProtocolOutput(
            data=images,
            values={"mean_step_change": float(change)},
            stamp={"n_dims": dims, "n_steps": cfg.n_steps, "span_std": cfg.span,
                   "centre": "mean training code"},
            preview=images,
            preview_nrow=cfg.n_steps,
        )
