"""MNIST and Fashion-MNIST from their IDX files, with a Hugging Face fallback.

Where the files are looked for, in order (the first folder holding all four files wins):
``data.root`` (and ``root/<name>``, ``root/<TorchvisionName>/raw``) when given — and then
nowhere else; otherwise ``$HARNESS_DATA_ROOT/<name>``, ``~/.cache/vrrae-harness/data/<name>``,
``./data/<name>`` and ``/usr/share/datasets/<name>``, where Debian's
``dataset-fashion-mnist`` package installs the real Fashion-MNIST. Files may be ``.gz`` or
raw, named ``train-images-idx3-ubyte`` or ``train-images.idx3-ubyte``.

Only when nothing is found locally is Hugging Face tried (``data.hub_id`` or the default
hub id), and never while offline mode is set unless its cache holds the dataset — so a
machine without network fails at once with the list of folders searched and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.api import DataConfig, DatasetInfo, DataSplits

from . import _hf
from ._common import (
    ArrayDataset,
    DatasetNotFound,
    build_splits,
    cache_key,
    cached_arrays,
    file_stamps,
    integral_labels,
    resize_batch,
)
from ._sources import Sources, load_from_sources
from .idx import read_idx_pair

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class Family:
    """One dataset in the MNIST format."""

    name: str
    aliases: tuple[str, ...]
    hub_id: str
    classes: tuple[str, ...]
    install_hint: str


MNIST = Family(
    name="mnist",
    aliases=("mnist", "MNIST"),
    hub_id="ylecun/mnist",
    classes=tuple(str(i) for i in range(10)),
    install_hint=(
        "download the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into a folder DIR and run with "
        "`--set data.root=DIR` (or export HARNESS_DATA_ROOT=PARENT with the files in "
        "PARENT/mnist)"
    ),
)

FASHION_MNIST = Family(
    name="fashion-mnist",
    aliases=("fashion-mnist", "FashionMNIST", "fashion_mnist"),
    hub_id="zalando-datasets/fashion_mnist",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"),
    install_hint=(
        "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; installs the files in "
        "/usr/share/datasets/fashion-mnist), or put the four IDX files in a folder DIR and run "
        "with `--set data.root=DIR` (or export HARNESS_DATA_ROOT=PARENT with the files in "
        "PARENT/fashion-mnist)"
    ),
)


def _find(folder: Path, stem: str) -> Path | None:
    for variant in (stem, stem.replace("-idx", ".idx")):
        for suffix in (".gz", ""):
            path = folder / f"{variant}{suffix}"
            if path.is_file():
                return path
    return None


def idx_files_in(folder: Path, notes: list[str]) -> dict[str, tuple[Path, Path]] | None:
    """The four IDX files of ``folder`` by split, or None (with a note when only some are
    there, which usually means a download went wrong)."""
    found: dict[str, tuple[Path, Path]] = {}
    missing: list[str] = []
    for split, (images_stem, labels_stem) in SPLIT_FILES.items():
        images, labels = _find(folder, images_stem), _find(folder, labels_stem)
        if images is None:
            missing.append(images_stem)
        if labels is None:
            missing.append(labels_stem)
        if images is not None and labels is not None:
            found[split] = (images, labels)
    if not missing:
        return found
    if len(missing) < 4:
        notes.append(f"{folder} has some IDX files but lacks {', '.join(missing)}")
    return None


def load_family(family: Family, config: DataConfig) -> DataSplits:
    """Load one MNIST-format dataset (see the module docstring for where from)."""
    sources = Sources(
        name=family.name, aliases=family.aliases, subdirs=("", "raw"),
        default_hub_id=family.hub_id,
        what="the IDX files (train-images-idx3-ubyte[.gz] and the three others)",
        fix=family.install_hint)

    def read_folder(folder: Path, notes: list[str]) -> DataSplits | None:
        files = idx_files_in(folder, notes)
        return _load_local(family, config, files) if files is not None else None

    return load_from_sources(sources, config, read_folder,
                             lambda hub_id: _load_hf(family, config, hub_id))


def _info(family: Family, shape: tuple[int, int, int], source: str,
          files: list[str]) -> DatasetInfo:
    return DatasetInfo(
        name=family.name,
        shape=shape,
        num_classes=len(family.classes),
        source=source,
        metadata={"classes": list(family.classes), "files": files},
    )


def _check_labels(labels: np.ndarray, family: Family, where: Path | str) -> None:
    integral_labels(labels, str(where), len(family.classes))


def _load_local(family: Family, config: DataConfig,
                files: dict[str, tuple[Path, Path]]) -> DataSplits:
    every = [p for pair in files.values() for p in pair]
    key = cache_key(family.name, every, size=config.size)
    arrays = {}
    for split, (images_path, labels_path) in files.items():

        def build(images_path: Path = images_path,
                  labels_path: Path = labels_path) -> tuple[np.ndarray, np.ndarray]:
            images, labels = read_idx_pair(images_path, labels_path, shape=(28, 28))
            _check_labels(labels, family, labels_path)
            return resize_batch(images, config.size), labels

        arrays[split] = cached_arrays(key, split, build, enabled=config.cache)
    train, test = ArrayDataset(*arrays["train"]), ArrayDataset(*arrays["test"])
    shape = tuple(int(d) for d in train.images.shape[1:])
    info = _info(family, shape, str(files["train"][0].parent), [str(p) for p in every])  # type: ignore[arg-type]
    return build_splits(info, train, test, config)


def _load_hf(family: Family, config: DataConfig, hub_id: str) -> DataSplits:
    splits = _hf.load_hf_splits(hub_id, family.name)
    if "train" not in splits or "test" not in splits:
        raise DatasetNotFound(
            f"dataset '{family.name}': Hugging Face '{hub_id}' has splits {sorted(splits)}, "
            "needs train and test"
        )
    local = Path(hub_id).expanduser()
    stamps = file_stamps(local) if local.is_dir() else []
    arrays = {}
    for split in ("train", "test"):
        n = config.n_train if split == "train" else config.n_test
        key = cache_key(family.name, stamps, hub=hub_id, size=config.size, n=n)

        def build(split: str = split, n: int | None = n) -> tuple[np.ndarray, np.ndarray]:
            images, labels = _hf.hf_split_to_arrays(
                splits[split], f"{hub_id} [{split}]", n, config.size, False, "L",
                num_classes=len(family.classes), native=(28, 28))
            _check_labels(labels, family, f"{hub_id} [{split}]")
            return images, labels

        arrays[split] = cached_arrays(key, split, build, enabled=config.cache)
    train, test = ArrayDataset(*arrays["train"]), ArrayDataset(*arrays["test"])
    shape = tuple(int(d) for d in train.images.shape[1:])
    return build_splits(_info(family, shape, hub_id, []), train, test, config)  # type: ignore[arg-type]


def load_mnist(config: DataConfig) -> DataSplits:
    """MNIST: 60 000 / 10 000 handwritten digits, 1×28×28, 10 classes."""
    return load_family(MNIST, config)


def load_fashion_mnist(config: DataConfig) -> DataSplits:
    """Fashion-MNIST: 60 000 / 10 000 clothing images, 1×28×28, 10 classes."""
    return load_family(FASHION_MNIST, config)
