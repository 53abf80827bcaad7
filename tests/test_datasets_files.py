"""CIFAR-10 and CelebA from fixtures in their real on-disk formats (python batches, parquet,
arrow, class folders, the aligned CelebA release, a Hugging Face ``save_to_disk`` folder), and
their refusals of bad input."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from datasets_fixtures import (  # noqa: E402, F401
    isolated_fixture,
    random_images,
    write_arrow_split,
    write_batch,
    write_celeba,
    write_cifar_batches,
    write_class_folder,
    write_parquet_split,
)
from harness_plugins.datasets import celeba, cifar10  # noqa: E402
from harness_plugins.datasets._common import CorruptDataset, DatasetNotFound  # noqa: E402
from harness_plugins.datasets.folders import ImageFileDataset  # noqa: E402

from harness.api import DataConfig  # noqa: E402


def assert_same(split, images: np.ndarray, labels) -> None:  # type: ignore[no-untyped-def]
    assert len(split) == len(images)
    got = torch.stack([split[i][0] for i in range(len(split))])
    assert torch.allclose(got, torch.from_numpy(images.astype(np.float32) / 255.0))
    assert [split[i][1] for i in range(len(split))] == [int(v) for v in labels]


# ---------------------------------------------------------------------------------- CIFAR-10
def test_cifar_python_batches_in_torchvisions_layout(isolated) -> None:
    written = write_cifar_batches(isolated / "data" / "cifar-10-batches-py")
    splits = cifar10.load(DataConfig(root=str(isolated / "data")))
    assert splits.info.shape == (3, 32, 32) and splits.info.num_classes == 10
    assert splits.info.metadata["classes"][0] == "airplane"
    assert splits.info.metadata["layout"] == "python batches"
    assert_same(splits.train, *written["train"])
    assert_same(splits.test, *written["test"])


def test_cifar_rows_are_red_then_green_then_blue(isolated) -> None:
    folder = isolated / "c"
    write_cifar_batches(folder, per_batch=1, n_test=1)
    row = np.zeros((1, 3072), dtype=np.uint8)
    row[0, :1024] = 255  # the first 1024 values are the red plane
    write_batch(folder / "test_batch", row.reshape(1, 3, 32, 32), [3])
    image, label = cifar10.load(DataConfig(root=str(folder))).test[0]
    assert label == 3
    assert image[0].min().item() == 1.0 and image[1:].max().item() == 0.0


def test_cifar_batch_pickles_cannot_run_code(isolated) -> None:
    folder = isolated / "evil"
    write_cifar_batches(folder)
    marker = isolated / "pwned"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {marker}",))

    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(CorruptDataset, match="is not allowed") as info:
        cifar10.load(DataConfig(root=str(folder)))
    assert str(folder / "data_batch_3") in str(info.value)
    assert not marker.exists()


def test_cifar_truncated_or_malformed_batches_are_refused(isolated) -> None:
    folder = isolated / "bad"
    write_cifar_batches(folder)
    path = folder / "data_batch_2"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptDataset, match="not a valid CIFAR-10 batch") as info:
        cifar10.load(DataConfig(root=str(folder)))
    assert str(path) in str(info.value)
    with open(path, "wb") as fh:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, fh, protocol=2)
    with pytest.raises(CorruptDataset, match="rows of 3072 values"):
        cifar10.load(DataConfig(root=str(folder)))
    write_batch(path, np.zeros((4, 3, 32, 32), np.uint8), [0, 1, 2])
    with pytest.raises(CorruptDataset, match="4 images but 3 labels"):
        cifar10.load(DataConfig(root=str(folder)))


def test_cifar_parquet_as_on_the_hub(isolated) -> None:
    train, test = random_images(7, (3, 32, 32), 1), random_images(3, (3, 32, 32), 2)
    folder = isolated / "hub" / "plain_text"
    write_parquet_split(folder / "train-00000-of-00001.parquet", train, np.arange(7) % 10)
    write_parquet_split(folder / "test-00000-of-00001.parquet", test, [9, 8, 7])
    for config in (DataConfig(hub_id=str(isolated / "hub")), DataConfig(root=str(isolated / "hub"))):
        splits = cifar10.load(config)
        assert splits.info.metadata["layout"] == "parquet/arrow"
        assert_same(splits.train, train, np.arange(7) % 10)
        assert_same(splits.test, test, [9, 8, 7])
    resized = cifar10.load(DataConfig(root=str(isolated / "hub"), size=16, n_train=2))
    assert resized.info.shape == (3, 16, 16) and len(resized.train) == 2


def test_cifar_arrow_streams(isolated) -> None:
    train, test = random_images(5, (3, 32, 32), 3), random_images(2, (3, 32, 32), 4)
    write_arrow_split(isolated / "arrow" / "train" / "data-00000-of-00001.arrow", train,
                      [1, 2, 3, 4, 5])
    write_arrow_split(isolated / "arrow" / "test" / "data-00000-of-00001.arrow", test, [0, 0])
    splits = cifar10.load(DataConfig(hub_id=str(isolated / "arrow")))
    assert_same(splits.train, train, [1, 2, 3, 4, 5])
    assert_same(splits.test, test, [0, 0])


def test_cifar_image_folder(isolated) -> None:
    classes = list(cifar10.CLASSES)
    data = {"train": (random_images(6, (3, 32, 32), 5), np.array([0, 0, 3, 3, 9, 9])),
            "test": (random_images(2, (3, 32, 32), 6), np.array([1, 8]))}
    write_class_folder(isolated / "folder", data, classes)
    splits = cifar10.load(DataConfig(root=str(isolated / "folder")))
    assert splits.info.metadata["layout"] == "image folder"
    assert_same(splits.train, *data["train"])
    assert_same(splits.test, *data["test"])
    lazy = cifar10.load(DataConfig(root=str(isolated / "folder"), cache=False))
    assert isinstance(lazy.train, ImageFileDataset)
    assert_same(lazy.train, *data["train"])


def test_cifar_corrupt_parquet_and_image_are_named(isolated) -> None:
    folder = isolated / "pq"
    write_parquet_split(folder / "train.parquet", random_images(2, (3, 32, 32)), [0, 1])
    (folder / "test.parquet").write_bytes(b"PAR1 but not really")
    with pytest.raises(CorruptDataset, match="test.parquet"):
        cifar10.load(DataConfig(root=str(folder)))
    data = {"train": (random_images(2, (3, 32, 32)), np.array([0, 1])),
            "test": (random_images(2, (3, 32, 32)), np.array([0, 1]))}
    write_class_folder(isolated / "img", data, ["a", "b"])
    broken = isolated / "img" / "train" / "b" / "00001.png"
    broken.write_bytes(b"\x89PNG garbage")
    with pytest.raises(CorruptDataset, match="not a readable image") as info:
        cifar10.load(DataConfig(root=str(isolated / "img")))
    assert str(broken) in str(info.value)


def test_cifar_images_of_the_wrong_shape_are_refused(isolated) -> None:
    folder = isolated / "mixed"
    write_parquet_split(folder / "train.parquet", random_images(2, (3, 32, 32)), [0, 1])
    write_parquet_split(folder / "test.parquet", random_images(2, (3, 24, 24)), [0, 1])
    with pytest.raises(CorruptDataset, match=r"image 0 is 24×24, not the dataset's 32×32") as info:
        cifar10.load(DataConfig(root=str(folder), cache=False))
    assert str(folder / "test.parquet") in str(info.value)


@pytest.mark.parametrize("size", [None, 32])
def test_a_cifar_parquet_of_28x28_images_is_not_cifar10(size: int | None, isolated) -> None:
    """Images all of another size used to train as "cifar10" (each split was consistent);
    data.size resizes CIFAR-10's own images, it does not make other images CIFAR-10."""
    folder = isolated / "small"
    for split in ("train", "test"):
        write_parquet_split(folder / f"{split}.parquet", random_images(3, (3, 28, 28)), [0, 1, 2])
    with pytest.raises(CorruptDataset, match=r"28×28, not the dataset's 32×32"):
        cifar10.load(DataConfig(root=str(folder), cache=False, size=size))


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("size", [None, 32])
def test_a_cifar_image_folder_of_28x28_images_is_not_cifar10(size: int | None, cache: bool,
                                                            isolated) -> None:
    """The image-folder layout with data.size set resized anything to 32×32 and trained it
    as "cifar10" (the parquet layout was already refused)."""
    from PIL import Image

    folder = isolated / "folder"
    for split in ("train", "test"):
        for i, name in enumerate(("airplane", "automobile")):
            (folder / split / name).mkdir(parents=True)
            pixels = random_images(1, (3, 28, 28), seed=i)[0].transpose(1, 2, 0)
            Image.fromarray(pixels).save(folder / split / name / f"{i}.png")
    with pytest.raises(CorruptDataset, match=r"\.png is 28×28, not the dataset's 32×32"):
        splits = cifar10.load(DataConfig(root=str(folder), cache=cache, size=size))
        splits.train[0]  # the lazy split decodes on access


@pytest.mark.parametrize("labels, needle", [
    ([0.7, 1.7, 2.7], "label 0 is 0.7, not an integer class index"),
    (["cat", "dog", "cat"], "label 0 is 'cat' (str), not an integer class index"),
    ([[1, 2], [0], [3]], "label 0 is [1, 2] (list), not an integer class index"),
    ([0, 10**12, 1], "label 1000000000000 is out of range"),
    ([0, 10, 1], "label 10 is out of range: labels must be -1 (none) or 0..9 (10 classes)"),
])
def test_labels_that_are_no_class_index_are_refused_at_load(labels: list, needle: str,
                                                            isolated) -> None:
    """Float labels used to be truncated (0.7 -> class 0) and trained on; strings and lists
    were internal errors; 10**12 sized a classifier after training."""
    folder = isolated / "labels"
    write_parquet_split(folder / "train.parquet", random_images(3, (3, 32, 32)), None,
                        extra={"label": labels})
    write_parquet_split(folder / "test.parquet", random_images(3, (3, 32, 32)), [0, 1, 2])
    with pytest.raises(CorruptDataset) as info:
        cifar10.load(DataConfig(root=str(folder), cache=False))
    assert needle in str(info.value)
    assert f"{folder / 'train.parquet'} column 'label'" in str(info.value)


def test_integral_float_labels_are_class_indices(isolated) -> None:
    folder = isolated / "floats"
    write_parquet_split(folder / "train.parquet", random_images(3, (3, 32, 32)), None,
                        extra={"label": [0.0, 9.0, None]})
    write_parquet_split(folder / "test.parquet", random_images(3, (3, 32, 32)), [0, 1, 2])
    splits = cifar10.load(DataConfig(root=str(folder), cache=False))
    assert splits.train.labels.tolist() == [0, 9, -1]


def test_cifar_missing_gives_paths_and_fix_quickly(isolated) -> None:
    start = time.perf_counter()
    with pytest.raises(DatasetNotFound) as info:
        cifar10.load(DataConfig())
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    assert str(Path.cwd() / "data" / "cifar10") in message
    assert str(isolated / "system" / "cifar10" / "cifar-10-batches-py") in message
    assert "--set data.root=DIR" in message and "--set data.hub_id=" in message
    assert "offline" in message


def test_hugging_face_save_to_disk_folder(isolated) -> None:
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    train, test = random_images(4, (3, 32, 32), 8), random_images(2, (3, 32, 32), 9)

    def as_split(images: np.ndarray, labels: list[int]):  # type: ignore[no-untyped-def]
        return datasets.Dataset.from_dict(
            {"img": [Image.fromarray(im.transpose(1, 2, 0)) for im in images], "label": labels},
            features=datasets.Features({"img": datasets.Image(),
                                        "label": datasets.ClassLabel(num_classes=10)}),
        )

    dd = datasets.DatasetDict({"train": as_split(train, [0, 1, 2, 3]),
                               "test": as_split(test, [4, 5])})
    dd.save_to_disk(str(isolated / "saved"))
    splits = cifar10.load(DataConfig(hub_id=str(isolated / "saved")))
    assert splits.info.metadata["layout"] == "huggingface"
    assert_same(splits.train, train, [0, 1, 2, 3])
    assert_same(splits.test, test, [4, 5])


# ------------------------------------------------------------------------------------ CelebA
def test_celeba_standard_split_centre_crop_and_default_size(isolated) -> None:
    colours = [(10, 200, 30), (200, 10, 30), (30, 10, 200), (128, 128, 128), (0, 255, 0),
               (250, 250, 0)]
    write_celeba(isolated / "celeba", [0, 0, 2, 1, 0, 2], colours=colours)
    splits = celeba.load(DataConfig(root=str(isolated)))  # torchvision layout root/celeba
    assert splits.info.shape == (3, 160, 160) and splits.info.num_classes is None
    assert (len(splits.train), len(splits.test), len(splits.extra["valid"])) == (3, 2, 1)
    # the square crop removed exactly the red top and blue bottom bands: one flat colour left
    for split, expected in ((splits.train, [0, 1, 4]), (splits.test, [2, 5]),
                            (splits.extra["valid"], [3])):
        for i, j in enumerate(expected):
            image, label = split[i]
            want = torch.tensor(colours[j], dtype=torch.float32)[:, None, None] / 255
            assert label == -1
            error = (image - want).abs()
            # JPEG blocks bleed a few rows at the cut; uncropped, the top ~15 rows would be red
            assert error[:, 8:-8].max().item() < 8 / 255, (i, j)
            assert error.mean().item() < 3 / 255, (i, j)


def test_celeba_kaggle_layout_size_option_and_lazy_mode(isolated) -> None:
    write_celeba(isolated / "k", [0, 2, 0, 2, 1], nested=True, csv=True)
    splits = celeba.load(DataConfig(root=str(isolated / "k"), size=32, n_train=1))
    assert splits.info.shape == (3, 32, 32) and len(splits.train) == 1 and len(splits.test) == 2
    lazy = celeba.load(DataConfig(root=str(isolated / "k"), size=32, cache=False))
    assert isinstance(lazy.train, ImageFileDataset) and len(lazy.train) == 2
    assert torch.equal(lazy.train[0][0], splits.train[0][0])
    assert torch.equal(lazy.test[1][0], splits.test[1][0])


def test_celeba_parquet_splits(isolated) -> None:
    imgs = {s: random_images(n, (3, 40, 30), i) for i, (s, n) in
            enumerate((("train", 3), ("valid", 1), ("test", 2)))}
    for split, images in imgs.items():
        write_parquet_split(isolated / "pq" / f"{split}-00000.parquet", images, None, "image")
    splits = celeba.load(DataConfig(hub_id=str(isolated / "pq"), size=30))
    assert splits.info.shape == (3, 30, 30)
    assert (len(splits.train), len(splits.test), len(splits.extra["valid"])) == (3, 2, 1)
    # the 30×40 image is centre-cropped to its middle 30×30 (no resize needed): exact pixels
    assert torch.allclose(splits.test[1][0],
                          torch.from_numpy(imgs["test"][1][:, 5:35, :].astype(np.float32) / 255))


def test_celeba_bad_partition_missing_images_and_corrupt_jpeg(isolated) -> None:
    folder = isolated / "bad"
    write_celeba(folder, [0, 0, 2])
    partition = folder / "list_eval_partition.txt"
    partition.write_text("000001.jpg 0\n000002.jpg 7\n")
    with pytest.raises(CorruptDataset, match=r"list_eval_partition.txt:2: expected"):
        celeba.load(DataConfig(root=str(folder)))
    partition.write_text("000001.jpg 0\n000009.jpg 2\n")
    with pytest.raises(CorruptDataset, match="absent from .*000009.jpg"):
        celeba.load(DataConfig(root=str(folder)))
    partition.write_text("000001.jpg 0\n000002.jpg 0\n000003.jpg 2\n")
    jpeg = folder / "img_align_celeba" / "000002.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:300])
    with pytest.raises(CorruptDataset) as info:
        celeba.load(DataConfig(root=str(folder), size=16))
    assert str(jpeg) in str(info.value)


def test_celeba_missing_gives_paths_and_fix(isolated) -> None:
    with pytest.raises(DatasetNotFound) as info:
        celeba.load(DataConfig(root=str(isolated / "none")))
    message = str(info.value)
    assert str(isolated / "none" / "celeba") in message
    assert "img_align_celeba" in message and "--set data.root=DIR" in message
