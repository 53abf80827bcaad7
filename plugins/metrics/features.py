"""What the feature metrics (``fid``, ``fid-inception``, ``kid``, ``prdc``, ``memorisation``)
share, in one place so that each metric's module holds only its own arithmetic: the feature
extractors by name, the options (:class:`ReferenceOptions`, :class:`FeatureOptions`, with the
one default extractor), and :class:`FeatureMetric`, the reference and the stamp bookkeeping.

``feature_extractor`` picks the features:

- ``"domain"`` (default): the penultimate layer of a small CNN trained once on the dataset's
  labels (:mod:`.domain_extractor`), offline, minutes on a CPU. The paper's idea (A.4: a
  classifier of the dataset, last layer removed) with a cheaper network. Labelled data only.
- ``"inception-finetuned"``: the paper's exact extractor, Inception-v3 from the pytorch-fid
  weights fine-tuned on the dataset's labels (:mod:`.inception_finetuned`; GPU recommended).
- ``"inception"``: pytorch-fid's ImageNet Inception-v3 (:mod:`.inception`).
- the path of a weights file written by ``harness extractor train`` (``.safetensors``): the
  domain extractor with exactly those weights.

The reference features (training set, or a fixed random subset of ``n_reference`` images
drawn with seed 0) are the one cache every feature metric shares
(:meth:`FeatureMetric.reference_features`: in memory for the protocols of one evaluation, on
disk under ``$HARNESS_CACHE_DIR/fid-features/`` keyed by the dataset's identity,
``n_reference`` and the extractor's weights sha256).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from harness import api
from harness.api import DatasetInfo, images_of
from harness.errors import ConfigError, HarnessError

from .domain import cache_dir, dataset_identity
from .domain_weights import inspect_weights
from .extractor import EVAL_PROGRESS_EVERY_S, write_safetensors_atomic

REFERENCE_VERSION = 3  # bump when the way reference features are computed changes
SUBSET_SEED = 0
#: the extractors trained on the dataset's labels: their metrics need labelled data
LABELLED_EXTRACTORS = ("domain", "inception-finetuned")


def _inception(info: DatasetInfo, reference: Dataset, config: Any, progress: bool,
               device: Any) -> Any:  # fmt: skip
    from .inception import InceptionExtractor

    return InceptionExtractor.from_weights(config.fid_weights)


def _domain(info: DatasetInfo, reference: Dataset, config: Any, progress: bool,
            device: Any) -> Any:  # fmt: skip
    from .domain_extractor import DomainExtractor

    return DomainExtractor.for_dataset(reference, info, progress=progress, device=device)


def _inception_finetuned(info: DatasetInfo, reference: Dataset, config: Any, progress: bool,
                         device: Any) -> Any:  # fmt: skip
    from .inception_finetuned import FinetunedInceptionExtractor

    return FinetunedInceptionExtractor.for_dataset(
        reference, info, fid_weights=config.fid_weights, progress=progress, device=device)


def _weights_file(info: DatasetInfo, reference: Dataset, config: Any, progress: bool,
                  device: Any) -> Any:  # fmt: skip
    from .domain_extractor import DomainExtractor

    return DomainExtractor.from_file(Path(config.feature_extractor).expanduser(), info,
                                     source="weights file (eval option)")  # fmt: skip


#: name -> builder(info, reference, config, progress, device) returning an extractor with
#: ``__call__(images, device) -> (N, d) float64``, ``describe()`` and ``provenance()``; each
#: builder imports its extractor's module only when that extractor is asked for
EXTRACTORS: dict[str, Callable[..., Any]] = {
    "domain": _domain,
    "inception": _inception,
    "inception-finetuned": _inception_finetuned,
}


def is_weights_path(name: str) -> bool:
    """Whether a ``feature_extractor`` value names a weights file (``harness extractor
    train``'s output) rather than a built-in extractor."""
    return name.endswith(".safetensors")


def check_extractor(name: str, key: str = "eval.fid.feature_extractor") -> None:
    """Refuse an unknown extractor name, or a weights path that is not a readable
    domain-extractor file, before any work."""
    if is_weights_path(name):
        try:
            inspect_weights(name)
        except HarnessError as exc:
            raise HarnessError(f"{key}: {exc}") from exc
        return
    if name not in EXTRACTORS:
        close = difflib.get_close_matches(name, list(EXTRACTORS), n=2)
        hint = f" did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise HarnessError(
            f"{key} '{name}' is not known;{hint} Known: {', '.join(EXTRACTORS)}, or the path "
            "of a weights file written by `harness extractor train` (.safetensors)"
        )


def image_batches(dataset: Dataset, batch_size: int) -> Iterator[torch.Tensor]:
    """Yield image tensors (B, C, H, W) from a dataset of ``(image, label)`` items."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in loader:
        yield images_of(batch)


def subset_indices(n_total: int, n_reference: int | None) -> list[int] | None:
    """The reference rows used: None for all of them, else a fixed random subset of
    ``n_reference`` indices (seed 0), sorted."""
    if n_reference is None or n_reference >= n_total:
        return None
    if n_reference < 2:
        raise HarnessError(f"n_reference must be at least 2, got {n_reference}")
    gen = torch.Generator().manual_seed(SUBSET_SEED)
    return sorted(torch.randperm(n_total, generator=gen)[:n_reference].tolist())


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


@dataclass
class ReferenceOptions:
    """The options every feature metric shares (``eval.<metric>.<key>``), declared and
    checked once here: ``fid``, ``fid-inception``, ``kid``, ``prdc`` and ``memorisation``
    subclass it (a subclass may change a default). :meth:`min_reference` is the one rule for
    how many reference images a metric needs: ``n_reference`` is checked against it when the
    options are built, the training set's size before training (:meth:`check_reference`)."""

    #: the metric these options belong to (its ``eval.<metric>`` key, in messages); the
    #: features are ``feature_extractor``: an option of :class:`FeatureOptions`, or a class
    #: attribute of a metric whose features are fixed (``fid-inception``)
    metric: ClassVar[str] = "fid"

    #: pytorch-fid weights file (inception, inception-finetuned); else $HARNESS_FID_WEIGHTS or
    #: the torch hub cache
    fid_weights: str | None = None
    #: training images used as the reference (None: all of them)
    n_reference: int | None = None
    #: images per feature-extraction batch (does not change the value)
    batch_size: int = 256

    def min_reference(self) -> tuple[int, str]:
        """(the fewest reference images the metric can use, why)."""
        return 2, "a covariance, or an unbiased MMD, needs 2"

    def __post_init__(self) -> None:
        key = f"eval.{self.metric}"
        if self.batch_size < 1:
            raise HarnessError(f"{key}.batch_size must be >= 1, got {self.batch_size}")
        need, why = self.min_reference()
        if self.n_reference is not None and self.n_reference < need:
            raise HarnessError(f"{key}.n_reference must be at least {need} ({why}), or unset "
                               f"for all the training images; got {self.n_reference}")

    def check_reference(self, n_train: int) -> None:
        """Before training: the reference (``n_reference`` of the training images, or all
        of them) holds the images the metric needs."""
        need, why = self.min_reference()
        if n_train < need:
            raise ConfigError(f"eval.{self.metric} needs at least {need} reference images "
                              f"({why}), but the training set has {n_train}; raise "
                              f"data.n_train, or drop {self.metric} from eval.metrics")


@dataclass
class FeatureOptions(ReferenceOptions):
    """:class:`ReferenceOptions` and the choice of features (a metric that may use any)."""

    #: domain (default: CNN trained on the dataset's labels) | inception-finetuned | inception,
    #: or the path of a weights file written by `harness extractor train`
    feature_extractor: str = "domain"

    def __post_init__(self) -> None:
        check_extractor(self.feature_extractor, f"eval.{self.metric}.feature_extractor")
        super().__post_init__()


class FeatureMetric:
    """What ``fid``, ``fid-inception``, ``kid`` and the nearest-neighbour metrics share: the
    extractor (built lazily, once), the reference (identity, subset, disk cache) and the
    stamp/details bookkeeping. A subclass sets ``name``, ``version`` and ``Config`` (a
    :class:`ReferenceOptions`)."""

    name = ""
    higher_is_better = False
    #: every protocol of kind samples, a third-party one included (by kind, never by name)
    inputs: tuple[str, ...] = ("samples",)
    version: ClassVar[int]
    Config: ClassVar[type]
    config: Any

    def __init__(self, config: Any = None, *, progress: bool = False,
                 extractor: Any = None) -> None:  # fmt: skip
        self.config = config if config is not None else self.Config()
        self.progress = progress
        self._extractor = extractor  # injected in tests
        self._stamp: dict[str, Any] = {}
        self._details: dict[str, Any] = {}
        self._identity: dict[tuple[int, int], dict[str, Any]] = {}
        self._reference: dict[tuple[Any, ...], tuple[torch.Tensor, str]] = {}

    # -------------------------------------------------------------------- the contract
    def applies(self, info: DatasetInfo) -> bool:
        """Not on synthetic data (bumps: the paper's closed-form ``gaussian-fit`` instead);
        with a dataset-trained extractor, not on unlabelled data (``num_classes`` None)."""
        if info.metadata.get("synthetic", False):
            return False
        if self._extractor is None and (self.extractor_name in LABELLED_EXTRACTORS
                                        or is_weights_path(self.extractor_name)):
            return info.num_classes is not None
        return True

    def why_not(self, info: DatasetInfo) -> str:
        """Why :meth:`applies` says no, in words (metrics.json and the summary)."""
        if info.metadata.get("synthetic", False):
            return (f"dataset '{info.name}' is synthetic: scored by its closed-form error, not "
                    "by image features")
        return (f"dataset '{info.name}' has no labels to train the '{self.extractor_name}' "
                "feature extractor on; use fid-inception or "
                "eval.fid.feature_extractor=inception")

    def stamp(self) -> dict[str, Any]:
        """What defines the last value (the same on every machine, cold or warm cache)."""
        return dict(self._stamp)

    def details(self) -> dict[str, Any]:
        """Provenance of the last value: cache hits, file paths, timings."""
        return dict(self._details)

    def check_sizes(self, sizes: Any) -> None:
        """Before training (:func:`harness.run.preflight.check_eval_sizes`): the
        training set holds the reference the metric needs, and a weights file given as the
        extractor was made for this data's image shape."""
        check = getattr(self.config, "check_reference", None)
        if callable(check):
            check(sizes.n_train)
        least = getattr(self.config, "min_reference", None)
        if callable(least):  # the samples side of the same rule
            need, why = least()
            for key, n in sizes.samples.items():
                if n < need:
                    raise HarnessError(
                        f"eval.{getattr(self.config, 'metric', self.name)} needs at least {need} "
                        f"images of each protocol it scores ({why}), but {key} makes {n}: "
                        f"raise it, or drop the metric from eval.metrics")
        if self._extractor is None and is_weights_path(self.extractor_name):
            try:
                inspect_weights(self.extractor_name, sizes.image_shape)
            except HarnessError as exc:
                key = f"eval.{getattr(self.config, 'metric', self.name)}.feature_extractor"
                raise HarnessError(f"{key}: {exc}") from exc

    # ---------------------------------------------------------------------- internals
    @property
    def extractor_name(self) -> str:
        """The features this metric uses: its options' ``feature_extractor``."""
        return str(self.config.feature_extractor)

    def _get_extractor(self, info: DatasetInfo, reference: Dataset, device: Any) -> Any:
        if self._extractor is None:
            name = self.extractor_name
            build = _weights_file if is_weights_path(name) else EXTRACTORS[name]
            self._extractor = build(info, reference, self.config, self.progress, device)
        return self._extractor

    def _dataset_identity(self, reference: Dataset, info: DatasetInfo) -> dict[str, Any]:
        key = (id(reference), len(reference))  # type: ignore[arg-type]
        if key not in self._identity:
            self._identity[key] = dataset_identity(reference, info)
        return self._identity[key]

    def _features(self, extractor: Any, batches: Any, device: Any, what: str = "",
                  total: int = 0) -> Iterator[torch.Tensor]:  # fmt: skip
        with api.Progress(total, what=f"[eval] {self.name} features of {what}", unit="img",
                          every_s=EVAL_PROGRESS_EVERY_S, leave=False,
                          enabled=self.progress and bool(what)) as bar:  # fmt: skip
            for images in batches:
                feats = extractor(images, device=device)
                bar.advance(int(feats.shape[0]))
                yield feats

    def reference_features(self, reference: Dataset, info: DatasetInfo,
                           device: Any = None) -> torch.Tensor:  # fmt: skip
        """Features (float64 rows) of the reference images this metric uses (all, or
        ``n_reference`` drawn with seed 0): the one reference cache of ``fid``, ``kid`` and
        the nearest-neighbour metrics, kept on this object (shared by the protocols of one
        evaluation) and on disk (``fid-features/``, shared by runs on the same dataset and
        extractor). A subset is cut from the whole set's cached features when those exist."""
        extractor = self._get_extractor(info, reference, device)
        n_ref = getattr(self.config, "n_reference", None)
        key = (id(reference), len(reference), info.name, n_ref)  # type: ignore[arg-type]
        if key in self._reference:
            feats, path_text = self._reference[key]
            self._details.update(reference_features="reused in memory",
                                 reference_features_path=path_text)  # fmt: skip
            return feats
        start = time.perf_counter()
        feats, source, path = self._load_or_compute(extractor, reference, info, device, n_ref)
        path_text = str(path) if path is not None else "(memory only)"
        self._details.update(reference_features=source, reference_features_path=path_text,
                             reference_seconds=round(time.perf_counter() - start, 3))
        self._reference[key] = (feats, path_text)
        return feats

    def _load_or_compute(self, extractor: Any, reference: Dataset, info: DatasetInfo,
                         device: Any, n_ref: int | None) -> tuple[torch.Tensor, str, Any]:  # fmt: skip
        from safetensors.torch import load_file

        path = self._cache_path("features", reference, info, extractor, n_ref)
        if path is not None and path.is_file():
            return load_file(str(path))["features"], "loaded from cache", path
        idx = subset_indices(len(reference), n_ref)  # type: ignore[arg-type]
        whole = self._cache_path("features", reference, info, extractor, None)
        if idx is not None and whole is not None and whole.is_file():
            return load_file(str(whole))["features"][idx], "cut from the cached whole set", whole
        subset = reference if idx is None else Subset(reference, idx)
        batches = image_batches(subset, self.config.batch_size)
        feats = torch.cat(list(self._features(extractor, batches, device, "the reference",
                                              len(subset))))  # type: ignore[arg-type]
        if path is not None:
            write_safetensors_atomic(path, {"features": feats})
        return feats, "computed", path

    def _cache_path(self, kind: str, reference: Dataset, info: DatasetInfo,
                    extractor: Any, n_reference: int | None) -> Path | None:  # fmt: skip
        """Where a reference product (``kind``: stats, features) is cached, or None when the
        extractor has no weights hash (an injected test extractor): memory only then."""
        digest = extractor.describe().get("feature_weights_sha256")
        if not digest:
            return None
        fields = {**self._dataset_identity(reference, info), "kind": kind,
                  "n_reference": n_reference, "subset_seed": SUBSET_SEED,
                  "extractor": digest, "version": REFERENCE_VERSION}  # fmt: skip
        key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
        name = _safe(getattr(extractor, "name", "features"))
        return cache_dir() / f"fid-{kind}" / f"{_safe(info.name)}-{name}-{key}.safetensors"

    def _base_stamp(self, extractor: Any, reference: Dataset, info: DatasetInfo,
                    n_reference: int, n_images: int) -> dict[str, Any]:  # fmt: skip
        ident = self._dataset_identity(reference, info)
        return {
            "metric": self.name,
            "metric_version": self.version,
            **extractor.describe(),
            "reference": "train",
            "reference_dataset": {k: ident[k] for k in ("dataset", "n", "fingerprint")},
            "n_reference": n_reference,
            "n_images": n_images,
            "clamp": "[0, 1] before feature extraction",
        }
