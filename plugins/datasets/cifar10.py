"""CIFAR-10 (3×32×32, 50 000 / 10 000, 10 classes) from local files or Hugging Face.

Accepted local layouts, looked for in ``data.hub_id`` when it is a local folder, else in
``data.root`` (or the default places, see :func:`._common.candidate_dirs`, under the names
``cifar10`` / ``cifar-10`` / ``CIFAR10``, each also with ``cifar-10-batches-py/``):

* the CIFAR-10 *python* batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``);
* parquet or arrow files whose file or folder name says the split (``train``, ``test``), as on
  the Hugging Face hub (columns ``img``/``image`` and ``label``);
* an image folder: ``train/<class>/*.png`` and ``test/<class>/*.png`` (labels are the index
  of the class in CIFAR-10's standard order when the folders carry its class names, else in
  the sorted folder names);
* a folder written by ``datasets``' ``save_to_disk``.

Otherwise Hugging Face ``datasets`` is used with ``data.hub_id`` (default ``uoft-cs/cifar10``)
when online or cached. The python batches are pickles; they are read with an unpickler that
only accepts builtin containers and numpy array reconstruction, so a tampered file cannot run
code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from harness.api import DataConfig, DatasetInfo, DataSplits

from . import _hf
from ._common import (
    ArrayDataset,
    CorruptDataset,
    DatasetNotFound,
    build_splits,
    cache_key,
    cached_arrays,
    file_stamps,
    resize_batch,
    split_shape,
)
from ._sources import Sources, load_from_sources
from .folders import class_folder, images_split

NAME = "cifar10"
ALIASES = ("cifar10", "cifar-10", "CIFAR10")
HUB_ID = "uoft-cs/cifar10"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
#: CIFAR-10's own image size (H, W): images of another size are not CIFAR-10's files
NATIVE = (32, 32)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
FIX = (
    "download and unpack https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz into a folder "
    "DIR and run with `--set data.root=DIR` (or export HARNESS_DATA_ROOT=PARENT with the files "
    "in PARENT/cifar10), or give parquet files / a Hugging Face dataset with "
    "`--set data.hub_id=PATH_OR_ID` (needs network or a Hugging Face cache)"
)

# --------------------------------------------------------------------- python batches (pickle)
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol-2 pickles of bytes written by Python 3
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Only numpy array reconstruction may be called; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR batch")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels from one CIFAR-10 python batch file."""
    try:
        with open(path, "rb") as fh:
            obj = _RestrictedUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as exc:
        raise CorruptDataset(f"{path}: not a valid CIFAR-10 batch ({exc})") from exc
    if not isinstance(obj, dict):
        raise CorruptDataset(f"{path}: not a valid CIFAR-10 batch (holds {type(obj).__name__})")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise CorruptDataset(f"{path}: a CIFAR-10 batch needs 'data' (array) and 'labels'")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise CorruptDataset(
            f"{path}: images must be uint8 rows of 3072 values (3×32×32), got {data.dtype} "
            f"{data.shape}"
        )
    if not isinstance(labels, list | tuple | np.ndarray):
        raise CorruptDataset(f"{path}: 'labels' must be a list of integers, got {type(labels).__name__}")
    try:
        raw = np.asarray(labels)
    except (ValueError, TypeError) as exc:
        raise CorruptDataset(f"{path}: 'labels' must be a list of integers ({exc})") from exc
    if raw.size and (raw.dtype == np.bool_ or not np.issubdtype(raw.dtype, np.integer)):
        raise CorruptDataset(f"{path}: 'labels' must be integers 0..9, got {raw.dtype} values")
    labels_array = raw.astype(np.int64).reshape(-1) if raw.ndim == 1 or not raw.size else raw
    if labels_array.shape != (data.shape[0],):
        raise CorruptDataset(f"{path}: {data.shape[0]} images but {labels_array.size} labels")
    if labels_array.size and (labels_array.min() < 0 or labels_array.max() > 9):
        raise CorruptDataset(f"{path}: labels must be in 0..9")
    return data.reshape(-1, 3, 32, 32), labels_array


def _has_batches(folder: Path) -> bool:
    return all((folder / f).is_file() for f in TRAIN_BATCHES + TEST_BATCHES)


def _load_batches(folder: Path, config: DataConfig) -> DataSplits:
    files = {"train": [folder / f for f in TRAIN_BATCHES],
             "test": [folder / f for f in TEST_BATCHES]}
    key = cache_key(NAME, files["train"] + files["test"], size=config.size, layout="batches")
    arrays = {}
    for split, paths in files.items():

        def build(paths: list[Path] = paths) -> tuple[np.ndarray, np.ndarray]:
            parts = [read_batch(p) for p in paths]
            images = np.concatenate([p[0] for p in parts])
            labels = np.concatenate([p[1] for p in parts])
            return resize_batch(images, config.size), labels

        arrays[split] = cached_arrays(key, split, build, enabled=config.cache)
    return _splits(ArrayDataset(*arrays["train"]), ArrayDataset(*arrays["test"]), str(folder),
                   config, "python batches")


# ---------------------------------------------------------------------- parquet / arrow files
def _columnar_groups(folder: Path) -> dict[str, list[Path]]:
    groups = _hf.split_columnar_files(_hf.columnar_files(folder))
    return groups if "train" in groups and "test" in groups else {}


def _load_columnar(folder: Path, groups: dict[str, list[Path]], config: DataConfig) -> DataSplits:
    arrays = {}
    for split in ("train", "test"):
        n = config.n_train if split == "train" else config.n_test
        key = cache_key(NAME, groups[split], size=config.size, n=n, layout="columnar")

        def build(split: str = split, n: int | None = n) -> tuple[np.ndarray, np.ndarray]:
            return _hf.columnar_split_to_arrays(groups[split], n, config.size, False, "RGB",
                                               num_classes=len(CLASSES), native=NATIVE)

        arrays[split] = cached_arrays(key, split, build, enabled=config.cache)
    return _splits(ArrayDataset(*arrays["train"]), ArrayDataset(*arrays["test"]), str(folder),
                   config, "parquet/arrow")


# ------------------------------------------------------------------------------ image folder
def _is_image_folder(folder: Path) -> bool:
    return all((folder / s).is_dir() and any(p.is_dir() for p in (folder / s).iterdir())
               for s in ("train", "test"))


def _load_image_folder(folder: Path, config: DataConfig) -> DataSplits:
    found = {p.name for s in ("train", "test") for p in (folder / s).iterdir() if p.is_dir()}
    # CIFAR-10's own class names keep their standard indices even when a folder is absent
    classes = list(CLASSES) if found <= set(CLASSES) else sorted(found)
    splits = {}
    for split in ("train", "test"):
        paths, labels, _ = class_folder(folder / split, classes)
        n = config.n_train if split == "train" else config.n_test
        paths, labels = paths[:n] if n is not None else paths, labels[:n] if n is not None else labels
        key = cache_key(NAME, paths, size=config.size, layout="folder", classes=classes)
        splits[split] = images_split(paths, labels, key=key, split=split, size=config.size,
                                     center_crop=False, mode="RGB", cache=config.cache,
                                     native=NATIVE)
    return _splits(splits["train"], splits["test"], str(folder), config, "image folder",
                   classes=classes)


# ------------------------------------------------------------------------------ Hugging Face
def _load_hf(hub_id: str, config: DataConfig) -> DataSplits:
    splits = _hf.load_hf_splits(hub_id, NAME)
    if "train" not in splits or "test" not in splits:
        raise DatasetNotFound(f"dataset '{NAME}': '{hub_id}' has splits {sorted(splits)}, "
                              "needs train and test")
    local = Path(hub_id).expanduser()
    stamps = file_stamps(local) if local.is_dir() else []
    arrays = {}
    for split in ("train", "test"):
        n = config.n_train if split == "train" else config.n_test
        key = cache_key(NAME, stamps, hub=hub_id, size=config.size, n=n)

        def build(split: str = split, n: int | None = n) -> tuple[np.ndarray, np.ndarray]:
            return _hf.hf_split_to_arrays(splits[split], f"{hub_id} [{split}]", n, config.size,
                                          False, "RGB", num_classes=len(CLASSES), native=NATIVE)

        arrays[split] = cached_arrays(key, split, build, enabled=config.cache)
    return _splits(ArrayDataset(*arrays["train"]), ArrayDataset(*arrays["test"]), hub_id,
                   config, "huggingface")


def _splits(train: Any, test: Any, source: str, config: DataConfig, layout: str,
            classes: list[str] | tuple[str, ...] = CLASSES) -> DataSplits:
    shape = split_shape(train)
    if config.size is None and shape[1:] != NATIVE:
        raise CorruptDataset(f"{source}: images are {shape[1]}×{shape[2]}, not CIFAR-10's "
                             f"{NATIVE[0]}×{NATIVE[1]}: these are not its files")
    info = DatasetInfo(name=NAME, shape=shape, num_classes=len(classes), source=source,  # type: ignore[arg-type]
                       metadata={"classes": list(classes), "layout": layout})
    return build_splits(info, train, test, config)


SOURCES = Sources(
    name=NAME, aliases=ALIASES, subdirs=("", "cifar-10-batches-py"), default_hub_id=HUB_ID,
    what="CIFAR-10 files (python batches, parquet/arrow files or train/ and test/ folders)",
    fix=FIX)


def load_from_folder(folder: Path, config: DataConfig) -> DataSplits | None:
    """Load from whichever supported layout ``folder`` holds, or None."""
    if not folder.is_dir():
        return None
    if _hf.is_saved_dataset(folder):
        return _load_hf(str(folder), config)
    if _has_batches(folder):
        return _load_batches(folder, config)
    if _is_image_folder(folder):
        return _load_image_folder(folder, config)
    groups = _columnar_groups(folder)
    if groups:
        return _load_columnar(folder, groups, config)
    return None


def load(config: DataConfig) -> DataSplits:
    """CIFAR-10 from local files or Hugging Face (see the module docstring)."""
    return load_from_sources(SOURCES, config, lambda folder, notes: load_from_folder(folder, config),
                             lambda hub_id: _load_hf(hub_id, config))
