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
from torch.utils.data import DataLoader, Dataset, default_collate

from harness.api import images_of
from harness.errors import ConfigError

#: the most workers chosen automatically (more rarely helps one GPU and costs memory)
MAX_AUTO_WORKERS = 8
#: the largest in-memory split copied whole to a CUDA device (and at most a quarter of the
#: device's free memory): MNIST, Fashion-MNIST, CIFAR-10 are 50-180 MB; CelebA (12 GB at
#: 160x160) stays on the host and is fetched there, pinned
DEVICE_COPY_MAX_BYTES = 2 << 30


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


class DeviceBatches:
    """Batches indexed on the device from one copy of the whole split there: per batch, one
    small index tensor goes to the device, then one ``index_select`` and, for uint8 images,
    one conversion ``float() / 255`` on the device (a true division by a device tensor, so
    the values equal the host path's bit for bit: IEEE division is correctly rounded on
    both). Iterating it yields what :func:`make_loader`'s DataLoader would, on the device.
    """

    def __init__(self, images: Any, labels: Any, batch_sampler: Iterable[Sequence[int]],
                 device: Any, images_only: bool = False, chunk: int = 8192) -> None:
        import numpy as np

        self.device = torch.device(device)
        self.batch_sampler = batch_sampler
        self.images_only = images_only
        n = int(images.shape[0])
        dtype = torch.uint8 if images.dtype == np.uint8 else torch.float32
        self.images = torch.empty(tuple(images.shape), dtype=dtype, device=self.device)
        for start in range(0, n, chunk):  # chunked: a memory-mapped split is never doubled
            part = np.array(images[start:start + chunk], dtype=images.dtype)
            self.images[start:start + chunk].copy_(torch.from_numpy(part))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64).copy()).to(self.device)
        self.scale = (torch.tensor(255.0, dtype=torch.float32, device=self.device)
                      if dtype == torch.uint8 else None)

    def __len__(self) -> int:
        return len(self.batch_sampler)  # type: ignore[arg-type]

    def __iter__(self) -> Any:
        n = int(self.images.shape[0])
        for indices in self.batch_sampler:
            idx = torch.as_tensor(list(indices), dtype=torch.long)
            if idx.numel():
                low, high = int(idx.min()), int(idx.max())
                if low < -n or high >= n:
                    bad = low if low < -n else high
                    raise IndexError(f"index {bad} out of range for a split of {n} images")
                if low < 0:
                    idx = torch.where(idx < 0, idx + n, idx)
            idx = idx.to(self.device, non_blocking=True)
            images = self.images.index_select(0, idx)
            if self.scale is not None:
                images = images.to(torch.float32).div_(self.scale)
            yield images if self.images_only else (images, self.labels.index_select(0, idx))


def fits_on_device(dataset: Any, device: Any) -> bool:
    """True when ``dataset`` is an in-memory split (``fetch_batch`` and ``images``/``labels``
    arrays) whose images fit on the CUDA ``device``: at most
    :data:`DEVICE_COPY_MAX_BYTES` and a quarter of its free memory."""
    device = torch.device(device) if device is not None else None
    if device is None or device.type != "cuda" or not fetches_batches(dataset):
        return False
    images = getattr(dataset, "images", None)
    if images is None or getattr(dataset, "labels", None) is None or images.ndim != 4:
        return False
    nbytes = int(images.nbytes)
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_COPY_MAX_BYTES and nbytes <= free // 4


def make_loader(dataset: Any, batch_sampler: Iterable[Sequence[int]], *,
                num_workers: int | None = None, pin_memory: bool = False,
                generator: torch.Generator | None = None,
                image_shape: Sequence[int] | None = None, device: Any = None) -> Any:
    """A ``DataLoader`` over ``dataset`` for the index lists ``batch_sampler`` yields.

    Batches are ``(images, labels)`` as ``default_collate`` would make them (bit for bit),
    or only the images when ``image_shape`` (C, H, W) is given (then an empty index list
    gives a (0, C, H, W) tensor). Datasets with ``fetch_batch`` are fetched one batch per
    call; others item by item. ``num_workers=None`` chooses (:func:`default_num_workers`).
    ``generator`` seeds the workers' base seed without drawing from the global RNG.

    With a CUDA ``device``, an in-memory split that fits (:func:`fits_on_device`) is copied
    there once and batches come from :class:`DeviceBatches`, already on the device (unless
    ``num_workers`` asks for worker processes).
    """
    if num_workers is not None and (isinstance(num_workers, bool)
                                    or not isinstance(num_workers, int) or num_workers < 0):
        raise ConfigError(f"train.num_workers must be an integer >= 0, or unset to choose "
                          f"automatically; got {num_workers!r}")
    if not num_workers and fits_on_device(dataset, device):
        return DeviceBatches(dataset.images, dataset.labels, batch_sampler, device,
                             images_only=image_shape is not None)
    if num_workers is None:
        num_workers = default_num_workers(dataset)
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
    "DeviceBatches",
    "available_cores",
    "default_num_workers",
    "fetches_batches",
    "fits_on_device",
    "images_of",
    "make_loader",
    "streams_from_disk",
]
