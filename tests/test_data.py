"""Batched fetching (harness.training.feeding): the same items, bit for bit, as per-item fetching plus
default_collate, for every in-memory dataset; worker defaults; the loader's contracts."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from datasets_fixtures import (  # noqa: E402, F401
    isolated_fixture,
    random_images,
    write_celeba,
    write_cifar_batches,
    write_class_folder,
    write_mnist_like,
    write_parquet_split,
)
from harness_plugins.datasets import bumps, celeba, cifar10, digits, mnist  # noqa: E402
from harness_plugins.datasets._common import ArrayDataset  # noqa: E402
from harness_plugins.datasets.folders import ImageFileDataset  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torch.utils.data._utils.collate import default_collate  # noqa: E402

from harness.api import DataConfig  # noqa: E402
from harness.errors import ConfigError  # noqa: E402
from harness.training import feeding as hdata  # noqa: E402
from harness.training.loop import ShardedBatchSampler  # noqa: E402


def _in_memory_splits(name: str, root) -> list:  # type: ignore[no-untyped-def]
    """Every split of one built-in dataset, loaded from fixtures in its real file format,
    with the cache on (memory-mapped arrays) and off (plain arrays)."""
    out = []
    for cache in (True, False):
        if name == "bumps":
            s = bumps.load(DataConfig(cache=cache))
        elif name == "digits":
            s = digits.load(DataConfig(cache=cache))
        elif name in ("mnist", "fashion-mnist"):
            write_mnist_like(root / name, n_train=40, n_test=9)
            loader = mnist.load_mnist if name == "mnist" else mnist.load_fashion_mnist
            s = loader(DataConfig(root=str(root / name), cache=cache))
        elif name == "cifar10-batches":
            write_cifar_batches(root / "cifar-10-batches-py", per_batch=6)
            s = cifar10.load(DataConfig(root=str(root), cache=cache))
        elif name == "cifar10-parquet":
            folder = root / "hub" / "plain_text"
            write_parquet_split(folder / "train-00000-of-00001.parquet",
                                random_images(11, (3, 32, 32), 1), np.arange(11) % 10)
            write_parquet_split(folder / "test-00000-of-00001.parquet",
                                random_images(3, (3, 32, 32), 2), [9, 8, 7])
            s = cifar10.load(DataConfig(root=str(root / "hub"), cache=cache))
        elif name == "celeba":
            write_celeba(root / "celeba", [0, 0, 0, 0, 1, 2, 2])
            s = celeba.load(DataConfig(root=str(root / "celeba"), size=24, cache=cache))
        else:  # pragma: no cover
            raise AssertionError(name)
        out += [s.train, s.test, *s.extra.values()]
    return out


IN_MEMORY = ["bumps", "digits", "mnist", "fashion-mnist", "cifar10-batches",
             "cifar10-parquet", "celeba"]


@pytest.mark.parametrize("name", IN_MEMORY)
def test_batched_fetch_equals_per_item_fetch_bit_for_bit(name: str, isolated) -> None:
    splits = _in_memory_splits(name, isolated / "data")
    assert splits
    for split in splits:
        if isinstance(split, ImageFileDataset):  # image files read without the cache
            assert hdata.streams_from_disk(split) and not hdata.fetches_batches(split)
            continue
        assert isinstance(split, ArrayDataset) and hdata.fetches_batches(split)
        n = len(split)
        g = torch.Generator().manual_seed(n)
        for indices in (torch.randperm(n, generator=g)[: min(n, 7)].tolist(), [n - 1, 0, -1],
                        list(range(n))):
            want_images, want_labels = default_collate([split[i] for i in indices])
            images, labels = split.fetch_batch(indices)
            assert images.dtype == want_images.dtype == torch.float32
            assert labels.dtype == want_labels.dtype == torch.int64
            assert torch.equal(images, want_images) and torch.equal(labels, want_labels)
            # the plain DataLoader path (__getitems__ as PyTorch documents it) agrees too
            items = split.__getitems__(indices)
            assert all(isinstance(label, int) for _, label in items)
            again = default_collate(items)
            assert torch.equal(again[0], want_images) and torch.equal(again[1], want_labels)
        # a plain DataLoader with the default collate still works (evaluation uses one)
        first = next(iter(DataLoader(split, batch_size=min(n, 3))))
        assert torch.equal(first[0], default_collate([split[i] for i in range(min(n, 3))])[0])


def test_batched_fetch_of_uint8_divides_by_255_and_checks_the_range() -> None:
    images = np.arange(2 * 1 * 2 * 2, dtype=np.uint8).reshape(2, 1, 2, 2) * 17
    split = ArrayDataset(images, np.array([3, 4]))
    batch, labels = split.fetch_batch([1, 0])
    assert torch.equal(batch, torch.from_numpy(images[[1, 0]].astype(np.float32)) / 255.0)
    assert labels.tolist() == [4, 3]
    empty, no_labels = split.fetch_batch([])
    assert empty.shape == (0, 1, 2, 2) and no_labels.shape == (0,)
    with pytest.raises(IndexError, match="index 2 out of range"):
        split.fetch_batch([0, 2])
    with pytest.raises(IndexError, match="index -3 out of range"):
        split.fetch_batch([-3])


def test_make_loader_yields_the_per_item_batches_of_the_training_sampler() -> None:
    rng = np.random.default_rng(0)
    split = ArrayDataset(rng.integers(0, 256, (50, 1, 4, 4), dtype=np.uint8),
                         rng.integers(0, 10, 50))

    def sampler() -> ShardedBatchSampler:
        return ShardedBatchSampler(50, 8, 2, 1, seed=3, start_step=2, total_steps=14)

    fast = list(hdata.make_loader(split, sampler(), num_workers=0))
    # a plain DataLoader (ArrayDataset.__getitems__ returning items) and the per-item path
    slow = list(DataLoader(split, batch_sampler=sampler(), num_workers=0))
    reference = [default_collate([split[i] for i in idx]) for idx in sampler()]
    assert len(fast) == len(reference) == len(slow) == 12
    for got, plain, want in zip(fast, slow, reference, strict=True):
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert torch.equal(plain[0], want[0]) and torch.equal(plain[1], want[1])
    # images only, as calibration wants them; an empty index list gives (0, C, H, W)
    shape = (1, 4, 4)
    batches = list(hdata.make_loader(split, [[0, 1], [], [5]], num_workers=0,
                                     image_shape=shape))
    assert [tuple(b.shape) for b in batches] == [(2, 1, 4, 4), (0, 1, 4, 4), (1, 1, 4, 4)]
    assert torch.equal(batches[2][0], split[5][0])


def test_make_loader_with_workers_gives_the_same_batches() -> None:
    rng = np.random.default_rng(1)
    split = ArrayDataset(rng.integers(0, 256, (20, 1, 3, 3), dtype=np.uint8))
    plan = [[3, 1, 4], [15, 9, 2], [6, 5, 3]]
    a = list(hdata.make_loader(split, plan, num_workers=2))
    b = list(hdata.make_loader(split, plan, num_workers=0))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])


class _PerItem(torch.utils.data.Dataset):
    """A dataset with only __getitem__ (as a third-party plugin might give)."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.full((1, 2, 2), float(index)), index


def test_make_loader_falls_back_to_the_per_item_path() -> None:
    split = _PerItem()
    assert not hdata.fetches_batches(split) and hdata.default_num_workers(split) == 0
    images, labels = next(iter(hdata.make_loader(split, [[4, 2]])))
    assert images[:, 0, 0, 0].tolist() == [4.0, 2.0] and labels.tolist() == [4, 2]
    only = list(hdata.make_loader(split, [[1], []], image_shape=(1, 2, 2)))
    assert only[0].shape == (1, 1, 2, 2) and only[1].shape == (0, 1, 2, 2)


def test_default_workers_in_memory_none_streaming_from_the_cores(isolated,
                                                                 monkeypatch) -> None:
    assert hdata.default_num_workers(bumps.load(DataConfig()).train) == 0
    classes = list(cifar10.CLASSES)
    data = {"train": (random_images(2, (3, 32, 32), 5), np.array([0, 3])),
            "test": (random_images(1, (3, 32, 32), 6), np.array([1]))}
    write_class_folder(isolated / "folder", data, classes)
    lazy = cifar10.load(DataConfig(root=str(isolated / "folder"), cache=False)).train
    assert isinstance(lazy, ImageFileDataset) and hdata.streams_from_disk(lazy)
    for cores, want in ((1, 1), (2, 1), (6, 5), (64, hdata.MAX_AUTO_WORKERS)):
        monkeypatch.setattr(hdata, "available_cores", lambda cores=cores: cores)
        assert hdata.default_num_workers(lazy) == want
    monkeypatch.setattr(hdata, "available_cores", lambda: 3)
    assert hdata.make_loader(lazy, [[0]]).num_workers == 2
    assert hdata.make_loader(lazy, [[0]], num_workers=0).num_workers == 0


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_num_workers_is_a_config_error(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="train.num_workers must be an integer >= 0"):
        hdata.make_loader(_PerItem(), [[0]], num_workers=bad)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_device_batches_equal_the_host_path_bit_for_bit(dtype) -> None:  # type: ignore[no-untyped-def]
    """The device path (used on CUDA when the split fits), run here on the CPU: the same
    values as per-item fetching, including the division by 255 done on a tensor."""
    rng = np.random.default_rng(2)
    raw = rng.integers(0, 256, (30, 1, 5, 5), dtype=np.uint8)
    images = raw if dtype == np.uint8 else (raw / 255.0).astype(np.float32)
    split = ArrayDataset(images, rng.integers(0, 10, 30))
    plan = [[4, 29, 0, -1], [7, 7, 12], []]
    got = list(hdata.DeviceBatches(split.images, split.labels, plan, "cpu"))
    for (x, y), indices in zip(got, plan, strict=True):
        if not indices:
            assert x.shape == (0, 1, 5, 5) and y.shape == (0,)
            continue
        want = default_collate([split[i] for i in indices])
        assert torch.equal(x, want[0]) and torch.equal(y, want[1])
    only = list(hdata.DeviceBatches(split.images, split.labels, [[3]], "cpu", images_only=True))
    assert torch.equal(only[0], split[3][0][None])
    with pytest.raises(IndexError, match="index 30 out of range"):
        list(hdata.DeviceBatches(split.images, split.labels, [[30]], "cpu"))


def test_the_device_copy_is_only_for_cuda_and_in_memory_splits() -> None:
    split = bumps.load(DataConfig()).train
    assert not hdata.fits_on_device(split, "cpu") and not hdata.fits_on_device(split, None)
    assert not hdata.fits_on_device(_PerItem(), "cpu")
    assert not isinstance(hdata.make_loader(split, [[0]], device="cpu"), hdata.DeviceBatches)
