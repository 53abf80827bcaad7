"""Model capabilities: what a model can do beyond the base contract, and the checks on them.

Why a module of its own: the plugin registry refuses a model class that declares a
capability without its methods when its factory is loaded, and :mod:`harness.api` (which
re-exports these names for plugins) imports the registry's host lazily; keeping the rules
here, importing nothing of the host, leaves no import circle. Imports no torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: What a model may be able to do, and the members a model declaring it must have. The base
#: contract is ``sample`` (draw images); the others are optional capabilities a model declares
#: in ``capabilities``, and protocols and samplers state which they need (``needs``), so that
#: one that cannot apply to a model is recorded as "does not apply", never run into an error.
CAPABILITIES: dict[str, tuple[str, ...]] = {
    "sample": ("sample",),  # sample(n, generator) -> images
    "encoder": ("encode", "decode"),  # images <-> codes (B, k)
    "reconstruct": ("reconstruct",),  # images -> their reconstructions
    "prior": ("decode", "bottleneck_dim"),  # decoding N(0, I_k) codes gives its samples
}

#: how "has no <capability>" reads for each capability
CAPABILITY_WORDS = {"sample": "sampler", "encoder": "encoder", "reconstruct": "reconstruction",
                    "prior": "prior"}


def declared_capabilities(model: Any) -> frozenset[str]:
    """The capabilities a model class (or instance) declares in ``capabilities``; a model
    written before capabilities existed (no ``capabilities``) has what its methods give:
    ``encoder`` with ``encode``/``decode``, ``reconstruct``, ``sample``."""
    declared = getattr(model, "capabilities", None)
    if declared is not None:
        return frozenset(declared)
    inferred = {cap for cap in ("encoder", "reconstruct", "sample")
                if all(hasattr(model, member) for member in CAPABILITIES[cap])}
    return frozenset(inferred)


def model_capabilities(model: Any) -> frozenset[str]:
    """What a built model can do: :func:`declared_capabilities`, with ``prior`` decided by the
    instance's ``has_prior`` where it has one (e.g. a VAE has a prior only when its KL weight
    is not zero)."""
    caps = set(declared_capabilities(model))
    if hasattr(model, "has_prior"):
        if bool(model.has_prior) and "encoder" in caps:
            caps.add("prior")
        else:
            caps.discard("prior")
    return frozenset(caps)


def check_model_class(cls: Any, label: str) -> None:
    """Refuse a model class whose declared capabilities it cannot honour (a capability the
    harness does not know, a member it lacks), or that can neither sample nor decode codes;
    ``label`` names the model and its plugin. Raises :class:`harness.errors.PluginError`."""
    from harness.errors import PluginError

    declared = declared_capabilities(cls)
    unknown = sorted(declared - set(CAPABILITIES))
    if unknown:
        raise PluginError(f"{label} declares unknown capabilities {unknown}; known: "
                          f"{', '.join(CAPABILITIES)}")
    for cap in sorted(declared):
        missing = [m for m in CAPABILITIES[cap] if not hasattr(cls, m)]
        if missing:
            raise PluginError(
                f"{label} declares capability '{cap}' but has no {', '.join(missing)}; add "
                f"{'them' if len(missing) > 1 else 'it'} or drop '{cap}' from its capabilities")
    if not declared & {"sample", "encoder"}:
        raise PluginError(f"{label} can neither sample nor decode codes: define "
                          "sample(n, generator) and declare capabilities = {'sample'}")
    if callable(getattr(cls, "training_step", None)) != callable(
            getattr(cls, "configure_optimizers", None)):
        raise PluginError(f"{label} must define both training_step and configure_optimizers "
                          "to own its training step, or neither")


def does_not_apply(model_name: str, needs: Iterable[str], capabilities: Iterable[str]
                   ) -> str | None:
    """``"does not apply: <model> has no encoder"`` when the model lacks a capability in
    ``needs``; None when it has them all."""
    have = set(capabilities)
    missing = [CAPABILITY_WORDS.get(c, c) for c in needs if c not in have]
    if not missing:
        return None
    return f"does not apply: {model_name} has no {' and no '.join(missing)}"


__all__ = ["CAPABILITIES", "CAPABILITY_WORDS", "check_model_class", "declared_capabilities",
           "does_not_apply", "model_capabilities"]
