"""An example harness plugin: one model, one evaluation protocol and one metric.

The factories are ``"module:attribute"`` strings, so importing this module (which the harness
does for every command, ``harness models`` included) does not import torch; the harness
imports ``harness_example_plugin.model`` only when a run asks for ``tiny-ae``.
"""

from __future__ import annotations

from typing import Any

from harness import hookimpl


@hookimpl
def register_models(register: Any) -> None:
    register(
        "tiny-ae",
        "harness_example_plugin.model:TinyAE",
        "Two-layer MLP autoencoder (example plugin)",
    )


@hookimpl
def register_protocols(register: Any) -> None:
    register(
        "latent-traversal",
        "harness_example_plugin.protocol:LatentTraversal",
        "Decode walks along each bottleneck dimension (example plugin)",
    )


@hookimpl
def register_metrics(register: Any) -> None:
    register(
        "mean-intensity",
        "harness_example_plugin.metric:MeanIntensity",
        "Mean pixel value of the generated images (example plugin)",
    )
