"""What every built-in dataset loader shares: errors, the in-memory split, local search
paths, the decoded-array cache, resource limits (gzip) and resizing.

Why one module: the loaders differ only in how they *decode* files; storing, caching and
finding files must behave identically everywhere (the same error wording, the same cache
invalidation), so it lives here once.

Storage: a split keeps its images as one ``uint8`` array (N, C, H, W) — or ``float32`` for
generated data — possibly memory-mapped from the cache, and converts an item — or a whole batch,
with one indexing operation (``ArrayDataset.fetch_batch``) — to float32 in [0, 1] only when
it is asked for. CelebA at 160×160 is 12 GB as uint8 and
would be 50 GB as float32, so nothing here converts a whole large split at once.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from harness import HarnessError, api

#: bump when the decoded layout (or the cache key) changes, so older cache files are never
#: reused
CACHE_VERSION = 2

#: files up to this size are hashed whole for the cache key; larger ones by a sample
FINGERPRINT_WHOLE_BYTES = 4 << 20
#: a sampled fingerprint reads the first and last block and this many blocks between
FINGERPRINT_SAMPLES = 64
FINGERPRINT_BLOCK = 16 << 10
#: content fingerprints of more files than this: a deterministic, evenly spaced sample
FINGERPRINT_MAX_FILES = 2000

#: the most bytes a gzip'd input may inflate to, unless ``$HARNESS_MAX_GUNZIP_BYTES`` says
DEFAULT_MAX_GUNZIP_BYTES = 1 << 30

#: system-wide data folders (Debian's ``dataset-*`` packages install under the first);
#: a module attribute so tests can point it elsewhere
SYSTEM_DATA_DIRS: list[Path] = [Path("/usr/share/datasets")]


# ------------------------------------------------------------------------------------ errors
class DatasetNotFound(HarnessError):
    """The files of a dataset are nowhere to be found; the message lists where we looked and
    the command or option that fixes it."""


class CorruptDataset(HarnessError):
    """A dataset file exists but cannot be trusted (truncated, wrong magic number, counts or
    shapes that do not match); the message names the file."""


class DatasetTooLarge(HarnessError):
    """A compressed input would inflate beyond the configured limit; the message names the
    file, the limit and how to raise it."""


# ------------------------------------------------------------------------------ gzip limits
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def max_gunzip_bytes() -> int:
    """The decompressed-size cap: ``$HARNESS_MAX_GUNZIP_BYTES`` (bytes, or with a K/M/G/T
    suffix, powers of 1024), default 1 GiB."""
    text = os.environ.get("HARNESS_MAX_GUNZIP_BYTES", "").strip()
    if not text:
        return DEFAULT_MAX_GUNZIP_BYTES
    match = _SIZE.match(text)
    if not match:
        raise HarnessError(
            f"HARNESS_MAX_GUNZIP_BYTES={text!r} is not a size: give bytes, or a number with "
            "K, M, G or T (e.g. 4G)"
        )
    scale = 1024 ** " kmgt".index(match.group(2).lower() or " ")
    value = int(float(match.group(1)) * scale)
    if value <= 0:
        raise HarnessError(f"HARNESS_MAX_GUNZIP_BYTES must be positive, got {text!r}")
    return value


def _too_large(path: Path, limit: int, what: str) -> DatasetTooLarge:
    return DatasetTooLarge(
        f"{path}: {what} more than the {_human(limit)} a gzip'd input may inflate to; "
        f"refused before inflating the rest. If the file is genuine, raise the limit, e.g. "
        f"HARNESS_MAX_GUNZIP_BYTES={_env_size(max(2 * limit, 1 << 30))}"
    )


def _env_size(n: int) -> str:
    for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def _human(n: int) -> str:
    for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}iB"
    return f"{n} bytes"


def read_gzip(path: Path, limit: int | None = None, chunk: int = 1 << 20) -> bytes:
    """The decompressed content of gzip file ``path``, inflated ``chunk`` bytes at a time and
    refused (with :class:`DatasetTooLarge`) as soon as it passes ``limit`` bytes (default:
    :func:`max_gunzip_bytes`): a bomb costs at most ``limit`` bytes of memory and the time
    to inflate them. (The size in the gzip trailer is not trusted: it is the size mod 2**32,
    a crafted file can lie, and a truncated file has garbage there.) A truncated or corrupt
    stream is refused with :class:`CorruptDataset`."""
    limit = max_gunzip_bytes() if limit is None else limit
    try:
        parts: list[bytes] = []
        total = 0
        with gzip.open(path, "rb") as fh:
            while True:
                block = fh.read(chunk)
                if not block:
                    break
                total += len(block)
                if total > limit:
                    raise _too_large(path, limit, "it inflates to")
                parts.append(block)
        return b"".join(parts)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise CorruptDataset(f"{path}: truncated or corrupt gzip file ({exc})") from exc


# ------------------------------------------------------------------------------------ splits
class ArrayDataset(Dataset):
    """A split held as one array; items are ``(float32 C×H×W tensor in [0, 1], int label)``.

    ``images`` is (N, C, H, W), ``uint8`` (divided by 255 per item) or ``float32`` already in
    [0, 1]. ``labels`` is an int array of length N (-1 where there is no label) or None.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {images.shape}")
        if images.dtype not in (np.uint8, np.float32):
            raise ValueError(f"images must be uint8 or float32, got {images.dtype}")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = (
            np.full(len(images), -1, dtype=np.int64) if labels is None else np.asarray(labels)
        )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def _to_tensor(self, array: np.ndarray) -> torch.Tensor:
        out = torch.from_numpy(np.array(array, dtype=np.float32, copy=True))
        if self.images.dtype == np.uint8:
            out.div_(255.0)
        return out

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a split of {len(self)} images")
        return self._to_tensor(self.images[index]), int(self.labels[index])

    def fetch_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch with one indexing operation: ``(float32 (n, C, H, W) images in
        [0, 1], int64 (n,) labels)``, equal bit for bit to ``default_collate([self[i] for i
        in indices])`` (an empty ``indices`` gives (0, C, H, W) and (0,)).

        This is what :func:`harness.training.feeding.make_loader` calls once per batch instead of
        ``__getitem__`` per item plus ``default_collate``."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (int(idx.min()) < -n or int(idx.max()) >= n):
            bad = int(idx.min()) if int(idx.min()) < -n else int(idx.max())
            raise IndexError(f"index {bad} out of range for a split of {n} images")
        images = torch.from_numpy(np.asarray(self.images[idx]))  # a fresh copy: fancy indexing
        if images.dtype == torch.uint8:
            images = images.to(torch.float32).div_(255.0)
        labels = torch.from_numpy(np.asarray(self.labels[idx], dtype=np.int64))
        return images, labels

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """Several items from one batched fetch, as the list of ``(image, label)`` items
        PyTorch's ``DataLoader`` expects from ``__getitems__`` (so a plain
        ``DataLoader(split, batch_size=...)`` with its default collate still works)."""
        images, labels = self.fetch_batch(indices)
        return list(zip(images.unbind(0), labels.tolist(), strict=True))

    def tensor(self, indices: Sequence[int] | slice | None = None) -> torch.Tensor:
        """Several images at once as one float32 (n, C, H, W) tensor — fast for small sets
        (bumps, digits, a batch); avoid on a whole large split."""
        selected = self.images if indices is None else self.images[indices]
        return self._to_tensor(selected)

    def head(self, n: int | None) -> ArrayDataset:
        """The first ``n`` items (all when ``n`` is None); a view, no copy."""
        if n is None:
            return self
        if n < 0:
            raise HarnessError(f"the number of images to keep must be >= 0, got {n}")
        return ArrayDataset(self.images[:n], self.labels[:n])


# ----------------------------------------------------------------------------- local search
def data_root_env() -> Path | None:
    """``$HARNESS_DATA_ROOT`` if set (a folder holding one subfolder per dataset)."""
    value = os.environ.get("HARNESS_DATA_ROOT", "").strip()
    return Path(value).expanduser() if value else None


def candidate_dirs(root: str | None, aliases: Sequence[str], subdirs: Sequence[str] = ("",)
                   ) -> list[Path]:
    """The folders searched, in order, for a dataset known under ``aliases``.

    With an explicit ``data.root`` only that folder (and ``root/<alias>``) is searched: an
    explicit choice must not be overridden by files found elsewhere. Otherwise:
    ``$HARNESS_DATA_ROOT/<alias>``, ``~/.cache/vrrae-harness/data/<alias>``,
    ``./data/<alias>`` and the system folders (``/usr/share/datasets/<alias>``). Each base is
    also tried with ``subdirs`` appended (e.g. torchvision's ``raw``).
    """
    bases: list[Path] = []
    if root is not None:
        base = Path(root).expanduser()
        bases.append(base)
        bases.extend(base / alias for alias in aliases)
    else:
        env = data_root_env()
        if env is not None:
            bases.extend(env / alias for alias in aliases)
        home = Path.home() / ".cache" / "vrrae-harness" / "data"
        bases.extend(home / alias for alias in aliases)
        bases.extend(Path.cwd() / "data" / alias for alias in aliases)
        for system in SYSTEM_DATA_DIRS:
            bases.extend(system / alias for alias in aliases)
    out: list[Path] = []
    for base in bases:
        for sub in subdirs:
            path = base / sub if sub else base
            if path not in out:
                out.append(path)
    return out


def not_found_message(name: str, what: str, searched: Iterable[Path], fix: str,
                      hf_note: str = "") -> str:
    """One message: what was looked for, every path searched, and how to fix it."""
    paths = "\n  ".join(str(p) for p in searched) or "(none)"
    text = f"dataset '{name}': {what} not found. Searched:\n  {paths}\nFix: {fix}"
    if hf_note:
        text += f"\n{hf_note}"
    return text


# ------------------------------------------------------------------------------------- cache
def cache_dir() -> Path:
    """Where decoded arrays are cached: ``datasets/`` in the host's cache folder
    (:func:`harness.api.cache_dir`)."""
    return Path(api.cache_dir("datasets"))


def content_fingerprint(path: Path, size: int) -> str:
    """A hash of the file's content: all of it up to :data:`FINGERPRINT_WHOLE_BYTES`, else
    its first and last blocks and :data:`FINGERPRINT_SAMPLES` evenly spaced blocks between
    (so that a same-size edit that keeps the modification time still changes the key, for
    headers always, for the rest of a large file very likely)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        if size <= FINGERPRINT_WHOLE_BYTES:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        else:
            last = size - FINGERPRINT_BLOCK
            for i in range(FINGERPRINT_SAMPLES + 2):
                fh.seek(last * i // (FINGERPRINT_SAMPLES + 1))
                digest.update(fh.read(FINGERPRINT_BLOCK))
    return digest.hexdigest()


def cache_key(name: str, files: Iterable[Path], **params: Any) -> str:
    """A key that changes whenever a source file (path, size, mtime, content fingerprint) or
    a decoding parameter changes, so a stale cache entry can never be used. Of many files
    (a folder of images), an evenly spaced sample of :data:`FINGERPRINT_MAX_FILES` is
    fingerprinted; every file's path, size and mtime count."""
    paths = sorted(Path(p) for p in files)
    step = max(1, -(-len(paths) // FINGERPRINT_MAX_FILES))
    stamp = []
    for i, path in enumerate(paths):
        st = path.stat()
        entry: list[Any] = [str(path.resolve()), st.st_size, st.st_mtime_ns]
        if i % step == 0:
            entry.append(content_fingerprint(path, st.st_size))
        stamp.append(entry)
    payload = json.dumps(
        {"v": CACHE_VERSION, "name": name, "files": stamp, "params": params},
        sort_keys=True, default=str,
    )
    return f"{name}-{hashlib.sha256(payload.encode()).hexdigest()[:20]}"


def _cache_paths(key: str, split: str) -> tuple[Path, Path]:
    base = cache_dir() / key
    return base.with_name(f"{key}-{split}-images.npy"), base.with_name(f"{key}-{split}-labels.npy")


def _atomic_target(path: Path) -> Any:
    """A temporary path beside ``path``, moved into place on success: the host's one atomic
    writer (:func:`harness.api.atomic_path`)."""
    return api.atomic_path(path)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    with _atomic_target(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def _load_cached(key: str, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    images_path, labels_path = _cache_paths(key, split)
    if not (images_path.exists() and labels_path.exists()):
        return None
    try:
        images = np.load(images_path, mmap_mode="r", allow_pickle=False)
        labels = np.load(labels_path, allow_pickle=False)
    except (OSError, ValueError):  # a damaged cache file is rebuilt, never trusted
        return None
    if images.ndim != 4 or labels.shape != (images.shape[0],):
        return None
    return images, labels


def cached_arrays(key: str, split: str, build: Callable[[], tuple[np.ndarray, np.ndarray]],
                  enabled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The decoded ``(images, labels)`` of one split: from the cache when present, else
    ``build()`` (then cached, written atomically). Cached images come back memory-mapped."""
    if enabled:
        hit = _load_cached(key, split)
        if hit is not None:
            return hit
    images, labels = build()
    labels = np.asarray(labels, dtype=np.int64)
    if not enabled:
        return images, labels
    images_path, labels_path = _cache_paths(key, split)
    try:
        _save_atomic(labels_path, labels)
        _save_atomic(images_path, np.ascontiguousarray(images))
    except OSError:  # a read-only home must not stop a run; it only makes it slower
        return images, labels
    hit = _load_cached(key, split)
    return hit if hit is not None else (images, labels)


def cached_streamed(key: str, split: str, n: int, shape: tuple[int, int, int],
                    fill: Callable[[np.ndarray, np.ndarray], None], enabled: bool = True
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`cached_arrays` for splits too large to hold twice in memory: ``fill``
    writes images into a (possibly memory-mapped, on-disk) uint8 array of (n, *shape) and
    labels into an int64 array of n."""
    if enabled:
        hit = _load_cached(key, split)
        if hit is not None:
            return hit
    labels = np.full(n, -1, dtype=np.int64)
    if not enabled:
        images = np.empty((n, *shape), dtype=np.uint8)
        fill(images, labels)
        return images, labels
    images_path, labels_path = _cache_paths(key, split)
    try:
        with _atomic_target(images_path) as tmp:
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, *shape))
            fill(mm, labels)
            mm.flush()
            del mm
        _save_atomic(labels_path, labels)
    except OSError:
        images = np.empty((n, *shape), dtype=np.uint8)
        fill(images, labels)
        return images, labels
    hit = _load_cached(key, split)
    if hit is None:  # pragma: no cover - we just wrote it
        raise HarnessError(f"the cache file {images_path} could not be read back")
    return hit


# ------------------------------------------------------------------------------------ labels
#: labels beyond this are no class index of any dataset (a bit mask of 62 attributes at most)
MAX_LABEL = 1 << 62


def integral_labels(values: Sequence[Any] | np.ndarray, where: str,
                    num_classes: int | None = None, *, bit_mask: bool = False) -> np.ndarray:
    """``values`` as int64 labels (None and -1: no label), refusing what is no class index:
    a string or a list, a boolean, a fraction (``1.7`` would be truncated to class 1 and
    trained on), and a value outside ``-1 .. num_classes - 1`` (bit masks: below
    ``2 ** num_classes``), which would size a classifier after training. ``where`` names
    the file and column in the error."""
    limit = MAX_LABEL if num_classes is None else (1 << num_classes if bit_mask else num_classes)
    out = np.empty(len(values), dtype=np.int64)
    array = np.asarray(values) if isinstance(values, np.ndarray) else None
    if array is not None and array.dtype.kind in "iu":
        if array.size and (int(array.min()) < -1 or int(array.max()) >= limit):
            bad = int(array.max()) if int(array.max()) >= limit else int(array.min())
            raise CorruptDataset(_label_error(where, bad, limit, num_classes, bit_mask))
        return array.astype(np.int64).reshape(-1)
    for i, value in enumerate(values.tolist() if array is not None else values):
        if value is None:
            out[i] = -1
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise CorruptDataset(f"{where}: label {i} is {value!r} ({type(value).__name__}), "
                                 "not an integer class index; fix the column")
        if isinstance(value, float | np.floating) and not float(value).is_integer():
            raise CorruptDataset(f"{where}: label {i} is {value!r}, not an integer class "
                                 "index (it would be truncated); fix the column")
        if not -1 <= int(value) < limit:
            raise CorruptDataset(_label_error(where, int(value), limit, num_classes, bit_mask))
        out[i] = int(value)
    return out


def _label_error(where: str, value: int, limit: int, num_classes: int | None,
                 bit_mask: bool) -> str:
    allowed = ("-1 (none) or a bit mask of the " + f"{num_classes} attributes" if bit_mask
               else f"-1 (none) or 0..{limit - 1}" + ("" if num_classes is None
                                                      else f" ({num_classes} classes)"))
    return f"{where}: label {value} is out of range: labels must be {allowed}; fix the column"


# ---------------------------------------------------------------------------------- resizing
def resize_batch(images: np.ndarray, size: int | None, chunk: int = 2048) -> np.ndarray:
    """Resize (N, C, H, W) images to size×size (bilinear, antialiased), keeping the dtype
    (uint8 is rounded back). ``None`` or the current size returns the input unchanged."""
    if size is None or (images.shape[2] == size and images.shape[3] == size):
        return images
    if size <= 0:
        raise HarnessError(f"data.size must be a positive number of pixels, got {size}")
    import torch.nn.functional as F

    out = np.empty((images.shape[0], images.shape[1], size, size), dtype=images.dtype)
    for start in range(0, images.shape[0], chunk):
        part = torch.from_numpy(np.asarray(images[start:start + chunk], dtype=np.float32))
        resized = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True,
                                align_corners=False)
        if images.dtype == np.uint8:
            resized = resized.round_().clamp_(0, 255)
        else:
            resized = resized.clamp_(0, 1)
        out[start:start + chunk] = resized.numpy().astype(images.dtype)
    return out


def check_native(where: str, size_hw: tuple[int, int], native: tuple[int, int] | None) -> None:
    """Refuse an image that is not a named dataset's own size (H, W) before any resizing:
    28×28 images are not CIFAR-10, whatever ``data.size`` makes of them."""
    if native is not None and tuple(size_hw) != tuple(native):
        raise CorruptDataset(
            f"{where} is {size_hw[0]}×{size_hw[1]}, not the dataset's {native[0]}×{native[1]}: "
            "these are not its files (data.size resizes the dataset's own images, it does "
            "not make other images the dataset)")


def pil_to_chw(image: Any, size: int | None = None, center_crop: bool = False,
               mode: str = "RGB") -> np.ndarray:
    """A PIL image as a uint8 (C, H, W) array, optionally centre-cropped to a square (side
    min(H, W)) and resized to size×size with PIL's antialiased bicubic filter."""
    from PIL import Image

    if image.mode != mode:
        image = image.convert(mode)
    if center_crop:
        w, h = image.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def head_count(n: int | None, name: str) -> int | None:
    """Validate ``data.n_train`` / ``data.n_test``."""
    if n is not None and n < 0:
        raise HarnessError(f"data.{name} must be >= 0, got {n}")
    return n


def build_splits(info: Any, train: ArrayDataset | Dataset, test: ArrayDataset | Dataset,
                 config: Any, extra: dict[str, Dataset] | None = None) -> Any:
    """A :class:`harness.api.DataSplits` keeping the first ``data.n_train`` / ``data.n_test``
    items, with the kept sizes recorded in ``info.metadata``. Labels outside the dataset's
    classes are refused here, for every loader."""
    from harness.api import DataSplits

    n_train = head_count(config.n_train, "n_train")
    n_test = head_count(config.n_test, "n_test")
    train = _head(train, n_train)
    test = _head(test, n_test)
    if info.num_classes is not None:
        bit_mask = str(info.metadata.get("labels", "")).startswith("bit mask")
        for split in (train, test):
            labels = getattr(split, "labels", None)
            if isinstance(labels, np.ndarray):
                integral_labels(labels, f"'{info.source}' (labels)", info.num_classes,
                                bit_mask=bit_mask)
    info.metadata["n_train"] = len(train)  # type: ignore[arg-type]
    info.metadata["n_test"] = len(test)  # type: ignore[arg-type]
    return DataSplits(info=info, train=train, test=test, extra=dict(extra or {}))


def _head(split: Dataset, n: int | None) -> Dataset:
    if n is None:
        return split
    head = getattr(split, "head", None)
    if head is not None:
        return head(n)
    from torch.utils.data import Subset

    return Subset(split, range(min(n, len(split))))  # type: ignore[arg-type]


def file_stamps(folder: Path, limit: int = 500_000) -> list[Path]:
    """Every file under ``folder`` (for cache keys of local folders), at most ``limit``."""
    out: list[Path] = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            out.append(path)
            if len(out) >= limit:
                break
    return out


def split_shape(split: Dataset) -> tuple[int, int, int]:
    """(C, H, W) of a split's images, without decoding when the split knows it."""
    images = getattr(split, "images", None)
    if images is not None:
        return tuple(int(d) for d in images.shape[1:])  # type: ignore[return-value]
    shape = getattr(split, "shape", None)
    if shape is not None:
        return tuple(int(d) for d in shape)  # type: ignore[return-value]
    return tuple(int(d) for d in split[0][0].shape)  # type: ignore[return-value]
