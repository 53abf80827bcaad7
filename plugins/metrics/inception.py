"""The standard FID feature extractor: pytorch-fid's Inception-v3 (pool3, 2048-d), offline.

pytorch-fid's ``fid_inception_v3()`` downloads its weights with ``load_state_dict_from_url``.
Nothing in this project may download at run time, so the same network is built here from
pytorch-fid's own patched blocks (``FIDInceptionA/C/E_1/E_2``) on torchvision's Inception3 with
``weights=None``, and the release file ``pt_inception-2015-12-05-6726825d.pth`` is loaded from
disk with ``torch.load(weights_only=True)``. The forward pass is pytorch-fid's for
``output_blocks=[3]``, ``resize_input=True``, ``normalize_input=True``: bilinear resize to
299×299 (``align_corners=False``), then ``2x - 1``. Grayscale images are repeated to 3
channels, and every image is clamped to [0, 1] first (decoders have an identity output
activation, so generated images may leave [0, 1]; real images are in [0, 1] already).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.errors import HarnessError

from .extractor import FeatureExtractor, sha256_of

__all__ = ["InceptionExtractor", "find_weights", "missing_weights_message", "sha256_of"]

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_FILE
)
#: torch.hub convention: the file name carries the first hex digits of the file's sha256
FID_WEIGHTS_SHA256_PREFIX = "6726825d"
ENV_VAR = "HARNESS_FID_WEIGHTS"


def candidate_paths(explicit: str | os.PathLike[str] | None = None) -> list[tuple[str, Path]]:
    """Where the weights are looked for, in order: ``(what, path)`` pairs."""
    out: list[tuple[str, Path]] = []
    if explicit:
        out.append(("fid_weights", Path(explicit).expanduser()))
    env = os.environ.get(ENV_VAR)
    if env:
        out.append((f"${ENV_VAR}", Path(env).expanduser()))
    out.append(("torch hub cache", Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE))
    return out


def find_weights(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The first existing weights file, or a :class:`HarnessError` saying how to get one.

    An explicitly given path that does not exist is an error even when another candidate
    exists: silently using a different file than the one asked for would be worse.
    """
    candidates = candidate_paths(explicit)
    if explicit and not candidates[0][1].is_file():
        raise HarnessError(
            f"fid_weights = '{explicit}' does not exist. Point it at the pytorch-fid "
            f"weights file {FID_WEIGHTS_FILE} (download: {FID_WEIGHTS_URL})."
        )
    for _, path in candidates:
        if path.is_file():
            return path
    searched = "; ".join(f"{what}: {path}" for what, path in candidates)
    raise HarnessError(
        "the Inception-v3 FID weights were not found (nothing is downloaded at run time). "
        f"Searched: {searched}. To fix: {missing_weights_message()}"
    )


def missing_weights_message() -> str:
    """How to get the pytorch-fid weights (one sentence, for "not computed: ..." records)."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    return (
        f"the pytorch-fid Inception weights are not on this machine. Download {FID_WEIGHTS_URL} "
        f"on a machine with internet and put it in {hub}/ (or anywhere, then set "
        f"${ENV_VAR}=PATH or --set eval.fid-inception.fid_weights=PATH). The paper's FID "
        "(metric fid, dataset-trained features) does not need them."
    )


def build_fid_inception() -> nn.Module:
    """pytorch-fid's FID Inception-v3 (torchvision Inception3 + patched blocks), no weights."""
    from pytorch_fid import inception as pf
    from torchvision.models import inception_v3

    net = inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf.FIDInceptionE_1(1280)
    net.Mixed_7c = pf.FIDInceptionE_2(2048)
    return net


class InceptionPool3(nn.Module):
    """Images (N, C, H, W) in [0, 1] -> pool3 features (N, 2048), as pytorch-fid computes them."""

    def __init__(self, inception: nn.Module) -> None:
        super().__init__()
        n: Any = inception  # torchvision submodules, typed loosely
        self.blocks = nn.Sequential(
            n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, nn.MaxPool2d(3, stride=2),
            n.Conv2d_3b_1x1, n.Conv2d_4a_3x3, nn.MaxPool2d(3, stride=2),
            n.Mixed_5b, n.Mixed_5c, n.Mixed_5d,
            n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d, n.Mixed_6e,
            n.Mixed_7a, n.Mixed_7b, n.Mixed_7c,
            nn.AdaptiveAvgPool2d((1, 1)),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = prepare_images(x)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        return self.blocks(x).flatten(1)


def prepare_images(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and make 3 channels (grayscale repeated)."""
    x = x.float().clamp(0.0, 1.0)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    elif x.shape[1] != 3:
        raise HarnessError(
            f"the Inception FID extractor needs 1- or 3-channel images, got {x.shape[1]} "
            "channels; use the dataset-trained extractor (--set eval.fid.feature_extractor=domain)"
        )
    return x


class InceptionExtractor(FeatureExtractor):
    """Feature extractor ``"inception"`` (see the module docstring): (N, C, H, W) images to
    (N, 2048) float64 pool3 features."""

    name = "inception"
    dim = 2048

    @classmethod
    def from_weights(cls, fid_weights: str | None = None) -> InceptionExtractor:
        path = find_weights(fid_weights)
        digest = sha256_of(path)
        inception = build_fid_inception()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            inception.load_state_dict(state)
        except Exception as exc:  # corrupt or wrong file: say which and what to do
            raise HarnessError(
                f"could not load the FID Inception weights from {path}: {exc}. Re-download "
                f"{FID_WEIGHTS_URL}"
            ) from exc
        label = "inception-v3 pytorch-fid pool3 2048"
        if not digest.startswith(FID_WEIGHTS_SHA256_PREFIX):
            import warnings

            label += " NOT the pytorch-fid release file: FIDs are not comparable"
            warnings.warn(
                f"{path}: sha256 {digest[:16]}... does not start with "
                f"{FID_WEIGHTS_SHA256_PREFIX} (the pytorch-fid release file); FIDs will not "
                "be comparable with published ones",
                stacklevel=2,
            )
        return cls(
            InceptionPool3(inception),
            {"feature_extractor": label, "feature_weights_sha256": digest},
            {"feature_weights": str(path)},
        )  # fmt: skip

    @classmethod
    def random_init(cls, seed: int = 0) -> InceptionExtractor:
        """The same architecture with random (He-initialised, so features are O(1)) weights:
        for tests of the pipeline only, never for reported numbers."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_fid_inception()
            for module in net.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        return cls(InceptionPool3(net), {"feature_extractor": "inception-v3 RANDOM weights"})

