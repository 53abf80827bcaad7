"""CelebA faces (3×160×160 by default; standard train/valid/test partition), with the 40
binary attributes as labels where the files have them.

Accepted sources, looked for in ``data.hub_id`` when it is a local folder, else in
``data.root`` (or the default places under ``celeba`` / ``CelebA``, each also with
``celeba/``, torchvision's layout):

* the aligned-image release: ``img_align_celeba/*.jpg`` (Kaggle's doubly nested
  ``img_align_celeba/img_align_celeba/`` too) with ``list_eval_partition.txt``
  (``000001.jpg 0``) or Kaggle's ``list_eval_partition.csv``; partition 0 is train, 1 the
  validation split (``extra["valid"]``), 2 test — the standard split;
* parquet / arrow files whose names say the split (``train``, ``valid``/``validation``,
  ``test``);
* otherwise Hugging Face ``datasets`` with ``data.hub_id`` (default ``flwrlabs/celeba``, whose
  ``train`` / ``valid`` / ``test`` splits are the standard partition) when online or cached.

Labels: with ``list_attr_celeba.txt`` (the release's ``N``, a line of the 40 attribute names,
then ``000001.jpg -1 1 ...``) or Kaggle's ``list_attr_celeba.csv`` next to the partition file,
each image's label is its attributes as a bit mask (bit i set when attribute i is 1), so the
label stays one int like every dataset's; ``info.metadata["attributes"]`` lists the names in
bit order and ``info.num_classes`` is their number (40). The domain FID extractor trains on
them as a multi-label task. Parquet / arrow files and Hugging Face datasets carry the
attributes as columns named like the release's (``Smiling``, boolean or 1 / -1), as
``flwrlabs/celeba`` does: those columns give the same bit masks, in the release's order.
Without attributes the labels are -1 and the dataset-trained FID does not apply.

Crop and resize: every image is centre-cropped to a square of side min(H, W) — 178×178 out
of the aligned 178×218 images, cutting 20 rows above and below — then resized to
``data.size``×``data.size`` (default 160) with PIL's antialiased bicubic filter. Decoded
images are cached as a memory-mapped uint8 array (about 12 GB for the full training split at
160×160; decoding it the first time takes minutes); ``data.n_train`` / ``data.n_test`` limit
(``n_test`` also limits ``valid``)
what is decoded, and with ``data.cache=false`` images are decoded lazily per item.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness import HarnessError
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
    split_shape,
)
from ._sources import Sources, load_from_sources
from .folders import images_split

NAME = "celeba"
ALIASES = ("celeba", "CelebA")
HUB_ID = "flwrlabs/celeba"
DEFAULT_SIZE = 160
PARTITIONS = {0: "train", 1: "valid", 2: "test"}
CROP = "centre square of side min(H, W) (178x178 of the aligned 178x218), then bicubic resize"
FIX = (
    "download CelebA's img_align_celeba.zip and list_eval_partition.txt, unpack them into a "
    "folder DIR (DIR/img_align_celeba/*.jpg, DIR/list_eval_partition.txt) and run with "
    "`--set data.root=DIR` (or export HARNESS_DATA_ROOT=PARENT with PARENT/celeba), or give "
    "parquet files / a Hugging Face dataset with `--set data.hub_id=PATH_OR_ID` (needs network "
    "or a Hugging Face cache)"
)


def _image_dir(folder: Path) -> Path | None:
    for candidate in (folder / "img_align_celeba" / "img_align_celeba",
                      folder / "img_align_celeba"):
        if candidate.is_dir() and any(p.suffix.lower() == ".jpg" or p.suffix.lower() == ".png"
                                      for p in _first(candidate)):
            return candidate
    return None


def _first(folder: Path, n: int = 5) -> list[Path]:
    out = []
    for path in folder.iterdir():
        out.append(path)
        if len(out) >= n:
            break
    return out


def _partition_file(folder: Path) -> Path | None:
    for name in ("list_eval_partition.txt", "list_eval_partition.csv"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_partition(path: Path) -> dict[str, list[str]]:
    """File names per split from ``list_eval_partition.txt`` / ``.csv``; malformed lines are
    refused with the file name and line number."""
    out: dict[str, list[str]] = {s: [] for s in PARTITIONS.values()}
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or (number == 1 and line.lower().startswith("image_id")):
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise CorruptDataset(
                f"{path}:{number}: expected '<image file> <0|1|2>', got {line[:80]!r}"
            )
        out[PARTITIONS[int(parts[1])]].append(parts[0])
    if not out["train"] or not out["test"]:
        raise CorruptDataset(f"{path}: the partition lists no train or no test images")
    return out


def _attribute_file(folder: Path) -> Path | None:
    for name in ("list_attr_celeba.txt", "list_attr_celeba.csv"):
        if (folder / name).is_file():
            return folder / name
    return None


def _attribute_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(attribute names, (line number, fields) per image line) of either layout."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if path.suffix == ".csv":
        header, body, first = lines[0].split(",")[1:], lines[1:], 2
    else:
        if len(lines) < 2 or not lines[0].strip().isdigit():
            raise CorruptDataset(f"{path}:1: expected the number of images, got "
                                 f"{(lines or [''])[0][:80]!r}")  # fmt: skip
        header, body, first = lines[1].split(), lines[2:], 3
    rows = [(n, line.replace(",", " ").split()) for n, line in enumerate(body, start=first)
            if line.strip()]  # fmt: skip
    return [h.strip() for h in header], rows


#: the release's 40 attributes, in the order of ``list_attr_celeba.txt`` (bit i = attribute i)
ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses "
    "Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache "
    "Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks "
    "Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young"
).split()


def attribute_columns(columns: list[str]) -> list[str]:
    """The columns of a table that are CelebA attributes (names compared without case), in
    the release's order; [] when it has none."""
    by_name = {c.lower(): c for c in columns}
    return [by_name[a.lower()] for a in ATTRIBUTES if a.lower() in by_name]


def masks_from_columns(values: dict[str, list[object]], where: str) -> list[int]:
    """One bit mask per row from attribute columns (in bit order): True / 1 set the bit,
    False / 0 / -1 do not; anything else is refused, naming the column and row."""
    names = list(values)
    rows = len(values[names[0]]) if names else 0
    masks = [0] * rows
    for bit, name in enumerate(names):
        for row, v in enumerate(values[name]):
            if isinstance(v, bool) or v in (1, 0, -1):
                masks[row] |= (1 << bit) if v is True or v == 1 else 0
            else:
                raise CorruptDataset(f"{where}: attribute column '{name}' row {row} holds "
                                     f"{v!r}; expected true/false or 1/-1/0")
    return masks


def read_attributes(path: Path) -> tuple[list[str], dict[str, int]]:
    """Attribute names and each image's bit mask from ``list_attr_celeba.txt`` / ``.csv``;
    a malformed line (wrong number of values, a value other than 1 / -1 / 0) is refused with
    the file name and line number."""
    names, rows = _attribute_rows(path)
    if not names or len(names) > 62:
        raise CorruptDataset(f"{path}: expected a header of attribute names (at most 62), "
                             f"got {len(names)}")  # fmt: skip
    masks: dict[str, int] = {}
    for number, parts in rows:
        if len(parts) != len(names) + 1 or any(v not in ("1", "-1", "0") for v in parts[1:]):
            raise CorruptDataset(f"{path}:{number}: expected '<image file>' and {len(names)} "
                                 f"values of 1 or -1, got {' '.join(parts)[:80]!r}")  # fmt: skip
        masks[parts[0]] = sum(1 << i for i, v in enumerate(parts[1:]) if v == "1")
    return names, masks


def _labels(files: list[str], attributes: tuple[list[str], dict[str, int]] | None,
            path: Path | None) -> list[int]:
    if attributes is None:
        return [-1] * len(files)
    missing = [f for f in files if f not in attributes[1]]
    if missing:
        raise CorruptDataset(f"{path} has no attributes for {len(missing)} images, e.g. "
                             f"{', '.join(missing[:3])}")  # fmt: skip
    return [attributes[1][f] for f in files]


def _load_aligned(folder: Path, images: Path, partition: Path, config: DataConfig,
                  size: int) -> DataSplits:
    names = read_partition(partition)
    attr_path = _attribute_file(folder)
    attributes = read_attributes(attr_path) if attr_path is not None else None
    present = {p.name for p in images.iterdir()}
    missing = [n for split in names.values() for n in split if n not in present]
    if missing:
        raise CorruptDataset(
            f"{partition} lists {len(missing)} images absent from {images}, e.g. "
            f"{', '.join(missing[:3])}"
        )
    limits = {"train": config.n_train, "test": config.n_test, "valid": config.n_test}
    splits = {}
    for split, files in names.items():
        if not files:
            continue
        n = limits[split]
        kept = files if n is None else files[:n]
        paths = [images / f for f in kept]
        sources = [partition, *([attr_path] if attr_path else []), *paths]
        key = cache_key(NAME, sources, size=size, layout="aligned")
        splits[split] = images_split(paths, _labels(kept, attributes, attr_path), key=key,
                                     split=split, size=size, center_crop=True, mode="RGB",
                                     cache=config.cache)  # fmt: skip
    extra = {"valid": splits["valid"]} if "valid" in splits else {}
    return _splits(splits["train"], splits["test"], extra, str(folder), config, size, "aligned",
                   attributes[0] if attributes else None)


def _columns_labels(images: np.ndarray, values: dict[str, list[object]],
                    where: str) -> tuple[np.ndarray, np.ndarray]:
    """Images with the attribute bit masks of ``values`` as labels (-1 without any)."""
    if not values:
        return images, np.full(len(images), -1, dtype=np.int64)
    return images, np.asarray(masks_from_columns(values, where), dtype=np.int64)


def _same_attributes(found: dict[str, list[str]], where: str) -> list[str] | None:
    """The attribute columns every split has; refused when the splits disagree."""
    distinct = {tuple(v) for v in found.values()}
    if len(distinct) > 1:
        raise CorruptDataset(f"{where}: the splits have different attribute columns "
                             f"({', '.join(f'{s}: {len(v)}' for s, v in found.items())})")
    names = list(distinct.pop()) if distinct else []
    return names or None


def _load_columnar(folder: Path, groups: dict[str, list[Path]], config: DataConfig,
                   size: int) -> DataSplits:
    found = {split: attribute_columns(_hf.column_names(files)) for split, files in groups.items()}
    attributes = _same_attributes(found, str(folder))
    arrays = {}
    for split, files in groups.items():
        n = config.n_train if split == "train" else config.n_test
        key = cache_key(NAME, files, size=size, n=n, layout="columnar",
                        attributes=len(attributes or []))

        def build(files: list[Path] = files, n: int | None = n) -> tuple[np.ndarray, np.ndarray]:
            images, _ = _hf.columnar_split_to_arrays(files, n, size, True, "RGB")
            values = _hf.read_columns(files, attributes, n) if attributes else {}
            return _columns_labels(images, values, ", ".join(map(str, files)))

        arrays[split] = ArrayDataset(*cached_arrays(key, split, build, enabled=config.cache))
    extra = {"valid": arrays["valid"]} if "valid" in arrays else {}
    return _splits(arrays["train"], arrays["test"], extra, str(folder), config, size,
                   "parquet/arrow", [_release_name(a) for a in attributes or []])


def _load_hf(hub_id: str, config: DataConfig, size: int) -> DataSplits:
    splits = _hf.load_hf_splits(hub_id, NAME)
    if "train" not in splits or "test" not in splits:
        raise DatasetNotFound(f"dataset '{NAME}': '{hub_id}' has splits {sorted(splits)}, "
                              "needs train and test")
    attributes = _same_attributes({s: attribute_columns(list(d.column_names))
                                   for s, d in splits.items()}, hub_id)
    local = Path(hub_id).expanduser()
    stamps = file_stamps(local) if local.is_dir() else []
    arrays = {}
    for split, data in splits.items():
        n = config.n_train if split == "train" else config.n_test
        key = cache_key(NAME, stamps, hub=hub_id, size=size, n=n,
                        attributes=len(attributes or []))

        def build(data: object = data, split: str = split, n: int | None = n
                  ) -> tuple[np.ndarray, np.ndarray]:
            # CelebA's HF label-like columns (celeb_id) are identities, not classes: the labels
            # are the attribute columns' bit masks instead
            where = f"{hub_id} [{split}]"
            images, _ = _hf.hf_split_to_arrays(data, where, n, size, True, "RGB")
            rows = data if n is None else data.select(range(min(n, len(data))))  # type: ignore[attr-defined]
            values = {a: list(rows[a]) for a in attributes or []}  # type: ignore[index]
            return _columns_labels(images, values, where)

        arrays[split] = ArrayDataset(*cached_arrays(key, split, build, enabled=config.cache))
    extra = {"valid": arrays["valid"]} if "valid" in arrays else {}
    return _splits(arrays["train"], arrays["test"], extra, hub_id, config, size, "huggingface",
                   [_release_name(a) for a in attributes or []])


def _release_name(column: str) -> str:
    """The release's spelling of an attribute column's name."""
    return next(a for a in ATTRIBUTES if a.lower() == column.lower())


def _splits(train: object, test: object, extra: dict, source: str, config: DataConfig,
            size: int, layout: str, attributes: list[str] | None = None) -> DataSplits:
    metadata = {"layout": layout, "crop": CROP, "size": size,
                "partition": "standard: 0 train, 1 valid (extra['valid']), 2 test"}
    if attributes:
        metadata["attributes"] = attributes
        metadata["labels"] = "bit mask of the attributes (bit i = attributes[i] is 1)"
    info = DatasetInfo(
        name=NAME, shape=split_shape(train), source=source,  # type: ignore[arg-type]
        num_classes=len(attributes) if attributes else None, metadata=metadata,
    )
    return build_splits(info, train, test, config, extra=extra)  # type: ignore[arg-type]


SOURCES = Sources(
    name=NAME, aliases=ALIASES, subdirs=("", "celeba"), default_hub_id=HUB_ID,
    what="CelebA files (img_align_celeba/ with list_eval_partition.txt, or parquet/arrow)",
    fix=FIX)


def load_from_folder(folder: Path, config: DataConfig, size: int) -> DataSplits | None:
    """Load from whichever supported layout ``folder`` holds, or None."""
    if not folder.is_dir():
        return None
    if _hf.is_saved_dataset(folder):
        return _load_hf(str(folder), config, size)
    images, partition = _image_dir(folder), _partition_file(folder)
    if images is not None and partition is not None:
        return _load_aligned(folder, images, partition, config, size)
    groups = _hf.split_columnar_files(_hf.columnar_files(folder))
    if "train" in groups and "test" in groups:
        return _load_columnar(folder, groups, config, size)
    return None


def load(config: DataConfig) -> DataSplits:
    """CelebA from local files or Hugging Face (see the module docstring)."""
    size = DEFAULT_SIZE if config.size is None else int(config.size)
    if size <= 0:
        raise HarnessError(f"data.size must be a positive number of pixels, got {size}")
    return load_from_sources(SOURCES, config,
                             lambda folder, notes: load_from_folder(folder, config, size),
                             lambda hub_id: _load_hf(hub_id, config, size))
