"""The IDX file format of MNIST and Fashion-MNIST, read with numpy and checked strictly.

An IDX file is a 4-byte magic number — two zero bytes, a type code (0x08 = unsigned byte)
and the number of dimensions — then one big-endian uint32 per dimension, then the data. We
refuse (naming the file) anything that does not add up: a wrong magic number, an unexpected
number of dimensions, a file shorter or longer than its header says, a gzip stream that
ends early, or one whose header declares more than ``$HARNESS_MAX_GUNZIP_BYTES`` (default
1 GiB). Silent acceptance of a truncated file would train on garbage. A gzip'd file is
inflated only as far as its header says (and one byte more, to see trailing data): the header
tells how much is coming, so a bomb is refused before anything is inflated, and one whose
header lies costs at most the size it declares.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ._common import (
    CorruptDataset,
    DatasetTooLarge,
    _human,
    _too_large,
    max_gunzip_bytes,
    read_gzip,
)

UBYTE = 0x08


def read_bytes(path: Path) -> bytes:
    """The (decompressed, for ``.gz``) content of ``path``; corrupt gzip is refused, and so is
    gzip that would inflate beyond ``$HARNESS_MAX_GUNZIP_BYTES`` (see
    :func:`~._common.read_gzip`)."""
    if path.suffix == ".gz":
        return read_gzip(path)
    return path.read_bytes()


def _inflate_past(fh: gzip.GzipFile, seen: int, limit: int, path: Path) -> None:
    """Inflate the rest of ``fh`` in 1 MiB blocks that are dropped at once, refusing the
    file (as too large) as soon as it passes ``limit`` bytes in all; below that the caller
    names the trailing data."""
    while block := fh.read(1 << 20):
        seen += len(block)
        if seen > limit:
            raise _too_large(path, limit, "it inflates to")


def parse_idx(data: bytes, ndim: int, where: str | Path) -> np.ndarray:
    """A uint8 array from IDX bytes that must have ``ndim`` dimensions."""
    if len(data) < 4:
        raise CorruptDataset(f"{where}: too short for an IDX file ({len(data)} bytes)")
    zero1, zero2, dtype, dims = data[0], data[1], data[2], data[3]
    expected_magic = (UBYTE << 8) | ndim
    magic = int.from_bytes(data[:4], "big")
    if zero1 != 0 or zero2 != 0 or dtype != UBYTE or dims != ndim:
        raise CorruptDataset(
            f"{where}: wrong magic number {magic} (0x{magic:08x}); an IDX file with {ndim} "
            f"dimension(s) of unsigned bytes starts with {expected_magic} (0x{expected_magic:08x})"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptDataset(f"{where}: truncated IDX header ({len(data)} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "has trailing data"
        raise CorruptDataset(
            f"{where}: {state}: the header says {shape} = {expected} bytes, the file has "
            f"{len(data)}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read and check one IDX file (``.gz`` or raw)."""
    if path.suffix == ".gz":
        return parse_idx(read_idx_gzip(path, ndim), ndim, path)
    return parse_idx(read_bytes(path), ndim, path)


def read_idx_gzip(path: Path, ndim: int) -> bytes:
    """The bytes of a gzip'd IDX file, inflated no further than its header declares (plus
    one byte, so trailing data is seen); a declared size above ``$HARNESS_MAX_GUNZIP_BYTES``
    is refused before the data is inflated."""
    header = 4 + 4 * ndim
    try:
        with gzip.open(path, "rb") as fh:
            head = fh.read(header)
            if len(head) < header:  # parse_idx names what is wrong with it
                return head
            shape = tuple(int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big")
                          for i in range(ndim))
            declared = header + int(np.prod(shape, dtype=np.int64))
            limit = max_gunzip_bytes()
            if head[:3] == bytes([0, 0, UBYTE]) and declared > limit:
                raise DatasetTooLarge(
                    f"{path}: its IDX header declares {shape} = {declared} bytes, more than "
                    f"the {_human(limit)} a gzip'd input may inflate to; refused before "
                    "inflating it. If the file is genuine, raise the limit, e.g. "
                    f"HARNESS_MAX_GUNZIP_BYTES={declared}")
            data = head + fh.read(declared - header + 1)
            if len(data) > declared:  # trailing data: how much, counted without keeping it
                _inflate_past(fh, len(data), limit, path)
            return data
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise CorruptDataset(f"{path}: truncated or corrupt gzip file ({exc})") from exc


def read_idx_pair(images_path: Path, labels_path: Path,
                  shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, H, W) and labels (N,) from a pair of IDX files, with matching counts and,
    when ``shape`` is given, images of exactly that H×W."""
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if images.shape[0] != labels.shape[0]:
        raise CorruptDataset(
            f"{images_path} has {images.shape[0]} images but {labels_path} has "
            f"{labels.shape[0]} labels"
        )
    if shape is not None and images.shape[1:] != shape:
        raise CorruptDataset(
            f"{images_path}: images are {images.shape[1]}×{images.shape[2]}, expected "
            f"{shape[0]}×{shape[1]}"
        )
    return images[:, None, :, :], labels.astype(np.int64)
