"""Feeding the training loop: batches fetched whole, workers only where they help.

Why: at batch 576 the per-item path (576 ``__getitem__`` calls, each converting one image,
then ``default_collate`` stacking them) was the step on a GPU (``data_wait`` 0.52 at the
MNIST configuration) and on CPU for small models. A dataset that can fetch a whole batch
with one indexing operation says so with a ``fetch_batch(indices)`` method returning the
collated ``(images, labels)``; :func:`make_loader` then calls it once per batch (through
PyTorch's ``__getitems__`` hook) and collates nothing. The built-in in-memory splits
(``harness_plugins.datasets._common.ArrayDataset``: bumps, digits, MNIST, Fashion-MNIST,
CIFAR-10, CelebA from the cache) do.

``fetch_batch`` is deliberately not ``__getitems__`` itself: PyTorch documents
``__getitems__`` as returning a *list of items*, which ``DataLoader(split, batch_size=n)``
with the default collate relies on (the evaluation protocols do that); the wrapper below
gives the batched contract only to loaders built here.

Workers: an in-memory batch costs tens of microseconds, far less than handing it over from a
worker process, so in-memory datasets load in the main process; a dataset that decodes files
per item (``streams_from_disk = True``, e.g. image folders read without the cache) gets
workers chosen from the cores when ``train.num_workers`` is unset.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate

from .errors import ConfigError, HarnessError

#: the most workers chosen automatically (more rarely helps one GPU and costs memory)
MAX_AUTO_WORKERS = 8


def fetches_batches(dataset: Any) -> bool:
    """True when ``dataset`` has ``fetch_batch(indices) -> (images, labels)``."""
    return callable(getattr(dataset, "fetch_batch", None))


def streams_from_disk(dataset: Any) -> bool:
    """True when ``dataset`` decodes files per item and so benefits from worker processes
    (it sets ``streams_from_disk = True``)."""
    return bool(getattr(dataset, "streams_from_disk", False))


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_num_workers(dataset: Any) -> int:
    """Workers when ``train.num_workers`` is unset: 0 for in-memory datasets and datasets
    that do not say they stream; for streaming ones one per core but one (left to the
    training loop), at least 1, at most :data:`MAX_AUTO_WORKERS`."""
    if fetches_batches(dataset) or not streams_from_disk(dataset):
        return 0
    return max(1, min(MAX_AUTO_WORKERS, available_cores() - 1))


def images_of(batch: Any) -> torch.Tensor:
    """The image tensor of a collated ``(image, label)`` batch (or a bare tensor batch)."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, list | tuple):
        return batch[0]
    if isinstance(batch, dict):
        return batch["image"]
    raise HarnessError(f"a training batch must be (image, label) or a tensor, got {type(batch)}")


class _BatchFetching(Dataset):
    """``dataset`` seen through the batched ``__getitems__`` contract of this module: it
    returns the collated batch, so the loader's collate function must not collate again."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __getitems__(self, indices: Sequence[int]) -> Any:
        return self.dataset.fetch_batch(indices)


# Collate functions are module-level classes/functions so worker processes can pickle them.
def _as_is(batch: Any) -> Any:
    return batch


class _ImagesOf:
    """Collate to the image batch only; an empty batch (a process's share of the last
    calibration batch can be empty) becomes a (0, *shape) tensor."""

    def __init__(self, shape: Sequence[int], batched: bool) -> None:
        self.shape, self.batched = tuple(int(d) for d in shape), batched

    def __call__(self, items: Any) -> torch.Tensor:
        if self.batched:
            return images_of(items)
        if not items:
            return torch.empty((0, *self.shape))
        return images_of(default_collate(items))


def make_loader(dataset: Any, batch_sampler: Iterable[Sequence[int]], *,
                num_workers: int | None = None, pin_memory: bool = False,
                generator: torch.Generator | None = None,
                image_shape: Sequence[int] | None = None) -> DataLoader:
    """A ``DataLoader`` over ``dataset`` for the index lists ``batch_sampler`` yields.

    Batches are ``(images, labels)`` as ``default_collate`` would make them (bit for bit),
    or only the images when ``image_shape`` (C, H, W) is given (then an empty index list
    gives a (0, C, H, W) tensor). Datasets with ``fetch_batch`` are fetched one batch per
    call; others item by item. ``num_workers=None`` chooses (:func:`default_num_workers`).
    ``generator`` seeds the workers' base seed without drawing from the global RNG.
    """
    if num_workers is None:
        num_workers = default_num_workers(dataset)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"train.num_workers must be an integer >= 0, or unset to choose "
                          f"automatically; got {num_workers!r}")
    batched = fetches_batches(dataset)
    collate: Any
    if image_shape is not None:
        collate = _ImagesOf(image_shape, batched)
    else:
        collate = _as_is if batched else default_collate
    return DataLoader(
        _BatchFetching(dataset) if batched else dataset,
        batch_sampler=batch_sampler,  # type: ignore[arg-type]
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        generator=generator,
    )


__all__ = [
    "available_cores",
    "default_num_workers",
    "fetches_batches",
    "images_of",
    "make_loader",
    "streams_from_disk",
]
