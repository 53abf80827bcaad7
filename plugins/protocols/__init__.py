"""Built-in protocols plugin: the evaluation protocols of the paper (section 3).

Registered through the same ``register_protocols`` hook and entry-point group a third-party
plugin uses, with lazy ``"module:attr"`` factories: importing this module does not import
torch. ``default=True``: these run when ``eval.protocols`` is empty (the default).
"""

from __future__ import annotations

from typing import Any

from harness import hookimpl

#: (name, class, description, former names)
PROTOCOLS = (
    ("reconstruction", "Reconstruction",
     "rec error 100*||X_hat-X||_F/||X||_F over the whole test split (stored basis, z = mu)", ()),
    ("codes", "Codes",
     "the training set's bottleneck codes, for diagnostics such as posterior collapse", ()),
    ("random-generation", "RandomGeneration",
     "decode sampled codes: a Gaussian mixture fitted on the training codes (eval."
     "random-generation.sampler=gmm, the default; .n_samples, .gmm_components), one "
     "full-covariance Gaussian (gaussian) or the prior N(0, I) (prior)", ("random_generation",)),
    ("interpolation", "Interpolation",
     "decode linear interpolations between the codes of seeded random training pairs "
     "(eval.interpolation.n_pairs, .n_interp interior points)", ()),
)

#: not run by default: with random-generation they give the RAE paper's side-by-side FID view
#: (Table 1: reconstructions, the N(0, I) prior, the GMM sampler)
EXTRA_PROTOCOLS = (
    ("prior-samples", "PriorSamples",
     "decode N(0, I) codes (eval.prior-samples.n_samples); a model that only samples uses its "
     "own sampler; does not apply to a model without a prior"),
    ("reconstruction-samples", "ReconstructionSamples",
     "the test images' reconstructions as samples, scored by FID/KID/PRDC against the "
     "training set (eval.reconstruction-samples.n_images)"),
)


@hookimpl
def register_protocols(register: Any) -> None:
    for name, attr, description, former in PROTOCOLS:
        register(name, f"harness_plugins.protocols.paper:{attr}", description, default=True,
                 aliases=former)
    for name, attr, description in EXTRA_PROTOCOLS:
        register(name, f"harness_plugins.protocols.paper:{attr}", description)
