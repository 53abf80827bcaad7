"""Built-in metrics plugin: FID (Inception or dataset-trained features), the Gaussian-fit
error of the synthetic bumps, and the posterior-collapse diagnostic.

Registered through the same ``register_metrics`` hook a third-party plugin uses, with lazy
``"module:attr"`` factories: importing this module does not import torch.
"""

from __future__ import annotations

from typing import Any

from harness import hookimpl


@hookimpl
def register_metrics(register: Any) -> None:
    register(
        "fid",
        "harness_plugins.metrics.fid:FID",
        "Frechet distance of random-generation / interpolation images to the training set "
        "(eval.feature_extractor: inception = pytorch-fid Inception-v3, domain = classifier "
        "trained on the dataset)",
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
