"""Writers of small dataset fixtures in the real on-disk formats, and an isolation fixture.

The fixtures are written by the tests themselves into ``tmp_path`` (no binary data is
committed): IDX (gz and raw), CIFAR-10 python batches, Hugging Face-style parquet, arrow
streams, class-folder trees and CelebA's aligned-image release.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from harness_plugins.datasets import _common, celeba  # noqa: E402
from PIL import Image  # noqa: E402


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip-compressed when the name ends in ``.gz``).
    The real on-disk format, for fixtures (0x08: unsigned bytes)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    payload = header + array.tobytes()
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        Path(path).write_bytes(payload)


def write_batch(path: Path, images: np.ndarray, labels: list[int]) -> None:
    """Write a CIFAR-10 python batch, the real format, for fixtures."""
    payload = {b"batch_label": b"fixture", b"labels": list(labels),
               b"data": np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1),
               b"filenames": [f"{i}.png".encode() for i in range(len(images))]}
    with open(path, "wb") as fh:
        pickle.dump(payload, fh, protocol=2)


@pytest.fixture(name="isolated")
def isolated_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No default search place holds data: HOME, cwd, the system folders and the cache all
    point into ``tmp_path``; Hugging Face is offline. Returns ``tmp_path``."""
    home = tmp_path / "home"
    work = tmp_path / "cwd"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    monkeypatch.delenv("HARNESS_DATA_ROOT", raising=False)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    monkeypatch.setattr(_common, "SYSTEM_DATA_DIRS", [tmp_path / "system"])
    return tmp_path


def random_images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def write_mnist_like(folder: Path, n_train: int = 12, n_test: int = 5, gz: bool = True,
                     dotted: bool = False, size: int = 28, seed: int = 0
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The four MNIST IDX files with random content; returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        sep = "." if dotted else "-"
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images{sep}idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels{sep}idx1-ubyte{suffix}", labels)
        out[split] = (images, labels)
    return out


def write_cifar_batches(folder: Path, per_batch: int = 4, n_test: int = 3, seed: int = 0
                        ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """data_batch_1..5 and test_batch; returns (N, 3, 32, 32) images and labels per split."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_images, train_labels = [], []
    for i in range(1, 6):
        images = rng.integers(0, 256, size=(per_batch, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        write_batch(folder / f"data_batch_{i}", images, labels)
        train_images.append(images)
        train_labels.extend(labels)
    test_images = rng.integers(0, 256, size=(n_test, 3, 32, 32), dtype=np.uint8)
    test_labels = rng.integers(0, 10, size=n_test).tolist()
    write_batch(folder / "test_batch", test_images, test_labels)
    return {
        "train": (np.concatenate(train_images), np.array(train_labels)),
        "test": (test_images, np.array(test_labels)),
    }


def png_bytes(chw: np.ndarray) -> bytes:
    buf = io.BytesIO()
    array = chw.transpose(1, 2, 0)
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(buf, format="PNG")
    return buf.getvalue()


def write_parquet_split(path: Path, images: np.ndarray, labels: np.ndarray | None,
                        image_column: str = "img",
                        extra: dict[str, list[Any]] | None = None) -> None:
    """A Hugging Face-style parquet file: an image struct {bytes, path}, int labels and any
    ``extra`` columns (e.g. CelebA's attributes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    columns: dict[str, Any] = {
        image_column: [{"bytes": png_bytes(im), "path": None} for im in images]}
    if labels is not None:
        columns["label"] = [int(v) for v in labels]
    columns.update(extra or {})
    pq.write_table(pa.table(columns), path)


def write_arrow_split(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """An arrow IPC stream (the format of Hugging Face's ``save_to_disk`` shards)."""
    import pyarrow as pa

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"image": [{"bytes": png_bytes(im), "path": None} for im in images],
                      "label": [int(v) for v in labels]})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


def write_class_folder(folder: Path, split_images: dict[str, tuple[np.ndarray, np.ndarray]],
                       classes: list[str]) -> None:
    """``folder/<split>/<class>/<i>.png`` trees."""
    for split, (images, labels) in split_images.items():
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            target = folder / split / classes[int(label)]
            target.mkdir(parents=True, exist_ok=True)
            (target / f"{i:05d}.png").write_bytes(png_bytes(image))


def face_image(top: tuple[int, int, int], middle: tuple[int, int, int],
               bottom: tuple[int, int, int], w: int = 178, h: int = 218) -> Image.Image:
    """A 178×218 image (CelebA's aligned size): 20-row bands on top and bottom, ``middle``
    elsewhere — the centre square crop must cut exactly the bands."""
    array = np.empty((h, w, 3), dtype=np.uint8)
    array[:, :] = middle
    band = (h - w) // 2
    array[:band] = top
    array[h - band:] = bottom
    return Image.fromarray(array)


def write_celeba(folder: Path, partition: list[int], nested: bool = False, csv: bool = False,
                 colours: list[tuple[int, int, int]] | None = None) -> list[str]:
    """CelebA's aligned release: ``img_align_celeba/000001.jpg`` .. and the partition file."""
    images_dir = folder / "img_align_celeba"
    if nested:
        images_dir = images_dir / "img_align_celeba"
    images_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for i, _ in enumerate(partition):
        name = f"{i + 1:06d}.jpg"
        colour = colours[i] if colours else (40 * i % 256, 100, 200)
        face_image((255, 0, 0), colour, (0, 0, 255)).save(images_dir / name, quality=95)
        names.append(name)
    if csv:
        lines = ["image_id,partition"] + [f"{n},{p}" for n, p in zip(names, partition, strict=True)]
        (folder / "list_eval_partition.csv").write_text("\n".join(lines) + "\n")
    else:
        lines = [f"{n} {p}" for n, p in zip(names, partition, strict=True)]
        (folder / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return names


CELEBA_ATTRIBUTES = list(celeba.ATTRIBUTES)  # the release's 40, in its order


def write_celeba_attributes(folder: Path, names: list[str], values: np.ndarray,
                            csv: bool = False) -> None:
    """CelebA's ``list_attr_celeba.txt`` (count line, names line, ``000001.jpg -1 1 ...``
    with the release's double-space padding) or Kaggle's ``list_attr_celeba.csv``;
    ``values`` is (n, 40) of 1 / -1."""
    if csv:
        rows = ["image_id," + ",".join(CELEBA_ATTRIBUTES)]
        rows += [f"{n}," + ",".join(str(int(v)) for v in row) for n, row in zip(names, values,
                                                                               strict=True)]
        (folder / "list_attr_celeba.csv").write_text("\n".join(rows) + "\n")
        return
    rows = [str(len(names)), " ".join(CELEBA_ATTRIBUTES) + " "]
    rows += [f"{n} " + " ".join(f"{int(v):2d}" for v in row) for n, row in zip(names, values,
                                                                              strict=True)]
    (folder / "list_attr_celeba.txt").write_text("\n".join(rows) + "\n")
