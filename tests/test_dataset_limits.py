"""Resource limits of the dataset loaders (issue 9, item 9): a gzip'd input that inflates
beyond ``HARNESS_MAX_GUNZIP_BYTES`` is refused before it is inflated whole, and the decoded-data
cache is not fooled by a same-size in-place edit that keeps the modification time."""

from __future__ import annotations

import gzip
import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from datasets_fixtures import (  # noqa: E402, F401
    isolated_fixture,
    write_idx,  # noqa: E402
    write_mnist_like,
)
from harness_plugins.datasets import _common, mnist  # noqa: E402
from harness_plugins.datasets._common import DatasetTooLarge  # noqa: E402

from harness import HarnessError  # noqa: E402
from harness.api import DataConfig  # noqa: E402

MiB = 1 << 20


def _bomb(path: Path, members: int, member_mib: int) -> int:
    """A multi-member gzip of zeros: ``members`` x ``member_mib`` MiB inflated; returns the
    inflated size. The first member starts with a valid IDX header, so only the size is wrong."""
    header = bytes([0, 0, 8, 3]) + (10**6).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    zeros = gzip.compress(bytes(member_mib * MiB), compresslevel=9, mtime=0)
    with open(path, "wb") as fh:
        fh.write(gzip.compress(header, mtime=0))
        for _ in range(members):
            fh.write(zeros)
    return len(header) + members * member_mib * MiB


def test_a_gzip_bomb_is_refused_before_it_is_inflated(isolated, monkeypatch) -> None:
    folder = isolated / "bomb"
    write_mnist_like(folder)
    path = folder / "train-images-idx3-ubyte.gz"
    inflated = _bomb(path, members=32, member_mib=16)  # 512 MiB from a file of ~0.5 MiB
    assert path.stat().st_size < MiB and inflated > 500 * MiB
    monkeypatch.setenv("HARNESS_MAX_GUNZIP_BYTES", "8M")
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(DatasetTooLarge) as info:
            mnist.load_mnist(DataConfig(root=str(folder), cache=False))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - start
    # the IDX header says how much is coming: refused before anything is inflated
    assert str(info.value) == (
        f"{path}: its IDX header declares (1000000, 28, 28) = 784000016 bytes, more than the "
        "8 MiB a gzip'd input may inflate to; refused before inflating it. If the file is "
        "genuine, raise the limit, e.g. HARNESS_MAX_GUNZIP_BYTES=784000016"
    )
    assert isinstance(info.value, HarnessError)  # the CLI prints it as one Error: line
    assert peak < 32 * MiB, f"peak {peak / MiB:.0f} MiB held while refusing"
    assert elapsed < 10


def test_a_file_at_the_limit_is_read(isolated, monkeypatch, tmp_path: Path) -> None:
    images = np.arange(3 * 8 * 8, dtype=np.uint8).reshape(3, 8, 8)
    path = tmp_path / "x-idx3-ubyte.gz"
    write_idx(path, images)
    size = 16 + images.size
    assert _common.read_gzip(path, limit=size) == gzip.decompress(path.read_bytes())
    with pytest.raises(DatasetTooLarge, match=f"more than the {size - 1} bytes"):
        _common.read_gzip(path, limit=size - 1)
    monkeypatch.setenv("HARNESS_MAX_GUNZIP_BYTES", str(size - 1))
    with pytest.raises(DatasetTooLarge, match=str(path)):
        _common.read_gzip(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 1 << 30), ("4096", 4096), ("64M", 64 * MiB), ("2G", 2 << 30), ("2GiB", 2 << 30),
     ("1.5k", 1536), ("1T", 1 << 40), ("512 mb", 512 * MiB)],
)
def test_gunzip_limit_values(monkeypatch, text: str, expected: int) -> None:
    monkeypatch.setenv("HARNESS_MAX_GUNZIP_BYTES", text)
    assert _common.max_gunzip_bytes() == expected


@pytest.mark.parametrize("text", ["lots", "-5", "0", "1e9", "5X"])
def test_gunzip_limit_bad_values(monkeypatch, text: str) -> None:
    monkeypatch.setenv("HARNESS_MAX_GUNZIP_BYTES", text)
    with pytest.raises(HarnessError, match="HARNESS_MAX_GUNZIP_BYTES"):
        _common.max_gunzip_bytes()


# ------------------------------------------------------------------------------- the cache
def _edit_in_place(path: Path, offset: int) -> None:
    """Change one byte, keeping the size and the modification time."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


@pytest.mark.parametrize(("n_train", "where"), [(12, "middle"), (7000, "header"),
                                                (7000, "end")],
                         ids=["small-file", "large-file-header", "large-file-end"])
def test_a_same_size_edit_with_the_same_mtime_is_not_served_from_the_cache(
    isolated, n_train: int, where: str
) -> None:
    folder = isolated / "fm"
    written = write_mnist_like(folder, n_train=n_train, gz=False)
    path = folder / "train-images-idx3-ubyte"
    size = path.stat().st_size
    assert (size > _common.FINGERPRINT_WHOLE_BYTES) == (n_train == 7000)
    first = mnist.load_mnist(DataConfig(root=str(folder)))
    assert isinstance(first.train.images, np.memmap)  # cached
    offset = {"middle": size // 2, "header": 16, "end": size - 1}[where]
    _edit_in_place(path, offset)
    expected = written["train"][0].copy().reshape(-1)
    expected[offset - 16] ^= 0xFF
    again = mnist.load_mnist(DataConfig(root=str(folder)))
    assert np.array_equal(np.asarray(again.train.images).reshape(-1), expected)


def test_an_untouched_file_is_still_a_cache_hit(isolated, monkeypatch) -> None:
    folder = isolated / "fm"
    write_mnist_like(folder, gz=False)
    mnist.load_mnist(DataConfig(root=str(folder)))

    def refuse(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(mnist, "read_idx_pair", refuse)
    assert isinstance(mnist.load_mnist(DataConfig(root=str(folder))).train.images, np.memmap)


def test_many_files_are_fingerprinted_by_an_even_sample(tmp_path: Path, monkeypatch) -> None:
    files = []
    for i in range(10):
        path = tmp_path / f"f{i}"
        path.write_bytes(bytes([i]) * 100)
        files.append(path)
    monkeypatch.setattr(_common, "FINGERPRINT_MAX_FILES", 5)
    seen: list[str] = []
    real = _common.content_fingerprint
    monkeypatch.setattr(_common, "content_fingerprint",
                        lambda path, size: seen.append(path.name) or real(path, size))
    key = _common.cache_key("x", files)
    assert seen == ["f0", "f2", "f4", "f6", "f8"]
    _edit_in_place(files[4], 50)
    assert _common.cache_key("x", files) != key
