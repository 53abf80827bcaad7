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


@hookimpl
def register_suites(register: Any) -> None:
    # a suite is data (the keys of a suite .toml file): `harness benchmark tiny`
    register(
        "tiny",
        {
            "name": "tiny",
            "description": "tiny-ae against ae on 16 bumps, 2 seeds (example plugin)",
            "datasets": ["bumps"],
            "models": ["tiny-ae", "ae"],
            "seeds": 2,
            "protocols": ["reconstruction", "random-generation"],
            "set": ["data.n_train=16", "data.n_test=8", "train.batch_size=8",
                    "eval.random-generation.n_samples=16", "eval.random-generation.gmm_components=2"],
            "budgets": {"smoke": {"set": ["train.steps=3"]}, "cpu": {"set": ["train.steps=200"]},
                        "paper": {"set": ["train.steps=2000"]}},
        },
        "tiny-ae against ae on 16 bumps (example plugin)",
    )

