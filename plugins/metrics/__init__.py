"""Built-in metrics plugin: FID by the paper's protocol (dataset-trained features) and by the
literature's (ImageNet Inception), KID, precision/recall/density/coverage and memorisation in
the same features, the Gaussian-fit error and the training-centre count of the synthetic
bumps, and the posterior-collapse diagnostic; plus the ``harness extractor train`` command.

Registered through the same ``register_metrics`` hook a third-party plugin uses, with lazy
``"module:attr"`` factories: importing this module does not import torch.

**The metric contract** (every module of this plugin follows it): the registered factory is a
class with a ``Config`` dataclass holding the metric's own options (defaults = the paper's
protocol). The host builds ``Config`` from the ``eval.<metric-name>`` section and calls
``factory(config, progress=bool)``. The object has ``name``, ``higher_is_better``,
``inputs`` (the protocol kinds it scores: ``("samples",)``, so every protocol producing
samples, built-in or third-party), ``applies(info)``, ``why_not(info)`` (why it does not
apply), ``__call__(images, reference, info, *, device=None) -> dict``, ``stamp() -> dict``
(everything that defines the number: metric version, extractor name, weights sha256,
extractor accuracy, reference size and dataset identity; identical on any machine, cold or
warm cache) and ``details() -> dict`` (provenance: cache hit or miss, file paths, timings).
The feature metrics share their extractors, options and reference cache through
:mod:`.features`.
"""

from __future__ import annotations

from typing import Any

from harness import hookimpl


@hookimpl
def register_metrics(register: Any) -> None:
    register(
        "fid",
        "harness_plugins.metrics.fid:FID",
        "the paper's FID (A.4): Frechet distance of generated / interpolated images to the "
        "training set in the features of a classifier trained on the dataset's labels "
        "(eval.fid.feature_extractor: domain | inception-finetuned | inception); labelled data",
    )
    register(
        "fid-inception",
        "harness_plugins.metrics.fid:FIDInception",
        "the literature's FID: pytorch-fid's ImageNet Inception-v3 pool3 features (weights "
        "from eval.fid-inception.fid_weights, $HARNESS_FID_WEIGHTS or the torch hub cache)",
        aliases=("fid_inception",),
    )
    register(
        "kid",
        "harness_plugins.metrics.kid:KID",
        "Kernel Inception Distance (torchmetrics semantics; unbiased at small N), same "
        "features as fid",
    )
    register(
        "prdc",
        "harness_plugins.metrics.neighbours:PRDC",
        "precision, recall (k = 3), density, coverage (k = 5) of generated images against the "
        "training set, in the fid features; labelled data",
    )
    register(
        "memorisation",
        "harness_plugins.metrics.neighbours:Memorisation",
        "authenticity (Alaa et al. 2022) and the share of generated images closer to a "
        "training image than its own nearest training neighbour, in the fid features",
    )
    register(
        "bump-copies",
        "harness_plugins.metrics.gaussian_fit:BumpCopies",
        "synthetic bumps: generated bumps whose fitted centre sits on a training centre",
    )
    register(
        "gaussian-fit",
        "harness_plugins.metrics.gaussian_fit:GaussianFit",
        "synthetic bumps: relative error (%) of generated images to the best-fitting bump",
    )
    register(
        "collapse",
        "harness_plugins.metrics.collapse:Collapse",
        "posterior collapse: per-dimension variance of the training codes, collapsed count",
    )


@hookimpl
def register_commands(cli: Any) -> None:
    """``harness extractor train --dataset D [--out FILE]``: a shareable extractor file."""
    from .commands import register

    register(cli)
