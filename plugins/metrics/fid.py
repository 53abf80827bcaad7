"""Metrics ``fid`` (the paper's protocol) and ``fid-inception`` (the literature's FID).

Both follow the metric contract of :mod:`harness_plugins.metrics` and share the feature
plumbing of :mod:`.features` (the extractors, the options, the reference cache); this module
holds what is FID's own:

* ``fid`` — the Fréchet distance in the features ``Config.feature_extractor`` picks (default
  ``"domain"``, the paper's protocol: a classifier trained on the dataset's labels; see
  :mod:`.features` for the others).
* ``fid-inception`` — the standard FID of the literature: pytorch-fid's ImageNet Inception-v3
  pool3 features (:mod:`.inception`), weights from ``Config.fid_weights``,
  ``$HARNESS_FID_WEIGHTS`` or the torch hub cache; nothing is downloaded. Without the weights
  it raises one :class:`HarnessError` starting ``"not computed: "`` that says how to get them.

Neither applies to synthetic data (``info.metadata["synthetic"]``, the bumps: the paper scores
those with the closed-form ``gaussian-fit`` error); ``fid`` with a dataset-trained extractor
does not apply to unlabelled data (``info.num_classes`` None).

The statistics come from :class:`harness.api.FeatureStats` (float64 sums), summed from the
shared reference features (:meth:`.features.FeatureMetric.reference_features`), and the
distance from :func:`harness.api.fid_from_features` (an N x N route when the generated set is
smaller than the feature dimension).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from harness.api import DatasetInfo, FeatureStats, ValueDisplay, fid_from_features
from harness.errors import HarnessError

from .features import FeatureMetric, FeatureOptions, ReferenceOptions

METRIC_VERSION = 2  # bump when what defines an FID number changes


@dataclass
class FIDConfig(FeatureOptions):
    """Options of ``fid`` (``eval.fid.<key>``); the defaults are the paper's protocol."""


class FID(FeatureMetric):
    """``fid``: lower is better; scores random-generation and interpolation images."""

    name = "fid"
    version = METRIC_VERSION
    result_key = "fid"
    Config: type = FIDConfig
    display = {"fid": ValueDisplay(
        "FID", "", False, "Frechet distance between the features of the images and of the "
        "reference split (features: see the stamp's feature_extractor)")}

    def __init__(self, config: Any = None, *, progress: bool = False,
                 extractor: Any = None) -> None:  # fmt: skip
        super().__init__(config, progress=progress, extractor=extractor)
        self._stats: tuple[tuple[int, int], FeatureStats] | None = None

    def reference_stats(self, reference: Dataset, info: DatasetInfo,
                        device: Any = None) -> FeatureStats:  # fmt: skip
        """Feature statistics (float64 sums, with the reference covariance factor of the
        N x N route) of :meth:`reference_features`, computed once per object."""
        feats = self.reference_features(reference, info, device)
        key = (id(feats), feats.shape[0])
        if self._stats is None or self._stats[0] != key:
            stats = FeatureStats()
            for i in range(0, feats.shape[0], 4096):
                stats.update(feats[i : i + 4096])
            stats.factor()
            self._stats = (key, stats)
        return self._stats[1]

    def export(self, directory: Path) -> None:
        """For `harness run --save-samples` / `harness samples`: the reference statistics
        this evaluation used, as ``reference_stats.npz`` with ``mu`` and ``sigma`` (pytorch-fid's
        ``.npz`` layout; its ``fid_score`` reads such files), and ``stamp.json`` saying which
        extractor made them: features of another extractor are not comparable."""
        import io

        import numpy as np

        from harness import api

        if self._stats is not None:
            stats = self._stats[1]
            buffer = io.BytesIO()
            np.savez(buffer, mu=stats.mean, sigma=stats.cov)
            api.atomic_write_bytes(Path(directory) / "reference_stats.npz", buffer.getvalue())
            api.atomic_write_json(Path(directory) / "stamp.json", self.stamp())

    def __call__(self, images: torch.Tensor, reference: Dataset, info: DatasetInfo, *,
                 device: Any = None) -> dict[str, float]:  # fmt: skip
        if images.shape[0] < 2:
            raise HarnessError(f"{self.name} needs at least 2 images, got {images.shape[0]}")
        self._details = {}
        extractor = self._get_extractor(info, reference, device)
        ref_stats = self.reference_stats(reference, info, device)
        start = time.perf_counter()
        bs = self.config.batch_size
        chunks = (images[i : i + bs] for i in range(0, images.shape[0], bs))
        gen = torch.cat(list(self._features(extractor, chunks, device)))
        extracted = time.perf_counter()
        value = fid_from_features(gen, ref_stats)
        n, d = gen.shape
        self._stamp = self._base_stamp(extractor, reference, info, ref_stats.count, n)
        provenance = getattr(extractor, "provenance", None)
        self._details.update({
            **(provenance() if callable(provenance) else {}),
            "route": "N x N (N - 1 < d)" if n - 1 < d else "d x d",
            "features_seconds": round(extracted - start, 3),
            "distance_seconds": round(time.perf_counter() - extracted, 3),
        })  # fmt: skip
        return {self.result_key: value}


@dataclass
class FIDInceptionConfig(ReferenceOptions):
    """Options of ``fid-inception`` (``eval.fid-inception.<key>``): the shared ones, with
    pytorch-fid's weights ``pt_inception-2015-12-05-6726825d.pth`` (else
    $HARNESS_FID_WEIGHTS or the torch hub cache; nothing is downloaded)."""

    metric: ClassVar[str] = "fid-inception"
    batch_size: int = 64

    feature_extractor = "inception"  # fixed: this metric is the ImageNet-Inception FID


class FIDInception(FID):
    """``fid-inception``: the literature's FID (pytorch-fid's ImageNet Inception-v3)."""

    name = "fid-inception"
    result_key = "fid_inception"
    display = {"fid_inception": ValueDisplay(
        "FID (ImageNet Inception-v3)", "", False,
        "the literature's FID: pool3 features of the ImageNet Inception-v3")}
    Config = FIDInceptionConfig

    def _get_extractor(self, info: DatasetInfo, reference: Dataset, device: Any) -> Any:
        if self._extractor is None:
            from .inception import InceptionExtractor, missing_weights_message

            try:
                self._extractor = InceptionExtractor.from_weights(self.config.fid_weights)
            except HarnessError as exc:
                if "were not found" in str(exc):
                    raise HarnessError(f"not computed: {missing_weights_message()}") from exc
                raise
        return self._extractor
