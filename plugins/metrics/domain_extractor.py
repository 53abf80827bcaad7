"""The ``"domain"`` feature extractor: the penultimate layer of the recipe's classifier
(:mod:`.domain`), with weights from a file (:mod:`.domain_weights`).

Why a module of its own: it stands on both the recipe (the network, its training) and the
weights files (shipped, cached, shared), and the files' checks stand on the recipe, so the
recipe knows neither files nor extractor.

One extractor per dataset: it is trained on the dataset's **whole training split** (a
``data.validation`` run's reference is that split minus its validation part; its extractor
is still the whole split's), with seed 0, **not** the run seed, so every model, seed and
sweep run on a dataset is scored by the same extractor. Weights shipped with the package
(:mod:`.domain_weights`) are used when they were trained on this dataset; otherwise the
classifier is trained once and cached as safetensors (``$HARNESS_CACHE_DIR/fid-domain/``),
keyed by the dataset's name, shape, size, a fingerprint of a few of its images and the
recipe's version. The stamp records the weights' sha256 (:func:`.extractor.tensors_sha256`:
of the tensors, not of the file) and the held-out accuracy; the file path and whether it was
shipped, trained or loaded go to the metric's ``details()``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from harness import api
from harness.api import DatasetInfo

from .domain import (
    FEATURE_DIM,
    RECIPE_VERSION,
    SEED,
    DomainClassifier,
    accuracy_warning,
    cache_dir,
    check_labelled,
    dataset_identity,
    extractor_training_split,
    train_weights,
)
from .domain_weights import read_weights, shipped_weights
from .extractor import FeatureExtractor, tensors_sha256, write_safetensors_atomic


class DomainExtractor(FeatureExtractor):
    """Penultimate-layer features of a :class:`DomainClassifier` trained on the dataset."""

    name = "domain"
    dim = FEATURE_DIM
    network: DomainClassifier

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.features(x)

    @classmethod
    def cache_path(cls, train: Dataset, info: DatasetInfo) -> Path:
        key_fields = {**dataset_identity(train, info), "seed": SEED, "version": RECIPE_VERSION}
        key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:16]
        safe_name = "".join(c if c.isalnum() or c in "-_" else "_" for c in info.name)
        return cache_dir() / "fid-domain" / f"{safe_name}-v{RECIPE_VERSION}-{key}.safetensors"

    @classmethod
    def for_dataset(
        cls, reference: Dataset, info: DatasetInfo, *, progress: bool = False,
        device: Any = None,
    ) -> DomainExtractor:  # fmt: skip
        """The dataset's extractor: the weights shipped with this plugin when they were
        trained on this dataset, else the cached classifier trained on the whole training
        split (trained and cached on first use)."""
        train = extractor_training_split(reference, info)
        check_labelled(train, info, "domain")
        shipped = shipped_weights(train, info)
        if shipped is not None:
            return cls.from_file(shipped, info, source="shipped with the package")
        path = cls.cache_path(train, info)
        start = time.perf_counter()
        with api.build_once(path, waiting=f"[eval] waiting for another process training the "
                            f"domain FID classifier of '{info.name}' ({path})") as trained:
            if trained:
                cls._train_and_save(train, info, path, progress, device)
        extractor = cls.from_file(path, info, source="trained" if trained else
                                  "loaded from cache")  # fmt: skip
        extractor._provenance["extractor_seconds"] = round(time.perf_counter() - start, 3)
        return extractor

    @classmethod
    def from_file(cls, path: Path, info: DatasetInfo | None = None, *,
                  source: str = "file") -> DomainExtractor:  # fmt: skip
        """The extractor stored in a weights file (this recipe's safetensors with its
        metadata); ``info`` (when given) must match the file's image shape."""
        state, meta = read_weights(path, info)
        net = DomainClassifier(int(json.loads(meta["shape"])[0]) if "shape" in meta else
                               (info.shape[0] if info else 1), int(meta["num_classes"]))  # fmt: skip
        net.load_state_dict({k: v.float() if v.is_floating_point() else v
                             for k, v in state.items()})  # fmt: skip
        accuracy = float(meta["accuracy"])
        name = meta.get("dataset", info.name if info else "")
        warning = accuracy_warning(name, accuracy, int(meta["n_fit"]))
        if warning:
            warnings.warn(warning, stacklevel=3)
        description = {
            "feature_extractor": f"domain-cnn v{meta.get('recipe_version', RECIPE_VERSION)} "
                                 f"penultimate {FEATURE_DIM}",
            "feature_weights_sha256": tensors_sha256(state),
            "extractor_dataset": name,
            "extractor_accuracy": round(accuracy, 6),
            "extractor_n_fit": int(meta["n_fit"]),
            "extractor_n_holdout": int(meta["n_holdout"]),
        }
        provenance = {"feature_weights": str(path), "extractor": source}
        if warning:
            provenance["extractor_warning"] = warning
        return cls(net, description, provenance)

    @staticmethod
    def _train_and_save(train: Dataset, info: DatasetInfo, path: Path, progress: bool,
                        device: Any) -> None:  # fmt: skip
        start = time.perf_counter()
        state, meta = train_weights(train, info, progress=progress, device=device)
        write_safetensors_atomic(path, state, meta)
        if progress:
            print(f"[eval] domain FID classifier '{info.name}': held-out accuracy "
                  f"{float(meta['accuracy']):.4f} ({meta['n_holdout']} images), "
                  f"{time.perf_counter() - start:.0f} s, cached at {path}",
                  file=sys.stderr, flush=True)  # fmt: skip
