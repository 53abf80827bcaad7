"""Feature extractor ``"domain"``: a small CNN classifier trained on the dataset's own labels.

Why: the paper (A.4) computes FID with an Inception-v3 *fine-tuned to classify the dataset*,
last layer removed. Fine-tuning Inception is hours of GPU time; this is a cheap, documented
stand-in with the same idea — features that separate the dataset's classes — that trains in
well under a minute on 2 CPU cores:

* input resized to 32×32 (bilinear, antialiased when shrinking), clamped to [0, 1];
* Conv(C->32, 3, stride 2) ReLU, Conv(32->64, 3, s2) ReLU, Conv(64->128, 3, s2) ReLU,
  flatten (128×4×4), Linear(2048->128) ReLU = **the 128-d features**, Linear(128->classes);
* trained with Adam (lr 1e-3, batch 64, 2 epochs) on at most 10 000 labelled training
  images drawn with a fixed seed; accuracy measured on up to 2 000 other training images
  (Fashion-MNIST: 0.83 held-out accuracy, about 35 s on 2 busy CPU cores).

The classifier is trained once per dataset and cached (``$HARNESS_CACHE_DIR/fid-domain/``, by
default ``~/.cache/vrrae-harness``), keyed by the dataset's name, shape, size, a fingerprint of
a few of its images, the seed and this recipe's version. Its seed is fixed (0), **not** the
run seed, so every model and seed on a dataset is scored by the same extractor; the stamp
records the weights' sha256 and the held-out accuracy.

Datasets without labels (label -1, e.g. the synthetic bumps) are refused with a clear error:
a random-projection or autoencoder feature space would give a number called FID that means
something else. Use the Inception extractor (or the Gaussian-fit metric for bumps) there.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from harness.api import DatasetInfo
from harness.errors import HarnessError

from .extractor import FeatureExtractor

RECIPE_VERSION = 1  # bump when the recipe changes: old caches are ignored
SEED = 0
INPUT_SIZE = 32
FEATURE_DIM = 128
N_FIT = 10_000
N_HOLDOUT = 2_000
EPOCHS = 2
BATCH = 64
LR = 1e-3


def cache_dir() -> Path:
    """``$HARNESS_CACHE_DIR`` or ``$XDG_CACHE_HOME/vrrae-harness`` (``~/.cache/...``)."""
    root = os.environ.get("HARNESS_CACHE_DIR")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "vrrae-harness"


def prepare(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and resize to INPUT_SIZE × INPUT_SIZE."""
    x = x.float().clamp(0.0, 1.0)
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        shrink = x.shape[-1] > INPUT_SIZE or x.shape[-2] > INPUT_SIZE
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                          align_corners=False, antialias=shrink)  # fmt: skip
    return x


class DomainClassifier(nn.Module):
    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),  # 128 x 4 x 4
            nn.Flatten(), nn.Linear(128 * 4 * 4, FEATURE_DIM), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(prepare(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _fetch(dataset: Dataset, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[int(i)] for i in indices]
    images = torch.stack([torch.as_tensor(it[0]) for it in items]).float()
    labels = torch.tensor([int(it[1]) for it in items], dtype=torch.long)
    return images, labels


def fingerprint(dataset: Dataset, n: int) -> str:
    """A cheap content hash of a dataset (six images and labels): caches keyed by name and
    size alone would serve a stale entry for different data under the same name."""
    h = hashlib.sha256()
    for i in sorted({0, 1, 2, n // 2, n - 2, n - 1} & set(range(n))):
        image, label = dataset[i]
        h.update(torch.as_tensor(image).float().numpy().tobytes())
        h.update(str(int(label)).encode())
    return h.hexdigest()[:16]


class DomainExtractor(FeatureExtractor):
    """Penultimate-layer features of a :class:`DomainClassifier` trained on the dataset."""

    name = "domain"
    dim = FEATURE_DIM
    network: DomainClassifier

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.features(x)

    @classmethod
    def for_dataset(
        cls, train: Dataset, info: DatasetInfo, *, progress: bool = False
    ) -> DomainExtractor:
        """Load the cached classifier for this dataset, or train and cache it."""
        n = len(train)  # type: ignore[arg-type]
        if n < 20:
            raise HarnessError(
                f"the domain FID extractor needs a labelled training set; '{info.name}' has "
                f"only {n} images. Use --set eval.feature_extractor=inception"
            )
        gen = torch.Generator().manual_seed(SEED)
        order = torch.randperm(n, generator=gen)
        n_hold = min(N_HOLDOUT, n // 5)
        n_fit = min(N_FIT, n - n_hold)
        probe_labels = _fetch(train, order[:32])[1]
        if (probe_labels < 0).any():
            raise HarnessError(
                f"dataset '{info.name}' has no labels (label -1), so the 'domain' FID "
                "extractor (a classifier trained on the dataset's labels, paper A.4) cannot be "
                "built. Use --set eval.feature_extractor=inception (the standard pytorch-fid "
                "Inception-v3)" + (", or the gaussian-fit metric for bumps" if
                                   "spread" in info.metadata else "")
            )
        key_fields = {
            "dataset": info.name, "shape": list(info.shape), "n": n,
            "fingerprint": fingerprint(train, n), "seed": SEED, "version": RECIPE_VERSION,
            "n_fit": n_fit, "epochs": EPOCHS, "input": INPUT_SIZE, "batch": BATCH, "lr": LR,
        }  # fmt: skip
        key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:16]
        safe_name = "".join(c if c.isalnum() or c in "-_" else "_" for c in info.name)
        path = cache_dir() / "fid-domain" / f"{safe_name}-{key}.pt"
        if not path.is_file():
            cls._train_and_save(train, info, order, n_fit, n_hold, key_fields, path, progress)
        payload = torch.load(path, map_location="cpu", weights_only=True)
        net = DomainClassifier(info.shape[0], int(payload["num_classes"]))
        net.load_state_dict(payload["state_dict"])
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        accuracy = float(payload["accuracy"])
        description = {
            "feature_extractor": (
                f"domain-cnn v{RECIPE_VERSION} penultimate {FEATURE_DIM} (sha256 {digest[:16]}, "
                f"held-out accuracy {accuracy:.4f})"
            ),
            "feature_weights": str(path),
            "feature_weights_sha256": digest,
            "domain_classifier_accuracy": accuracy,
            "domain_classifier_n_fit": n_fit,
        }
        return cls(net, description)

    @staticmethod
    def _train_and_save(
        train: Dataset, info: DatasetInfo, order: torch.Tensor, n_fit: int, n_hold: int,
        key_fields: dict[str, Any], path: Path, progress: bool,
    ) -> None:  # fmt: skip
        start = time.perf_counter()
        hold_x, hold_y = _fetch(train, order[:n_hold])
        fit_x, fit_y = _fetch(train, order[n_hold : n_hold + n_fit])
        fit_x, hold_x = prepare(fit_x), prepare(hold_x)  # resize once, not every epoch
        if (fit_y < 0).any():
            raise HarnessError(f"dataset '{info.name}' has unlabelled images (label -1)")
        num_classes = int(max(info.num_classes or 0, int(fit_y.max()) + 1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            net = DomainClassifier(info.shape[0], num_classes)
            opt = torch.optim.Adam(net.parameters(), lr=LR)
            gen = torch.Generator().manual_seed(SEED + 1)
            net.train()
            for epoch in range(EPOCHS):
                perm = torch.randperm(n_fit, generator=gen)
                for i in range(0, n_fit, BATCH):
                    idx = perm[i : i + BATCH]
                    loss = F.cross_entropy(net(fit_x[idx]), fit_y[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                if progress:
                    print(f"domain FID classifier '{info.name}': epoch {epoch + 1}/{EPOCHS} "
                          f"loss {loss.item():.4f}", file=sys.stderr)  # fmt: skip
            net.eval()
            with torch.no_grad():
                pred = torch.cat([net(hold_x[i : i + 512]).argmax(1)
                                  for i in range(0, n_hold, 512)])  # fmt: skip
        accuracy = float((pred == hold_y).float().mean()) if n_hold else float("nan")
        payload = {
            "state_dict": net.state_dict(),
            "num_classes": num_classes,
            "accuracy": accuracy,
            "key": json.dumps(key_fields, sort_keys=True),
            "train_seconds": time.perf_counter() - start,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(payload, buf)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)
        if progress:
            print(f"domain FID classifier '{info.name}': held-out accuracy {accuracy:.4f}, "
                  f"{time.perf_counter() - start:.1f} s, cached at {path}",
                  file=sys.stderr)  # fmt: skip
