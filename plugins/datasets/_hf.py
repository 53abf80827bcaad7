"""Hugging Face ``datasets`` and columnar files (parquet / arrow) as a source of images.

Why a separate module: ``datasets`` is slow to import and, when it cannot reach the hub,
retries for tens of seconds. So it is imported only here, only when a loader has found no
local files, and never while offline unless the local Hugging Face cache already holds the
dataset. Offline means ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``, or that the hub (through
the HTTPS proxy, if any) does not answer a ``HEAD`` request within ``HARNESS_HUB_TIMEOUT``
seconds (default 3): a machine with no network fails in seconds with the list of local paths
searched, instead of after half a minute of retries. Parquet and arrow files are read with
pyarrow directly, without ``datasets``.
"""

from __future__ import annotations

import io
import math
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import env_flag, one_line

from ._common import (
    CorruptDataset,
    DatasetNotFound,
    check_native,
    integral_labels,
    pil_to_chw,
)

IMAGE_COLUMNS = ("image", "img", "pixel_values")
LABEL_COLUMNS = ("label", "labels", "fine_label", "celeb_id")
SPLIT_ALIASES = {
    "train": ("train", "training"),
    "test": ("test", "testing"),
    "valid": ("valid", "validation", "val"),
}




def hf_offline() -> bool:
    """Whether Hugging Face is told not to use the network."""
    return env_flag("HF_HUB_OFFLINE") or env_flag("HF_DATASETS_OFFLINE")


def hf_cache_has(hub_id: str) -> bool:
    """Whether the local Hugging Face datasets cache seems to hold ``hub_id`` (a cheap check
    of the folder ``datasets`` uses), so that offline we only call it when it can succeed."""
    base = os.environ.get("HF_DATASETS_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.join(Path.home(), ".cache", "huggingface")), "datasets"
    )
    return (Path(base) / hub_id.replace("/", "___")).is_dir()


DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_HUB_TIMEOUT = 3.0


def hub_timeout() -> float:
    """Seconds the hub probe waits: ``$HARNESS_HUB_TIMEOUT`` (default 3)."""
    text = os.environ.get("HARNESS_HUB_TIMEOUT", "").strip()
    try:
        value = float(text) if text else DEFAULT_HUB_TIMEOUT
    except ValueError:
        value = DEFAULT_HUB_TIMEOUT
    return value if math.isfinite(value) and value > 0 else DEFAULT_HUB_TIMEOUT


def hub_endpoint() -> str:
    """The hub's base URL: ``$HF_ENDPOINT`` or https://huggingface.co."""
    return (os.environ.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT).rstrip("/")


def hub_unreachable(timeout: float | None = None) -> str | None:
    """None when the hub answers an HTTP ``HEAD`` (any status) within ``timeout`` seconds,
    else why not. Goes through the proxies urllib honours (``HTTPS_PROXY``, ``NO_PROXY``);
    name resolution is bounded too (the request runs in a thread we stop waiting for)."""
    timeout = hub_timeout() if timeout is None else timeout
    endpoint = hub_endpoint()
    outcome: list[BaseException | None] = []

    def probe() -> None:
        request = urllib.request.Request(f"{endpoint}/", method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                outcome.append(None)
        except urllib.error.HTTPError:  # an answer, even 4xx/5xx: the hub is there
            outcome.append(None)
        except BaseException as exc:  # noqa: B036 - reported to the caller
            outcome.append(exc)

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    exc = outcome[0] if outcome else TimeoutError()
    if exc is None:
        return None
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, TimeoutError):  # socket.timeout is TimeoutError from Python 3.10
        return f"the Hugging Face hub ({endpoint}) did not answer within {timeout:g} s"
    detail = " ".join(str(reason).split()) or type(reason).__name__
    return f"the Hugging Face hub ({endpoint}) cannot be reached ({detail})"


def hf_allowed(hub_id: str) -> tuple[bool, str]:
    """``(may we call datasets.load_dataset(hub_id), why not)``.

    Not when offline mode is set, or the hub cannot be reached, and the local Hugging Face
    cache does not hold ``hub_id``. With the hub unreachable and the cache holding it,
    offline mode is switched on for this process so that ``datasets`` reads its cache at once.
    """
    if Path(hub_id).expanduser().exists():
        return True, ""
    cached = hf_cache_has(hub_id)
    if hf_offline():
        if cached:
            return True, ""
        return False, (
            f"Hugging Face '{hub_id}' not tried: offline mode (HF_HUB_OFFLINE / "
            "HF_DATASETS_OFFLINE) is set and the local Hugging Face cache does not hold it."
        )
    unreachable = hub_unreachable()
    if unreachable is None:
        return True, ""
    if cached:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
        return True, ""
    return False, (
        f"Hugging Face '{hub_id}' not tried: {unreachable}, and the local Hugging Face cache "
        "does not hold it. Provide the files locally (see above), or retry with network "
        "(HARNESS_HUB_TIMEOUT=SECONDS waits longer for the hub)."
    )


def is_saved_dataset(folder: Path) -> bool:
    """Whether ``folder`` was written by ``datasets``' ``save_to_disk``."""
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def load_hf_splits(hub_id: str, name: str) -> dict[str, Any]:
    """The splits of a Hugging Face dataset (hub id, saved-to-disk folder, or a local folder
    ``datasets`` understands), keyed ``train`` / ``test`` / ``valid``."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise DatasetNotFound(
            f"dataset '{name}': the Hugging Face `datasets` package is not installed "
            "(pip install datasets)"
        ) from exc
    path = Path(hub_id).expanduser()
    try:
        if path.is_dir() and is_saved_dataset(path):
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(str(path) if path.exists() else hub_id)
    except Exception as exc:  # network, missing repo, bad files: one readable message
        raise DatasetNotFound(
            f"dataset '{name}': Hugging Face '{hub_id}' could not be loaded: "
            f"{one_line(exc, 500)}"
        ) from exc
    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded}
    out: dict[str, Any] = {}
    for split_name, split in loaded.items():
        canonical = canonical_split(split_name)
        if canonical is not None and canonical not in out:
            out[canonical] = split
    return out


def canonical_split(text: str) -> str | None:
    """``train`` / ``test`` / ``valid`` for a split or file name, or None."""
    lowered = text.lower()
    tokens = [t for t in lowered.replace("-", "_").replace(".", "_").split("_") if t]
    for canonical, aliases in SPLIT_ALIASES.items():
        if any(t in aliases for t in tokens) or lowered in aliases:
            return canonical
    return None


def _pick(columns: list[str], preferred: tuple[str, ...]) -> str | None:
    for column in preferred:
        if column in columns:
            return column
    return None


def decode_image_cell(cell: Any, where: str) -> Any:
    """A PIL image from a cell of an image column: a PIL image, ``{"bytes": ..}`` (the
    Hugging Face parquet encoding) or raw encoded bytes."""
    from PIL import Image, UnidentifiedImageError

    if hasattr(cell, "convert"):  # already a PIL image
        return cell
    data = cell.get("bytes") if isinstance(cell, dict) else cell
    if data is None and isinstance(cell, dict) and cell.get("path"):
        return Image.open(cell["path"])
    if not isinstance(data, (bytes, bytearray)):
        raise CorruptDataset(f"{where}: an image cell holds {type(cell).__name__}, not an image")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise CorruptDataset(f"{where}: an image could not be decoded: {exc}") from exc
    return image


def hf_split_to_arrays(split: Any, where: str, n: int | None, size: int | None,
                       center_crop: bool, mode: str, out: np.ndarray | None = None, *,
                       num_classes: int | None = None,
                       native: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode a Hugging Face split (first ``n`` rows) to uint8 (N, C, H, W) and labels."""
    columns = list(split.column_names)
    image_col = _pick(columns, IMAGE_COLUMNS)
    if image_col is None:
        raise CorruptDataset(f"{where}: no image column among {columns}")
    label_col = _pick(columns, LABEL_COLUMNS)
    if n is not None:
        split = split.select(range(min(n, len(split))))
    rows = split.select_columns([c for c in (image_col, label_col) if c])
    labels = (integral_labels(list(rows[label_col]), f"{where} column '{label_col}'", num_classes)
              if label_col else np.full(len(rows), -1, dtype=np.int64))
    images = decode_images((row[image_col] for row in rows), len(rows), where, size,
                           center_crop, mode, native)
    return images, labels


def decode_images(cells: Iterator[Any] | Any, n: int, where: str, size: int | None,
                  center_crop: bool, mode: str, native: tuple[int, int] | None = None
                  ) -> np.ndarray:
    """Decode ``n`` image cells into one uint8 array; every image must end up the same
    shape, and with ``native`` (H, W) be that size before any resizing (a named dataset's
    own size: 28×28 images are not CIFAR-10), else the file is refused with its name."""
    images: np.ndarray | None = None
    count = 0
    for i, cell in enumerate(cells):
        image = decode_image_cell(cell, where)
        check_native(f"{where}: image {i}", image.size[::-1], native)
        chw = pil_to_chw(image, size, center_crop, mode)
        if images is None:
            images = np.empty((n, *chw.shape), dtype=np.uint8)
        elif chw.shape != images.shape[1:]:
            raise CorruptDataset(
                f"{where}: image {i} has shape {chw.shape}, the first had {images.shape[1:]} "
                "(set data.size to resize every image)"
            )
        images[i] = chw
        count += 1
    if images is None:
        raise CorruptDataset(f"{where}: holds no images")
    if count != n:
        raise CorruptDataset(f"{where}: expected {n} rows, read {count}")
    return images


def columnar_files(folder: Path) -> list[Path]:
    """Parquet and arrow files under ``folder`` (recursively), sorted."""
    files = [p for p in folder.rglob("*") if p.suffix in (".parquet", ".arrow") and p.is_file()]
    return sorted(files)


def _read_table(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".parquet":
            return pq.read_table(path)
        with open(path, "rb") as fh:
            try:
                return pa.ipc.open_stream(fh).read_all()
            except pa.ArrowInvalid:
                fh.seek(0)
                return pa.ipc.open_file(fh).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptDataset(f"{path}: not a readable {path.suffix[1:]} file: {exc}") from exc


def columnar_split_to_arrays(files: list[Path], n: int | None, size: int | None,
                             center_crop: bool, mode: str, *, num_classes: int | None = None,
                             native: tuple[int, int] | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Decode the images (and labels) of the given parquet/arrow files, in order; labels
    are checked per file (:func:`integral_labels`: the error names the file and column)."""
    cells: list[Any] = []
    labels: list[np.ndarray] = []
    for path in files:
        table = _read_table(path)
        columns = list(table.column_names)
        image_col = _pick(columns, IMAGE_COLUMNS)
        if image_col is None:
            raise CorruptDataset(f"{path}: no image column among {columns}")
        label_col = _pick(columns, LABEL_COLUMNS)
        take = table.num_rows if n is None else min(table.num_rows, n - len(cells))
        cells.extend(table.column(image_col).slice(0, take).to_pylist())
        if label_col:
            labels.append(integral_labels(table.column(label_col).slice(0, take).to_pylist(),
                                          f"{path} column '{label_col}'", num_classes))
        else:
            labels.append(np.full(take, -1, dtype=np.int64))
        if n is not None and len(cells) >= n:
            break
    where = ", ".join(str(p) for p in files)
    images = decode_images(cells, len(cells), where, size, center_crop, mode, native)
    return images, np.concatenate(labels) if labels else np.empty(0, dtype=np.int64)


def column_names(files: list[Path]) -> list[str]:
    """The columns of the first parquet/arrow file (the schema only, for parquet)."""
    if not files:
        return []
    if files[0].suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(files[0]).names)
    return list(_read_table(files[0]).column_names)


def read_columns(files: list[Path], names: list[str], n: int | None) -> dict[str, list[Any]]:
    """The first ``n`` rows (all: None) of the named columns of parquet/arrow files, in
    order, as Python lists (parquet reads only those columns)."""
    import pyarrow.parquet as pq

    out: dict[str, list[Any]] = {name: [] for name in names}
    for path in files:
        if path.suffix == ".parquet":
            try:
                table = pq.read_table(path, columns=names)
            except (KeyError, ValueError) as exc:  # a column missing from this file
                raise CorruptDataset(f"{path}: lacks column(s) of {names}: {exc}") from exc
        else:
            table = _read_table(path)
        done = len(out[names[0]]) if names else 0
        take = table.num_rows if n is None else min(table.num_rows, n - done)
        for name in names:
            out[name].extend(table.column(name).slice(0, take).to_pylist())
        if n is not None and done + take >= n:
            break
    return out


def split_columnar_files(files: list[Path]) -> dict[str, list[Path]]:
    """Group parquet/arrow files by split, from their file or folder names."""
    groups: dict[str, list[Path]] = {}
    for path in files:
        split = canonical_split(path.stem) or canonical_split(path.parent.name)
        if split is not None:
            groups.setdefault(split, []).append(path)
    return groups
