"""A third-party plugin of models that are not autoencoders (docs/plugins.md walks through it):
``gauss``, a low-rank Gaussian density that only samples; ``tiny-gan``, a GAN that owns its
training step; and ``fresh-samples``, a protocol of kind ``samples`` that the harness's FID,
KID, precision/recall and memorisation score like its own."""

from __future__ import annotations

from typing import Any

from harness import hookimpl


@hookimpl
def register_models(register: Any) -> None:
    register("gauss", "harness_generative_example.gauss:LowRankGaussian",
             "Low-rank Gaussian density fitted by maximum likelihood; samples only (example)")
    register("tiny-gan", "harness_generative_example.gan:TinyGAN",
             "MLP GAN, discriminator then generator each step (example)")


@hookimpl
def register_protocols(register: Any) -> None:
    register("fresh-samples", "harness_generative_example.protocol:FreshSamples",
             "n images from the model's own sampler at another seed (example)")
