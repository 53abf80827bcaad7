"""The public API a plugin uses: the contracts for models, datasets, protocols and metrics,
and the host services they may call.

Plugins (the built-in ones included: a test enforces it) import only from here,
:mod:`harness` (which re-exports the most used names), :mod:`harness.hookspecs` and
:mod:`harness.errors`, so a third-party plugin can do everything a built-in one does. This
module does not import torch at import time: listing plugins stays fast. The services
(collectives, atomic writes, model files, FID statistics) are imported on first use, through
the module ``__getattr__`` at the end.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from harness.errors import ConfigError, HarnessError

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


def images_of(batch: Any) -> torch.Tensor:
    """The image tensor of a collated ``(image, label)`` batch (or a bare tensor batch, or a
    ``{"image": ...}`` dict): the one place a batch is unwrapped, for the host and plugins."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, list | tuple):
        return batch[0]
    if isinstance(batch, dict):
        return batch["image"]
    raise HarnessError(f"a training batch must be (image, label) or a tensor, got {type(batch)}")


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
    # fraction of the training split held out as a validation split that REPLACES the test
    # split for the whole run (harness.training.validation_split); the test set is then never touched
    validation: float | None = None

    def __post_init__(self) -> None:
        """Every value checked once, when the section is built: an empty split, a 0-pixel
        image or a validation fraction outside (0, 1) is refused before any work."""
        for key in ("size", "n_train", "n_test"):
            value = getattr(self, key)
            if value is not None and value < 1:
                what = "pixels per side" if key == "size" else "images"
                raise ConfigError(f"data.{key} must be at least 1 ({what}), or unset; got {value}")
        if self.seed < 0:
            raise ConfigError(f"data.seed must be >= 0 (it seeds NumPy's generator), got {self.seed}")
        for key in ("root", "hub_id"):
            value = getattr(self, key)
            if value is not None and ("\x00" in value or not value.strip()):
                raise ConfigError(f"data.{key} must be a non-empty path or id without NUL bytes, "
                                  f"got {value!r}")
        if self.validation is not None and not 0.0 < float(self.validation) < 1.0:
            raise ConfigError(f"data.validation must be a fraction strictly between 0 and 1 "
                              f"(e.g. 0.1), got {self.validation}")


# ------------------------------------------------------------------------------------ models
class StepContext:
    """What a model's training loss may use besides the batch.

    ``generator`` is seeded identically on every process (from the run seed and the step), so
    noise drawn with :meth:`randn_global` is the same whatever the number of processes.
    """

    def __init__(self, step: int = 0, seed: int = 0, device: Any = None) -> None:
        import torch

        from harness import distributed

        self.step = step
        self.seed = seed
        self.device = device
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed((seed * 1_000_003 + step) % (2**63 - 1))
        self.world_size = distributed.world_size()
        self.rank = distributed.rank()

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """All processes' rows of ``tensor`` (batch-first), in rank order, with gradients."""
        from harness.distributed import gather_with_grad

        return gather_with_grad(tensor)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over processes, with gradients."""
        from harness.distributed import all_reduce_sum_with_grad

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

        from harness import distributed

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


# What a model can do (sample, encoder, reconstruct, prior) and the rules about it live in
# harness.host.capabilities, which the plugin registry uses too; re-exported here as API.
from harness.host.capabilities import (  # noqa: E402 - re-exported for plugins
    CAPABILITIES,
    CAPABILITY_WORDS,
    check_model_class,
    declared_capabilities,
    does_not_apply,
    model_capabilities,
)

#: the names above are part of this module's API (ruff: not unused)
_REEXPORTED = (CAPABILITIES, CAPABILITY_WORDS, check_model_class, declared_capabilities,
               does_not_apply)


@runtime_checkable
class GenerativeModel(Protocol):
    """The contract of a model factory's product (a ``torch.nn.Module``).

    The registered factory is the model *class*; the host calls
    ``cls.from_config(cls.Config(**model_section), info)``. Beyond this base, a model declares
    what else it can do in ``capabilities`` (a set of :data:`CAPABILITIES` names) and has the
    matching members: ``sample`` (:class:`Sampling`, the base contract of a new model),
    ``encoder`` (:class:`Encoding`), ``reconstruct`` (:class:`Reconstructing`), ``prior``
    (decoding N(0, I) codes makes samples: ``has_prior``). A model declaring a capability
    without its members is refused when its plugin's factory is loaded, naming the plugin.

    Training: ``forward(x, ctx)`` returns the loss parts, and the host takes one optimizer
    step on ``"total"``; or the model owns its step (:class:`OwnsTrainingStep`: several
    optimizers, alternating updates, EMA weights). Optional: ``min_batch_size`` (the smallest
    global batch the training accepts; with ``min_batch_reason``) and ``calibrate(batches,
    ctx)`` (called once after training with the training set, in eval mode).
    """

    Config: ClassVar[type]
    config: Any

    @classmethod
    def from_config(cls, config: Any, info: DatasetInfo) -> GenerativeModel: ...

    def forward(self, x: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        """The training loss of the *global* batch: ``{"total": ..., "rec": ..., ...}``, each a
        scalar tensor, identical on every process (see :mod:`harness.distributed`)."""
        ...


@runtime_checkable
class Sampling(Protocol):
    """Capability ``sample``: draw images from the trained model."""

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` images (n, C, H, W), on the dataset's scale, drawn with ``generator`` (a
        seeded CPU generator: draw noise on the CPU, then move it) so that evaluation is
        reproducible. Called in eval mode, without gradients."""
        ...


@runtime_checkable
class Encoding(Protocol):
    """Capability ``encoder``: images to deterministic codes and back."""

    @property
    def bottleneck_dim(self) -> int:
        """k: the size of the codes :meth:`encode` returns."""
        ...

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic bottleneck codes (B, k) used by the evaluation protocols."""
        ...

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) from bottleneck codes (B, k)."""
        ...


@runtime_checkable
class Reconstructing(Protocol):
    """Capability ``reconstruct``."""

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation-mode reconstruction; for an encoder, ``decode(encode(x))``."""
        ...


class OptimizerUpdate(Protocol):
    """What the host hands a model that owns its step: ``update(name, loss)`` checks that the
    loss is finite (a NaN stops the run before the update is applied), back-propagates it
    through Accelerate (mixed precision, the fp16 scaler), averages the gradients over
    processes, clips them (``train.grad_clip``), steps optimizer ``name`` and zeroes its
    gradients."""

    def __call__(self, name: str, loss: torch.Tensor) -> None: ...


@runtime_checkable
class OwnsTrainingStep(Protocol):
    """A model that owns its training step (a GAN's alternating updates, a diffusion model's
    EMA weights), without the host knowing its family.

    The host builds the optimizers once with :meth:`configure_optimizers` (every param group
    at ``train.lr``: a resumed run may lower it), saves and restores them in checkpoints, and
    calls :meth:`training_step` once a step with this process's share of the global batch.
    Losses are means over the local batch: the host averages gradients over processes, so N
    processes at B/N step like one at B (draw noise with ``ctx.randn_local``, and use no
    batch statistics such as BatchNorm's). Weights the step changes outside an optimizer (an
    EMA copy) are buffers, so checkpoints hold them."""

    def configure_optimizers(self, train: Any) -> dict[str, Any]:
        """``{name: torch.optim.Optimizer}``, built on disjoint parameter sets with
        ``lr=train.lr`` (``train``: the run's ``train`` section)."""
        ...

    def training_step(self, x: torch.Tensor, ctx: StepContext, update: OptimizerUpdate
                      ) -> dict[str, torch.Tensor]:
        """One step: call ``update(name, loss)`` for each optimizer, in order; return the loss
        parts to log (scalar tensors)."""
        ...


# ------------------------------------------------------------------------------ display
@dataclass(frozen=True)
class ValueDisplay:
    """How one number a protocol or metric produces is shown to a reader: its name in words,
    its unit, and which direction is better.

    A protocol or metric class declares ``display = {"key": ValueDisplay(...), ...}`` for
    the keys it returns (a ``key_std`` without an entry is shown as the spread of ``key``);
    a component that declares nothing is shown by its raw key with the direction of its
    ``higher_is_better``. A protocol may also declare ``title`` (its name in words)."""

    name: str
    unit: str = ""  # e.g. "%"; "" for a pure number
    higher_is_better: bool | None = None  # None: a diagnostic with no better direction
    description: str = ""  # one short sentence: what the number measures

    @property
    def direction(self) -> str:
        """``"higher is better"``, ``"lower is better"`` or ``""``."""
        if self.higher_is_better is None:
            return ""
        return "higher is better" if self.higher_is_better else "lower is better"


@dataclass
class GridLabels:
    """The labels of an image grid (:func:`harness.evaluation.figures.labelled_grid`): a title, one
    label per row and per column (either may be empty), and the columns / rows whose tiles
    are framed in colour (e.g. an interpolation's two real endpoints)."""

    title: str = ""
    row_labels: list[str] = field(default_factory=list)
    col_labels: list[str] = field(default_factory=list)
    marked_cols: list[int] = field(default_factory=list)
    marked_rows: list[int] = field(default_factory=list)


# --------------------------------------------------------------------------------- protocols
@dataclass
class ProtocolOutput:
    """What a protocol's ``run`` returns.

    ``data``: what metrics score, a CPU float tensor: images (N, C, H, W) in [0, 1] for the
    kinds ``"samples"`` and ``"reconstructions"``, codes (N, k) for ``"codes"`` (None when no
    selected metric scores this protocol: ``ctx.needs_data`` is False). ``values``: the
    protocol's own numbers (e.g. ``{"rec_error_percent": 5.3}``), one metrics.json record
    each. ``stamp``: everything that defines those numbers and the data (sample counts,
    sampler, reference split...); the host adds the protocol version, seed, dataset and image
    size. ``details``: provenance that does not define a number (timings, batch-dependent
    side values). ``preview``: up to 64 images for the run's PNG grid, ``preview_nrow`` a row,
    ``preview_labels`` its title and labels (:class:`GridLabels`).
    """

    data: Any = None
    values: dict[str, float] = field(default_factory=dict)
    stamp: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    preview: Any = None
    preview_nrow: int = 8
    preview_labels: GridLabels | None = None
    split: str = "train"  # the split the values were computed on / metrics compare against
    higher_is_better: bool = False  # direction of ``values``


@runtime_checkable
class EvaluationProtocol(Protocol):
    """The contract of a protocol factory's product. The registered factory is the class;
    the host calls ``cls(cls.Config(**eval_section))`` (``cls()`` when it has no ``Config``)
    and then ``run(ctx)`` once per evaluation, on the main process, model in eval mode.

    Class attributes: ``kind`` (``"samples"``, ``"reconstructions"`` or ``"codes"``: what
    ``data`` holds, which decides the metrics that score it) and ``version`` (an int stamped
    on every number; bump it when the protocol's definition changes).
    """

    kind: ClassVar[str]
    version: ClassVar[int]

    def run(self, ctx: EvalContext) -> ProtocolOutput:
        """Produce the protocol's data and values (see :class:`ProtocolOutput`)."""
        ...


#: raises the evaluation memory limit of :class:`EvalSizes` (in GB), when a large evaluation
#: is deliberate
EVAL_MEMORY_ENV = "HARNESS_EVAL_MEMORY_GB"


@dataclass(frozen=True)
class EvalSizes:
    """What an evaluation's sizes are checked against before training: the splits' sizes,
    the image shape, and the memory the evaluation may fill (``memory_bytes``: half of this
    machine's memory, or ``$HARNESS_EVAL_MEMORY_GB``).

    A protocol may define ``check_sizes(self, sizes: EvalSizes)``; the host calls it before
    any training (and before ``harness evaluate``), so a size no evaluation can hold is an
    ``Error:`` line naming the key, the limit and how to lift it, not an out-of-memory
    crash after training. :meth:`images` and :meth:`at_most` word those refusals."""

    n_train: int
    n_test: int
    image_shape: tuple[int, ...]
    memory_bytes: int
    #: the samples each selected protocol will make, recorded by its ``check_sizes`` through
    #: :meth:`produces` (protocols are checked before metrics): the option that sets the
    #: count -> the count, so a metric can refuse too few for it before training
    samples: dict[str, int] = field(default_factory=dict)

    def _lift(self) -> str:
        return (f"lower it, or, if this is deliberate and the machine can hold it, raise the "
                f"limit with {EVAL_MEMORY_ENV}=<GB>")

    def images(self, key: str, value: int, n_images: int, what: str) -> None:
        """Refuse ``key=value`` when ``n_images`` float32 images of :attr:`image_shape`
        (``what`` they are) would not fit :attr:`memory_bytes`."""
        per_image = 4
        for side in self.image_shape:
            per_image *= int(side)
        self.memory(key, value, n_images * per_image,
                    f"{what}: {n_images} images of {'x'.join(map(str, self.image_shape))}")

    def memory(self, key: str, value: int, n_bytes: int, what: str) -> None:
        """Refuse ``key=value`` when what it makes (``what``, ``n_bytes``) exceeds the limit."""
        if n_bytes > self.memory_bytes:
            raise ConfigError(
                f"{key}={value} is too large: {what} need {n_bytes / 1e9:.3g} GB, more than the "
                f"evaluation memory limit of {self.memory_bytes / 1e9:.3g} GB; {self._lift()}")

    def produces(self, key: str, n_images: int) -> None:
        """Record that the protocol option ``key`` makes ``n_images`` samples to be scored."""
        self.samples[key] = int(n_images)

    def at_most(self, key: str, value: int, limit: int, why: str) -> None:
        """Refuse ``key=value`` above ``limit`` (``why`` names where the limit comes from)."""
        if value > limit:
            raise ConfigError(f"{key}={value} is too large: at most {limit} ({why}); lower it")


class EvalContext:
    """What a protocol may use: the trained model, the data, the seed, and helpers that
    batch, move to the model's device and cache (the training codes are encoded once per
    evaluation and shared by every protocol that asks for them).

    ``needs_data`` says whether a selected metric will score the current protocol's data
    (a protocol may skip producing it otherwise). ``log(message)`` prints a progress line.
    """

    def __init__(self, model: Any, splits: DataSplits, *, seed: int, batch_size: int = 256,
                 device: Any = None, progress: bool = False) -> None:
        self.model = model
        self.splits = splits
        self.info = splits.info
        self.seed = seed
        self.batch_size = batch_size
        self.device = device if device is not None else _model_device(model)
        self.progress = progress
        self.needs_data = True
        self.capabilities = model_capabilities(model)  # what the protocols may ask of it
        self._codes: dict[str, Any] = {}

    def log(self, message: str) -> None:
        if self.progress:
            import sys

            print(f"[eval] {message}", file=sys.stderr, flush=True)

    def batches(self, dataset: Dataset, batch_size: int | None = None) -> Iterator[torch.Tensor]:
        """The image tensors of ``dataset`` in order, ``batch_size`` (default: eval's) at a
        time, on the CPU."""
        from torch.utils.data import DataLoader

        for batch in DataLoader(dataset, batch_size=batch_size or self.batch_size,
                                shuffle=False):
            yield images_of(batch)

    def images(self, dataset: Dataset, indices: Sequence[int]) -> torch.Tensor:
        """The images at ``indices`` of ``dataset``, stacked (N, C, H, W) float32."""
        import torch

        return torch.stack([torch.as_tensor(dataset[int(i)][0]) for i in indices]).float()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Bottleneck codes (N, k) of ``images`` (batched, on the model's device), on the CPU."""
        return self._map(self.model.encode, images)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Images decoded from ``codes`` (batched, on the model's device), on the CPU."""
        return self._map(self.model.decode, codes)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self._map(self.model.reconstruct, images)

    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        """``n`` images from the model's own sampler (capability ``sample``), ``batch_size`` at
        a time, on the CPU; one CPU generator seeded with ``seed`` (default: the evaluation's)
        draws them all, so the same seed gives the same images."""
        import torch

        gen = torch.Generator().manual_seed(self.seed if seed is None else seed)
        parts = []
        with torch.no_grad():
            for start in range(0, n, self.batch_size):
                size = min(self.batch_size, n - start)
                parts.append(self.model.sample(size, gen).detach().float().cpu())
        return torch.cat(parts) if parts else torch.zeros((0, *self.info.shape))

    def encode_split(self, split: str = "train") -> torch.Tensor:
        """Codes of every image of a split (``"train"``, ``"test"`` or an extra split),
        computed once per evaluation."""
        if split not in self._codes:
            import torch

            dataset = self.split(split)
            with torch.no_grad():
                parts = [self.model.encode(x.to(self.device)).detach().float().cpu()
                         for x in self.batches(dataset)]
            if not parts:
                raise HarnessError(f"the {split} split of '{self.info.name}' is empty: "
                                   "nothing to encode")
            self._codes[split] = torch.cat(parts)
        return self._codes[split]  # type: ignore[no-any-return]

    def split(self, name: str) -> Dataset:
        if name == "train":
            return self.splits.train
        if name == "test":
            return self.splits.test
        if name in self.splits.extra:
            return self.splits.extra[name]
        raise HarnessError(f"dataset '{self.info.name}' has no split '{name}'; it has train, "
                           f"test{''.join(', ' + k for k in self.splits.extra)}")

    def _map(self, fn: Any, tensor: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad():
            out = [fn(tensor[i : i + self.batch_size].to(self.device)).detach().float().cpu()
                   for i in range(0, tensor.shape[0], self.batch_size)]
        if not out:
            return tensor.new_zeros((0,))
        return torch.cat(out)


def _model_device(model: Any) -> Any:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return "cpu"


# ----------------------------------------------------------------------------------- metrics
@runtime_checkable
class Metric(Protocol):
    """A score of the data a protocol produced, against reference images (the split the
    protocol names, the training set for generated images).

    The registered factory is a class with an optional ``Config`` dataclass (the
    ``eval.<name>`` section): the host calls ``factory(config)`` (``factory()`` without a
    ``Config``), adding ``progress=True/False`` when the factory accepts that keyword.

    Which protocols it scores: every protocol whose ``kind`` is in ``inputs`` (e.g.
    ``("samples",)`` scores random generation, interpolation and any third-party protocol
    producing samples), and every protocol named in ``protocols``. Both are optional
    tuples (default empty).
    """

    name: str
    higher_is_better: bool

    def applies(self, info: DatasetInfo) -> bool:
        """Whether the metric makes sense for this dataset (e.g. the Gaussian-fit error needs
        bumps); the host skips it silently otherwise. Optional: a metric without it applies
        everywhere.

        Also optional: ``stamp() -> dict`` (called after scoring; everything that defines the
        number, e.g. the feature extractor and its weights hash, merged into the record's
        stamp) and ``details() -> dict`` (provenance, e.g. cache hits and paths, kept apart
        from the stamp so the same protocol gets the same stamp on every machine).
        """
        ...

    def __call__(
        self, images: torch.Tensor, reference: Dataset, info: DatasetInfo, *, device: Any = None
    ) -> dict[str, Any]:
        """Score ``images`` (N, C, H, W), or codes (N, k) for a ``"codes"`` protocol, e.g.
        ``{"fid": 12.3}``: one record per key; values are numbers (or lists of numbers, e.g.
        per-dimension variances)."""
        ...


def load_dataset(name: str, config: DataConfig | None = None) -> DataSplits:
    """A registered dataset's splits, by name, loaded as a run would (``config``: its
    ``data`` section, defaults when None), for plugin commands that need a dataset (e.g.
    ``harness extractor train``). An unknown name raises the registry's error."""
    from harness.host.plugins import get_host

    return get_host().get("dataset", name).load()(config if config is not None else DataConfig())


# ----------------------------------------------------------------------- host services
#: name -> "module:attribute" of the services plugins may use, imported on first access (they
#: import torch/numpy, this module must not): collectives, atomic writes, the model format,
#: and the streaming feature statistics and Frechet distance for metric plugins.
_SERVICES = {
    "all_reduce_sum": "harness.distributed:all_reduce_sum",
    "atomic_path": "harness.rundir.atomic:atomic_path",
    "atomic_write_bytes": "harness.rundir.atomic:atomic_write_bytes",
    "atomic_write_text": "harness.rundir.atomic:atomic_write_text",
    "atomic_write_json": "harness.rundir.atomic:atomic_write_json",
    "build_once": "harness.rundir.atomic:build_once",
    "file_sha256": "harness.rundir.atomic:file_sha256",
    "labelled_grid": "harness.evaluation.figures:labelled_grid",
    "save_labelled_grid": "harness.evaluation.figures:save_labelled_grid",
    "save_model": "harness.rundir.modelfiles:save_model",
    "build_config": "harness.configuration.run_config:build_dataclass",
    "cache_dir": "harness.training.resources:cache_dir",
    "Progress": "harness.progress:Progress",
    "read_model_files": "harness.rundir.modelfiles:read_model_files",
    "FeatureStats": "harness.evaluation.fid:FeatureStats",
    "fid_from_stats": "harness.evaluation.fid:fid_from_stats",
    "fid_from_features": "harness.evaluation.fid:fid_from_features",
    "frechet_distance": "harness.evaluation.fid:frechet_distance",
}

def __getattr__(name: str) -> Any:
    target = _SERVICES.get(name)
    if target is None:
        raise AttributeError(f"module 'harness.api' has no attribute '{name}'")
    import importlib

    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
