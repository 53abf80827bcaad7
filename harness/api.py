"""The public API a plugin uses: the contracts for models, datasets and metrics.

Built-in plugins import only from here (and :mod:`harness.hookspecs` / :mod:`harness`), so a
third-party plugin can do everything they do. This module does not import torch at import
time: listing plugins stays fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch.utils.data import Dataset


# ---------------------------------------------------------------------------------- datasets
@dataclass
class DatasetInfo:
    """What a model and the protocols need to know about a dataset."""

    name: str
    shape: tuple[int, int, int]  # C, H, W
    num_classes: int | None = None
    source: str = ""  # where the data came from (path, hub id, "generated")
    #: free-form; e.g. bump centres and spread. Known key: ``"synthetic": True`` marks data
    #: scored by a closed-form error rather than by distribution metrics such as FID.
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataSplits:
    """A dataset's splits. Items of every split are ``(image, label)``: ``image`` a float32
    tensor C×H×W in [0, 1], ``label`` an int (-1 when the dataset has no labels)."""

    info: DatasetInfo
    train: Dataset
    test: Dataset
    extra: dict[str, Dataset] = field(default_factory=dict)  # e.g. {"diagonal": ...} for bumps


@dataclass
class DataConfig:
    """The ``data`` section of a run configuration (shared by every dataset)."""

    root: str | None = None  # local directory holding the files
    size: int | None = None  # resize images to size×size
    n_train: int | None = None  # keep only the first n training images
    n_test: int | None = None  # keep only the first n test images
    hub_id: str | None = None  # Hugging Face dataset id or local path for HF-backed datasets
    cache: bool = True  # cache decoded arrays so a second run starts fast
    seed: int = 0  # for datasets that are generated (bumps' test centres)


# ------------------------------------------------------------------------------------ models
class StepContext:
    """What a model's training loss may use besides the batch.

    ``generator`` is seeded identically on every process (from the run seed and the step), so
    noise drawn with :meth:`randn_global` is the same whatever the number of processes.
    """

    def __init__(self, step: int = 0, seed: int = 0, device: Any = None) -> None:
        import torch

        from . import distributed

        self.step = step
        self.seed = seed
        self.device = device
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed((seed * 1_000_003 + step) % (2**63 - 1))
        self.world_size = distributed.world_size()
        self.rank = distributed.rank()

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """All processes' rows of ``tensor`` (batch-first), in rank order, with gradients."""
        from .distributed import gather_with_grad

        return gather_with_grad(tensor)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over processes, with gradients."""
        from .distributed import all_reduce_sum_with_grad

        return all_reduce_sum_with_grad(tensor)

    def randn_global(self, shape: Sequence[int], *, like: torch.Tensor) -> torch.Tensor:
        """Standard normal noise of ``shape`` for a tensor that is already global (gathered):
        the same on every process for the same seed and step."""
        import torch

        noise = torch.randn(tuple(shape), generator=self.generator, dtype=torch.float32)
        return noise.to(device=like.device, dtype=like.dtype)

    def local_sizes(self, n_local: int) -> list[int]:
        """The local batch size of every process, in rank order."""
        import torch

        from . import distributed

        if not distributed.is_distributed():
            return [n_local]
        import torch.distributed as dist

        n = torch.tensor([n_local], dtype=torch.long)
        if dist.get_backend() == "nccl":
            n = n.cuda()
        parts = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, n)
        return [int(p.item()) for p in parts]

    def local_slice(self, n_local: int) -> slice:
        """Where this process's rows sit in a tensor returned by :meth:`gather`."""
        sizes = self.local_sizes(n_local)
        start = sum(sizes[: self.rank])
        return slice(start, start + n_local)

    def randn_local(self, local: torch.Tensor) -> torch.Tensor:
        """Noise shaped like the local batch ``local`` (batch-first), cut from noise drawn for the
        global batch, so that N processes draw exactly what one process would."""
        import torch


        sizes = self.local_sizes(local.shape[0])
        total = sum(sizes)
        start = sum(sizes[: self.rank])
        noise = torch.randn((total, *local.shape[1:]), generator=self.generator)
        return noise[start : start + local.shape[0]].to(device=local.device, dtype=local.dtype)


@runtime_checkable
class GenerativeModel(Protocol):
    """The contract of a model factory's product (a ``torch.nn.Module``).

    The registered factory is the model *class*; the host calls
    ``cls.from_config(cls.Config(**model_section), info)``.
    """

    Config: ClassVar[type]
    config: Any

    @classmethod
    def from_config(cls, config: Any, info: DatasetInfo) -> GenerativeModel: ...

    @property
    def bottleneck_dim(self) -> int:
        """k: the size of the codes :meth:`encode` returns."""
        ...

    @property
    def min_batch_size(self) -> int:
        """The smallest global batch the training loss accepts (k for the rrae family)."""
        ...

    def forward(self, x: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        """The training loss of the *global* batch: ``{"total": ..., "rec": ..., ...}``, each a
        scalar tensor, identical on every process (see :mod:`harness.distributed`)."""
        ...

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic bottleneck codes (B, k) used by the evaluation protocols."""
        ...

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) from bottleneck codes (B, k)."""
        ...

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation-mode reconstruction; equals ``decode(encode(x))``."""
        ...

    def calibrate(self, batches: Iterable[torch.Tensor], ctx: StepContext) -> None:
        """Called once after training with the whole training set (this process's share),
        in eval mode; e.g. the rrae family builds its inference basis. May be a no-op."""
        ...


# ----------------------------------------------------------------------------------- metrics
@runtime_checkable
class Metric(Protocol):
    """A score of a set of images produced by a protocol, against reference images.

    The registered factory is called with the options of the ``eval`` section that the metric
    declares it uses (``factory(**options)``) and returns an object with this interface.
    """

    name: str
    higher_is_better: bool
    #: the protocols whose images the metric scores, among "reconstruction",
    #: "random_generation", "interpolation"; or "codes": the metric then receives the (N, k)
    #: bottleneck codes of the training set instead of images (e.g. a collapse diagnostic)
    protocols: tuple[str, ...]

    def applies(self, info: DatasetInfo) -> bool:
        """Whether the metric makes sense for this dataset (e.g. the Gaussian-fit error needs
        bumps); the protocol runner skips it silently otherwise. Optional: a metric without
        it applies everywhere.

        A metric may also have ``stamp() -> dict``, called after scoring, whose entries (e.g.
        the feature extractor and its weights hash) are added to the record's stamp.
        """
        ...

    def __call__(
        self, images: torch.Tensor, reference: Dataset, info: DatasetInfo, *, device: Any = None
    ) -> dict[str, Any]:
        """Score ``images`` (N, C, H, W), e.g. ``{"fid": 12.3}``: one record per key; values
        are numbers (or lists of numbers, e.g. per-dimension variances)."""
        ...


# ------------------------------------------------------------- FID statistics (lazy exports)
#: Names served lazily by :func:`__getattr__` (they import torch/numpy, this module must not):
#: streaming feature statistics and the Frechet distance for metric plugins (harness/fid.py).
_LAZY_EXPORTS = {
    "FeatureStats": "harness.fid",
    "fid_from_stats": "harness.fid",
    "fid_from_features": "harness.fid",
    "frechet_distance": "harness.fid",
}

if TYPE_CHECKING:  # pragma: no cover
    from .fid import (  # noqa: F401 - re-exported for type checkers
        FeatureStats,
        fid_from_features,
        fid_from_stats,
        frechet_distance,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harness.api' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
