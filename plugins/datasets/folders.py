"""Images stored one file per image: class-folder trees and lists of files.

Why: CIFAR-10 and CelebA are often unpacked as image files. Decoding 200 000 JPEGs takes
minutes, so with the cache on, the decoded uint8 array is written once to an on-disk
``.npy`` (filled in place, never held twice in memory) and memory-mapped afterwards; with the
cache off, images are decoded lazily, one per item.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ._common import ArrayDataset, CorruptDataset, cached_streamed, check_native, pil_to_chw

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".ppm"}


def decode_file(path: Path, size: int | None, center_crop: bool, mode: str,
                native: tuple[int, int] | None = None) -> np.ndarray:
    """One image file as uint8 (C, H, W); an unreadable file, or one that is not ``native``
    (H, W) before resizing (a named dataset's own size), is refused with its name."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            check_native(str(path), image.size[::-1], native)
            image.load()
            return pil_to_chw(image, size, center_crop, mode)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise CorruptDataset(f"{path}: not a readable image ({exc})") from exc


class ImageFileDataset(Dataset):
    """A split decoded lazily from image files (used when the cache is disabled)."""

    #: decodes a file per item: the training loader gives it worker processes by default
    streams_from_disk = True

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], size: int | None,
                 center_crop: bool, mode: str, shape: tuple[int, int, int],
                 native: tuple[int, int] | None = None) -> None:
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.size, self.center_crop, self.mode, self.shape = size, center_crop, mode, shape
        self.native = native

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        array = decode_file(self.paths[index], self.size, self.center_crop, self.mode,
                            self.native)
        if array.shape != self.shape:
            raise CorruptDataset(
                f"{self.paths[index]}: image of shape {array.shape}, expected {self.shape} "
                "(set data.size to resize every image)"
            )
        return torch.from_numpy(array.astype(np.float32) / 255.0), int(self.labels[index])

    def head(self, n: int | None) -> ImageFileDataset:
        if n is None:
            return self
        return ImageFileDataset(self.paths[:n], self.labels[:n], self.size, self.center_crop,
                                self.mode, self.shape, self.native)


def images_split(paths: Sequence[Path], labels: Sequence[int], *, key: str, split: str,
                 size: int | None, center_crop: bool, mode: str, cache: bool,
                 native: tuple[int, int] | None = None) -> Dataset:
    """The split made of ``paths``: cached as one memory-mapped uint8 array, or lazy; with
    ``native`` (H, W), every file must be that size before resizing."""
    if not paths:
        raise CorruptDataset(f"split '{split}' has no image files")
    shape = tuple(int(d) for d in decode_file(paths[0], size, center_crop, mode, native).shape)
    if not cache:
        return ImageFileDataset(paths, labels, size, center_crop, mode, shape,  # type: ignore[arg-type]
                                native)

    def fill(images: np.ndarray, labs: np.ndarray) -> None:
        for i, path in enumerate(paths):
            array = decode_file(path, size, center_crop, mode, native)
            if array.shape != shape:
                raise CorruptDataset(
                    f"{path}: image of shape {array.shape}, expected {shape} like {paths[0]} "
                    "(set data.size to resize every image)"
                )
            images[i] = array
        labs[:] = np.asarray(labels, dtype=np.int64)

    images, labs = cached_streamed(key, split, len(paths), shape, fill, enabled=True)  # type: ignore[arg-type]
    return ArrayDataset(images, labs)


def class_folder(split_dir: Path, classes: list[str] | None = None
                 ) -> tuple[list[Path], list[int], list[str]]:
    """Files of a ``split_dir/<class>/<image>`` tree: paths, labels (the index of the class in
    ``classes``, by default the sorted folder names) and the class names."""
    if classes is None:
        classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    unknown = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and p.name not in classes)
    if unknown:
        raise CorruptDataset(f"{split_dir}: class folders {unknown} are not among {classes}")
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        if not (split_dir / name).is_dir():
            continue
        for path in sorted((split_dir / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(path)
                labels.append(index)
    return paths, labels, classes
