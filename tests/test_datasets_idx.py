"""MNIST / Fashion-MNIST: IDX fixtures written in the real format, the search order, every
refusal of bad input, the cache, and the real Fashion-MNIST when Debian's package is there."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from datasets_fixtures import (  # noqa: E402, F401
    isolated_fixture,
    write_idx,  # noqa: E402
    write_mnist_like,
)
from harness_plugins.datasets import _common, mnist  # noqa: E402
from harness_plugins.datasets._common import CorruptDataset, DatasetNotFound  # noqa: E402
from harness_plugins.datasets.idx import parse_idx  # noqa: E402

from harness.api import DataConfig  # noqa: E402

REAL = Path("/usr/share/datasets/fashion-mnist")


def assert_same(split, images: np.ndarray, labels: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    assert len(split) == len(images)
    got = split.tensor()
    assert torch.allclose(got[:, 0], torch.from_numpy(images.astype(np.float32) / 255.0))
    assert [int(v) for v in split.labels] == labels.astype(int).tolist()


# -------------------------------------------------------------------------------- the format
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dotted", [False, True])
def test_idx_files_load_exactly(isolated, gz: bool, dotted: bool) -> None:
    written = write_mnist_like(isolated / "fm", gz=gz, dotted=dotted)
    splits = mnist.load_fashion_mnist(DataConfig(root=str(isolated / "fm")))
    assert splits.info.shape == (1, 28, 28) and splits.info.num_classes == 10
    assert splits.info.metadata["classes"][9] == "Ankle boot"
    assert splits.info.source == str(isolated / "fm")
    assert_same(splits.train, *written["train"])
    assert_same(splits.test, *written["test"])
    image, label = splits.train[4]
    assert image.dtype == torch.float32 and label == int(written["train"][1][4])


def test_idx_header_is_parsed_big_endian() -> None:
    data = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (1).to_bytes(4, "big") + \
        (3).to_bytes(4, "big") + bytes(range(6))
    array = parse_idx(data, 3, "x")
    assert array.shape == (2, 1, 3) and array[1, 0].tolist() == [3, 4, 5]


def test_n_train_n_test_and_resize(isolated) -> None:
    written = write_mnist_like(isolated / "fm", n_train=10, n_test=6)
    splits = mnist.load_fashion_mnist(DataConfig(root=str(isolated / "fm"), n_train=4,
                                                 n_test=2))
    assert (len(splits.train), len(splits.test)) == (4, 2)
    assert splits.info.metadata["n_train"] == 4
    assert_same(splits.train, written["train"][0][:4], written["train"][1][:4])
    # a constant image stays constant when resized; the shape follows data.size
    flat = isolated / "flat"
    flat.mkdir()
    for prefix, n in (("train", 3), ("t10k", 2)):
        write_idx(flat / f"{prefix}-images-idx3-ubyte.gz", np.full((n, 28, 28), 128, np.uint8))
        write_idx(flat / f"{prefix}-labels-idx1-ubyte.gz", np.zeros(n, np.uint8))
    small = mnist.load_mnist(DataConfig(root=str(flat), size=14))
    assert small.info.shape == (1, 14, 14)
    assert torch.allclose(small.train.tensor(), torch.full((3, 1, 14, 14), 128 / 255))


# --------------------------------------------------------------------------- where to look
def test_search_order_env_torchvision_layout_and_system_dirs(isolated, monkeypatch) -> None:
    system = write_mnist_like(isolated / "system" / "fashion-mnist", seed=1)
    assert_same(mnist.load_fashion_mnist(DataConfig()).train, *system["train"])
    # ./data/<name> comes before the system folder
    local = write_mnist_like(Path.cwd() / "data" / "fashion-mnist", seed=2, gz=False)
    assert_same(mnist.load_fashion_mnist(DataConfig()).train, *local["train"])
    # $HARNESS_DATA_ROOT/<name> comes first
    env = write_mnist_like(isolated / "env" / "FashionMNIST" / "raw", seed=3)
    monkeypatch.setenv("HARNESS_DATA_ROOT", str(isolated / "env"))
    assert_same(mnist.load_fashion_mnist(DataConfig()).train, *env["train"])
    # an explicit root in torchvision's layout (root/FashionMNIST/raw) wins over all
    tv = write_mnist_like(isolated / "tv" / "FashionMNIST" / "raw", seed=4)
    assert_same(mnist.load_fashion_mnist(DataConfig(root=str(isolated / "tv"))).train,
                *tv["train"])
    mn = write_mnist_like(isolated / "tv" / "MNIST" / "raw", seed=5)
    assert_same(mnist.load_mnist(DataConfig(root=str(isolated / "tv"))).train, *mn["train"])


def test_missing_files_say_where_we_looked_and_how_to_fix(isolated) -> None:
    start = time.perf_counter()
    with pytest.raises(DatasetNotFound) as info:
        mnist.load_fashion_mnist(DataConfig())
    assert time.perf_counter() - start < 2.0  # no waiting for the hub when offline
    message = str(info.value)
    assert str(isolated / "system" / "fashion-mnist") in message
    assert str(Path.cwd() / "data" / "fashion-mnist") in message
    assert str(Path.home() / ".cache" / "vrrae-harness" / "data" / "fashion-mnist") in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "--set data.root=DIR" in message and "HARNESS_DATA_ROOT" in message
    assert "offline" in message
    with pytest.raises(DatasetNotFound) as info:
        mnist.load_mnist(DataConfig(root=str(isolated / "nowhere")))
    message = str(info.value)
    assert str(isolated / "nowhere") in message and "--set data.root=DIR" in message
    assert str(isolated / "system") not in message  # an explicit root is the only place


def test_an_incomplete_folder_is_named(isolated) -> None:
    folder = isolated / "half"
    write_mnist_like(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFound, match="lacks t10k-labels-idx1-ubyte"):
        mnist.load_mnist(DataConfig(root=str(folder)))


# ------------------------------------------------------------------------------- bad input
def _broken(isolated: Path, name: str, content: bytes) -> tuple[Path, DataConfig]:
    folder = isolated / "bad"
    write_mnist_like(folder)
    path = folder / name
    path.write_bytes(content)
    return path, DataConfig(root=str(folder), cache=False)


def test_truncated_gzip_is_refused_with_the_file_name(isolated) -> None:
    folder = isolated / "bad"
    write_mnist_like(folder)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(CorruptDataset, match="truncated or corrupt gzip") as info:
        mnist.load_mnist(DataConfig(root=str(folder)))
    assert str(path) in str(info.value)


def test_garbage_gzip_is_refused(isolated) -> None:
    path, config = _broken(isolated, "t10k-images-idx3-ubyte.gz", b"not gzip at all" * 10)
    with pytest.raises(CorruptDataset, match=str(path)):
        mnist.load_mnist(config)


def test_wrong_magic_number_is_refused(isolated) -> None:
    labels = gzip.compress(bytes([0, 0, 8, 1]) + (12).to_bytes(4, "big") + bytes(12))
    # a label file (1 dimension) where the images (3 dimensions) should be
    path, config = _broken(isolated, "train-images-idx3-ubyte.gz", labels)
    with pytest.raises(CorruptDataset, match="wrong magic number 2049") as info:
        mnist.load_mnist(config)
    assert str(path) in str(info.value) and "2051" in str(info.value)


def test_truncated_raw_file_and_trailing_data_are_refused(isolated) -> None:
    folder = isolated / "raw"
    write_mnist_like(folder, gz=False)
    path = folder / "train-images-idx3-ubyte"
    content = path.read_bytes()
    path.write_bytes(content[:-1])
    with pytest.raises(CorruptDataset, match="truncated") as info:
        mnist.load_mnist(DataConfig(root=str(folder), cache=False))
    assert str(path) in str(info.value)
    path.write_bytes(content + b"\0")
    with pytest.raises(CorruptDataset, match="trailing data"):
        mnist.load_mnist(DataConfig(root=str(folder), cache=False))


def test_mismatched_counts_are_refused(isolated) -> None:
    folder = isolated / "count"
    write_mnist_like(folder, n_train=12)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(11, np.uint8))
    with pytest.raises(CorruptDataset, match="has 12 images but .* has 11 labels"):
        mnist.load_mnist(DataConfig(root=str(folder)))


def test_wrong_image_shape_and_bad_labels_are_refused(isolated) -> None:
    folder = isolated / "shape"
    write_mnist_like(folder, size=27)
    with pytest.raises(CorruptDataset, match="27×27, expected 28×28") as info:
        mnist.load_fashion_mnist(DataConfig(root=str(folder)))
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    folder = isolated / "labels"
    write_mnist_like(folder)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.full(5, 10, np.uint8))
    with pytest.raises(CorruptDataset, match=r"labels must be -1 \(none\) or 0..9"):
        mnist.load_fashion_mnist(DataConfig(root=str(folder)))


# ------------------------------------------------------------------------------------ cache
def cache_files(isolated: Path) -> list[Path]:
    folder = isolated / "cache" / "datasets"  # the datasets' part of $HARNESS_CACHE_DIR
    return sorted(folder.iterdir()) if folder.exists() else []


def test_second_load_comes_from_the_cache_and_a_change_invalidates_it(isolated, monkeypatch
                                                                      ) -> None:
    folder = isolated / "fm"
    written = write_mnist_like(folder)
    mnist.load_fashion_mnist(DataConfig(root=str(folder)))
    files = cache_files(isolated)
    assert len(files) == 4 and all(f.suffix == ".npy" for f in files)  # no temp files left
    for f in files:
        np.load(f, allow_pickle=False)

    def refuse(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(mnist, "read_idx_pair", refuse)
    cached = mnist.load_fashion_mnist(DataConfig(root=str(folder)))
    assert isinstance(cached.train.images, np.memmap)
    assert_same(cached.train, *written["train"])
    # a resize is another cache entry, not a stale hit
    with pytest.raises(AssertionError, match="decoded again"):
        mnist.load_fashion_mnist(DataConfig(root=str(folder), size=14))
    monkeypatch.undo()
    monkeypatch.setattr(_common, "SYSTEM_DATA_DIRS", [])
    # new content (new size and mtime) must be read, not the old cache
    newer = write_mnist_like(folder, n_train=9, seed=7)
    stamp = time.time() + 10
    for f in folder.iterdir():
        os.utime(f, (stamp, stamp))
    fresh = mnist.load_fashion_mnist(DataConfig(root=str(folder)))
    assert_same(fresh.train, *newer["train"])


def test_cache_off_writes_nothing_and_a_damaged_cache_is_rebuilt(isolated) -> None:
    folder = isolated / "fm"
    written = write_mnist_like(folder)
    mnist.load_mnist(DataConfig(root=str(folder), cache=False))
    assert cache_files(isolated) == []
    mnist.load_mnist(DataConfig(root=str(folder)))
    for f in cache_files(isolated):
        f.write_bytes(b"damaged")
    again = mnist.load_mnist(DataConfig(root=str(folder)))
    assert_same(again.test, *written["test"])


# ----------------------------------------------------------------- the real Fashion-MNIST
@pytest.mark.skipif(not (REAL / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed "
                           "(/usr/share/datasets/fashion-mnist absent)")
def test_real_fashion_mnist_from_the_debian_package(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARNESS_DATA_ROOT", raising=False)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    start = time.perf_counter()
    splits = mnist.load_fashion_mnist(DataConfig())
    cold = time.perf_counter() - start
    assert splits.info.source == str(REAL)
    assert (len(splits.train), len(splits.test)) == (60000, 10000)
    assert np.bincount(splits.train.labels).tolist() == [6000] * 10
    assert np.bincount(splits.test.labels).tolist() == [1000] * 10
    assert splits.train[0][1] == 9 and splits.test[0][1] == 9  # both start with an ankle boot
    pixels = np.asarray(splits.train.images, dtype=np.float64) / 255.0
    assert pixels.mean() == pytest.approx(0.2860, abs=5e-4)
    assert pixels.std() == pytest.approx(0.3530, abs=5e-4)
    start = time.perf_counter()
    again = mnist.load_fashion_mnist(DataConfig())
    warm = time.perf_counter() - start
    assert warm < 0.2 and warm < cold
    assert torch.equal(again.train[123][0], splits.train[123][0])


# ----------------------------------------------------------------- Hugging Face fallback
def test_hub_fallback_is_used_only_when_nothing_is_local(isolated, monkeypatch) -> None:
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, size=(2, 28, 28), dtype=np.uint8)

    def split(images: np.ndarray, labels: list[int]):  # type: ignore[no-untyped-def]
        return datasets.Dataset.from_dict(
            {"image": [Image.fromarray(im) for im in images], "label": labels},
            features=datasets.Features({"image": datasets.Image(),
                                        "label": datasets.ClassLabel(num_classes=10)}),
        )

    asked: list[str] = []

    def fake_hub(hub_id: str, name: str) -> dict:  # type: ignore[type-arg]
        asked.append(hub_id)
        return {"train": split(train, [1, 2, 3, 4, 5]), "test": split(test, [0, 9])}

    from harness_plugins.datasets import _hf

    monkeypatch.setattr(_hf, "load_hf_splits", fake_hub)
    monkeypatch.setattr(_hf, "hub_unreachable", lambda timeout=None: None)  # "online"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    splits = mnist.load_fashion_mnist(DataConfig())
    assert asked == ["zalando-datasets/fashion_mnist"]
    assert splits.info.source == "zalando-datasets/fashion_mnist"
    assert_same(splits.train, train, np.array([1, 2, 3, 4, 5]))
    assert_same(splits.test, test, np.array([0, 9]))
    # local files win: the hub is not asked again
    write_mnist_like(isolated / "system" / "fashion-mnist")
    mnist.load_fashion_mnist(DataConfig())
    assert asked == ["zalando-datasets/fashion_mnist"]


def test_offline_with_the_dataset_in_the_hf_cache_tries_it_and_reports_failure(isolated,
                                                                                monkeypatch
                                                                                ) -> None:
    pytest.importorskip("datasets")
    (isolated / "hf" / "datasets" / "ylecun___mnist").mkdir(parents=True)
    start = time.perf_counter()
    with pytest.raises(DatasetNotFound) as info:
        mnist.load_mnist(DataConfig())
    assert time.perf_counter() - start < 15.0
    message = str(info.value)
    assert "Hugging Face 'ylecun/mnist' could not be loaded" in message
    assert "--set data.root=DIR" in message
