"""Which images each process sees, and when: the data side of the training loop.

Why a module of its own: the loop's first promise, *the same result whatever the number of
processes*, and half of its second, *resumable bit for bit*, are kept here, by how batches are
drawn, not by the loop.

* ``train.batch_size`` is the *global* batch. Each epoch's order is one permutation drawn
  from a generator seeded by ``(seed, epoch)`` (:func:`epoch_permutation`); global step ``s``
  is batch ``s % batches_per_epoch`` of epoch ``s // batches_per_epoch``, and process ``r``
  of ``N`` takes the contiguous slice ``[r*B/N, (r+1)*B/N)`` of it
  (:class:`ShardedBatchSampler`). Gathering in rank order (``StepContext.gather``)
  therefore rebuilds exactly the batch one process would see.
* The data position follows from the step alone, so a sampler started at a checkpoint's step
  yields exactly the rest of the uninterrupted run.
* The last partial batch of an epoch is dropped (:func:`plan_steps`), so an SVD never sees
  fewer than B columns; calibration (:class:`CalibrationSampler`) then sees every image once.

:func:`make_train_loader` is the one place the training ``DataLoader`` is built, so that how
batches are fetched can change without touching the loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from harness.api import images_of
from harness.configuration.run_config import TrainConfig
from harness.errors import ConfigError


def plan_steps(cfg: TrainConfig, n_train: int, world: int, min_batch: int,
               min_batch_reason: str = "") -> tuple[int, int]:
    """The one check of the global batch against the model (at least its ``min_batch_size``;
    ``min_batch_reason`` says why), the processes and the data; returns ``(total steps,
    batches per epoch)``. (A positive batch and non-negative lengths are
    :class:`~harness.configuration.run_config.TrainConfig`'s own checks.)"""
    b = cfg.batch_size
    if b < min_batch:
        raise ConfigError(
            f"train.batch_size={b} is smaller than the minimum batch {min_batch} of the model"
            + (f" ({min_batch_reason})" if min_batch_reason else "") + "; raise "
            "train.batch_size or change the model's configuration"
        )
    if b % world:
        raise ConfigError(
            f"train.batch_size={b} is the global batch and must split evenly over the {world} "
            f"processes; set train.batch_size to a multiple of {world} (or change the number "
            "of processes)"
        )
    if n_train < b:
        raise ConfigError(
            f"the training set has {n_train} images, fewer than one batch "
            f"(train.batch_size={b}); lower train.batch_size or raise data.n_train"
        )
    bpe = n_train // b
    total = cfg.steps if cfg.steps is not None else (cfg.epochs or 0) * bpe
    return total, bpe


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of epoch ``epoch``: the same on every process and for every process count."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_033 + epoch * 7_919 + 12_345) % (2**63 - 1))
    return torch.randperm(n, generator=g)


class ShardedBatchSampler(Sampler[list[int]]):
    """Yields this process's share of global batches ``start_step .. total_steps - 1``.

    Global step ``s`` is batch ``s % batches_per_epoch`` of epoch ``s // batches_per_epoch``;
    process ``rank`` gets the contiguous slice ``[rank*B/N, (rank+1)*B/N)`` of it, so the
    processes' slices in rank order are exactly the one-process batch.
    """

    def __init__(self, n: int, batch_size: int, world_size: int, rank: int, *, seed: int,
                 start_step: int, total_steps: int) -> None:
        self.n = n
        self.batch_size = batch_size
        self.per_process = batch_size // world_size
        self.rank = rank
        self.seed = seed
        self.start_step = start_step
        self.total_steps = total_steps
        self.batches_per_epoch = n // batch_size

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def __iter__(self) -> Iterator[list[int]]:
        bpe = self.batches_per_epoch
        lo = self.rank * self.per_process
        perm: list[int] = []
        epoch = -1
        for step in range(self.start_step, self.total_steps):
            if step // bpe != epoch:
                epoch = step // bpe
                perm = epoch_permutation(self.n, self.seed, epoch).tolist()
            start = (step % bpe) * self.batch_size + lo
            yield perm[start : start + self.per_process]


class CalibrationSampler(Sampler[list[int]]):
    """The whole training set once, in order: global batches of ``batch_size`` consecutive
    indices (the last one smaller), each split over the processes in rank order (sizes
    differing by at most one). Every process yields the same number of batches, so collective
    calls inside ``calibrate`` line up; a process may get an empty last batch."""

    def __init__(self, n: int, batch_size: int, world_size: int, rank: int) -> None:
        self.n, self.batch_size, self.world, self.rank = n, batch_size, world_size, rank

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(0, self.n, self.batch_size):
            m = min(self.batch_size, self.n - start)
            base, extra = divmod(m, self.world)
            lo = start + self.rank * base + min(self.rank, extra)
            size = base + (1 if self.rank < extra else 0)
            yield list(range(lo, lo + size))


def make_train_loader(dataset: Dataset, sampler: ShardedBatchSampler, *,
                      num_workers: int | None, device: torch.device, seed: int) -> Any:
    """The training loader: ``sampler``'s batches of ``dataset``, fetched a whole batch at a
    time where the dataset can (:func:`harness.training.feeding.make_loader`)."""
    from harness.training.feeding import make_loader

    # a generator of our own, so making the iterator does not draw from the global RNG
    return make_loader(dataset, sampler, num_workers=num_workers,
                       pin_memory=device.type == "cuda", device=device,
                       generator=torch.Generator().manual_seed(seed))


def timed_batches(loader: Iterable[Any],
                  device: torch.device) -> Iterator[tuple[torch.Tensor, float]]:
    """``(images on device, seconds waited for them)`` for each batch of ``loader``; the
    wait (fetching, collating, copying to the device) is what the log's ``data_wait`` sums."""
    clock = time.perf_counter
    batches = iter(loader)
    while True:
        t0 = clock()
        try:
            batch = next(batches)
        except StopIteration:
            return
        x = images_of(batch).to(device, non_blocking=True)
        yield x, clock() - t0


def make_calibration_loader(dataset: Dataset, shape: tuple[int, ...], *, batch_size: int,
                            world: int, rank: int, num_workers: int | None,
                            device: torch.device) -> Any:
    """Every image of ``dataset`` exactly once over all processes (see
    :class:`CalibrationSampler`), as image batches; a process's share may be empty."""
    from harness.training.feeding import make_loader

    per = max(1, batch_size // world)
    return make_loader(dataset, CalibrationSampler(len(dataset), per * world, world, rank),  # type: ignore[arg-type]
                       num_workers=num_workers, pin_memory=device.type == "cuda",
                       image_shape=shape, device=device)
