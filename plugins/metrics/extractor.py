"""What the FID feature extractors share: a frozen network, a description of the features
for the stamp (what defines the numbers) and provenance for the details (paths, cache)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from harness.api import file_sha256 as sha256_of  # noqa: F401 - re-exported

#: seconds between plain progress lines of evaluation work (reference features, extractor
#: training) in logs that are not a terminal: shorter than training's, as the work is shorter
EVAL_PROGRESS_EVERY_S = 10.0


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a set of weights: every tensor's name, dtype, shape and bytes, in name order.

    Used instead of a file hash for weights this plugin trains and saves as safetensors: the
    safetensors header stores its metadata in an unordered map, so the same weights can be
    written as files with different bytes; this hash depends on the weights only.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def write_safetensors_atomic(path: Path, tensors: dict[str, torch.Tensor],
                             metadata: dict[str, str] | None = None) -> None:  # fmt: skip
    """Save tensors as safetensors through the host's one atomic writer
    (:func:`harness.api.atomic_path`): a crash or a concurrent reader never sees a
    half-written cache file."""
    from safetensors.torch import save_file

    from harness import api

    with api.atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata=metadata)  # fmt: skip


class FeatureExtractor:
    """Maps images (N, C, H, W) to float64 feature rows (N, dim) on the CPU.

    Subclasses set ``name`` and ``dim`` and, when the features are not the network's output,
    override :meth:`features`. ``describe()`` goes into the stamp (it must not depend on the
    machine: names, weights sha256, accuracy), ``provenance()`` into the details (file paths,
    whether weights were trained or loaded, timings).
    """

    name = ""
    dim = 0

    def __init__(self, network: nn.Module, description: dict[str, Any],
                 provenance: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.network = network.eval()
        self._description = description
        self._provenance = dict(provenance or {})

    def describe(self) -> dict[str, Any]:
        return dict(self._description)

    def provenance(self) -> dict[str, Any]:
        return dict(self._provenance)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, device: Any = None) -> torch.Tensor:
        device = torch.device(device) if device is not None else torch.device("cpu")
        self.network.to(device)
        return self.features(images.to(device)).double().cpu()

