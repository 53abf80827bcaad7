"""Metric ``fid``: Frechet distance between generated images and the training images.

The statistics come from :class:`harness.fid.FeatureStats` (float64 sums) and the distance
from :func:`harness.fid.frechet_distance` (symmetric eigendecomposition): this module only
chooses the feature extractor and feeds it images. The reference statistics (training set,
or a fixed random subset of ``eval.n_reference`` images drawn with seed 0) are computed once
per metric object and reused across protocols (random generation and interpolation score
against the same reference), and cached on disk (``$HARNESS_CACHE_DIR/fid-stats/``) keyed by
the dataset (name, shape, size, a fingerprint of a few images), ``n_reference`` and the
extractor's weights sha256: Inception features of 60 000 training images take long on a CPU,
and every model and seed on a dataset shares them.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from harness.api import DatasetInfo
from harness.errors import HarnessError
from harness.fid import FeatureStats, fid_from_stats

Extractor = Callable[..., torch.Tensor]
STATS_VERSION = 1  # bump when the way reference statistics are computed changes


def _inception(info: DatasetInfo, reference: Dataset, fid_weights: str | None,
               progress: bool) -> Any:  # fmt: skip
    from .inception import InceptionExtractor

    return InceptionExtractor.from_weights(fid_weights)


def _domain(info: DatasetInfo, reference: Dataset, fid_weights: str | None,
            progress: bool) -> Any:  # fmt: skip
    from .domain import DomainExtractor

    return DomainExtractor.for_dataset(reference, info, progress=progress)


#: name -> builder(info, reference, fid_weights, progress) returning an extractor with
#: ``__call__(images, device) -> (N, d) float64`` and ``describe() -> dict``
EXTRACTORS: dict[str, Callable[..., Any]] = {"inception": _inception, "domain": _domain}


def image_batches(dataset: Dataset, batch_size: int) -> Any:
    """Yield image tensors (B, C, H, W) from a dataset of ``(image, label)`` items."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in loader:
        yield batch[0] if isinstance(batch, list | tuple) else batch


class FID:
    """``fid``: lower is better; scores random-generation and interpolation images."""

    name = "fid"
    higher_is_better = False
    protocols = ("random_generation", "interpolation")

    def __init__(
        self,
        feature_extractor: str = "inception",
        fid_weights: str | None = None,
        n_reference: int | None = None,
        batch_size: int = 256,
        progress: bool = False,
        extractor: Any = None,
    ) -> None:
        if extractor is None and feature_extractor not in EXTRACTORS:
            close = difflib.get_close_matches(feature_extractor, list(EXTRACTORS), n=2)
            hint = f" did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise HarnessError(
                f"eval.feature_extractor '{feature_extractor}' is not known;{hint} "
                f"Known: {', '.join(EXTRACTORS)}"
            )
        self.feature_extractor = feature_extractor
        self.fid_weights = fid_weights
        self.n_reference = n_reference
        self.batch_size = batch_size
        self.progress = progress
        self._extractor = extractor  # injected in tests (random-weight Inception)
        self._reference_cache: dict[tuple[Any, ...], tuple[FeatureStats, int]] = {}
        self._stamp: dict[str, Any] = {}
        self._reference_source = ""

    def applies(self, info: DatasetInfo) -> bool:
        """Every dataset but synthetic ones (``info.metadata["synthetic"]``, e.g. bumps): the
        paper scores those with a closed-form error (``gaussian-fit``), and FID of natural-image
        features on them means little and costs minutes of Inception time on a CPU."""
        return not info.metadata.get("synthetic", False)

    def stamp(self) -> dict[str, Any]:
        """What produced the last value: extractor (with weights hash), reference size."""
        return dict(self._stamp)

    def _get_extractor(self, info: DatasetInfo, reference: Dataset) -> Any:
        if self._extractor is None:
            build = EXTRACTORS[self.feature_extractor]
            self._extractor = build(info, reference, self.fid_weights, self.progress)
        return self._extractor

    def _features(self, extractor: Any, batches: Any, device: Any, what: str = "",
                  total: int = 0) -> FeatureStats:  # fmt: skip
        stats = FeatureStats()
        start = last = time.perf_counter()
        for images in batches:
            stats.update(extractor(images, device=device))
            now = time.perf_counter()
            if self.progress and what and (now - last > 30 or stats.count == total):
                last = now
                name = getattr(extractor, "name", "")
                print(f"[eval] fid {name} features of {what}: {stats.count}/{total} "
                      f"images ({now - start:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
        return stats

    def _disk_path(self, reference: Dataset, info: DatasetInfo, extractor: Any) -> Path | None:
        """Where the reference statistics are cached on disk, or None when the extractor has
        no weights hash (an injected test extractor): then only the in-memory cache is used."""
        from .domain import cache_dir, fingerprint

        digest = extractor.describe().get("feature_weights_sha256")
        if not digest:
            return None
        n = len(reference)  # type: ignore[arg-type]
        fields = {"dataset": info.name, "shape": list(info.shape), "n": n,
                  "fingerprint": fingerprint(reference, n), "n_reference": self.n_reference,
                  "subset_seed": 0, "extractor": digest, "version": STATS_VERSION}  # fmt: skip
        key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in info.name)
        return cache_dir() / "fid-stats" / f"{safe}-{extractor.name}-{key}.pt"

    def reference_stats(self, reference: Dataset, info: DatasetInfo,
                        device: Any = None) -> tuple[FeatureStats, int]:  # fmt: skip
        """Feature statistics of the reference images: cached on this object (shared by the
        protocols of one evaluation) and on disk (shared by runs on the same dataset)."""
        extractor = self._get_extractor(info, reference)
        n_total = len(reference)  # type: ignore[arg-type]
        key = (id(reference), n_total, info.name, self.n_reference)
        if key in self._reference_cache:
            return self._reference_cache[key]
        path = self._disk_path(reference, info, extractor)
        if path is not None and path.is_file():
            stats = FeatureStats.from_state_dict(
                torch.load(path, map_location="cpu", weights_only=True))
            self._reference_source = f"cached ({path})"
        else:
            subset: Dataset = reference
            if self.n_reference is not None and self.n_reference < n_total:
                gen = torch.Generator().manual_seed(0)
                idx = torch.randperm(n_total, generator=gen)[: self.n_reference]
                subset = Subset(reference, sorted(idx.tolist()))
            batches = image_batches(subset, self.batch_size)
            stats = self._features(extractor, batches, device, "the reference",
                                   len(subset))  # type: ignore[arg-type]
            self._reference_source = "computed"
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                buf = io.BytesIO()
                torch.save(stats.state_dict(), buf)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_bytes(buf.getvalue())
                os.replace(tmp, path)
        self._reference_cache[key] = (stats, stats.count)
        return self._reference_cache[key]

    def __call__(self, images: torch.Tensor, reference: Dataset, info: DatasetInfo, *,
                 device: Any = None) -> dict[str, float]:  # fmt: skip
        if images.shape[0] < 2:
            raise HarnessError(f"FID needs at least 2 images, got {images.shape[0]}")
        ref_stats, n_ref = self.reference_stats(reference, info, device)
        extractor = self._get_extractor(info, reference)
        chunks = (images[i : i + self.batch_size] for i in range(0, images.shape[0],
                                                                  self.batch_size))  # fmt: skip
        gen_stats = self._features(extractor, chunks, device)
        value = fid_from_stats(gen_stats, ref_stats)
        self._stamp = {
            **extractor.describe(),
            "reference": "train",
            "n_reference": n_ref,
            "reference_stats": self._reference_source,
            "n_images": int(images.shape[0]),
            "clamp": "[0, 1] before feature extraction",
        }
        return {"fid": value}
