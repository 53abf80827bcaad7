"""Weights files of the ``domain`` FID extractor: the ones shipped with this plugin, the ones
``harness extractor train`` writes, and the card that travels with each.

Why: a domain-feature FID compares between two labs only when both used the same extractor
weights. So the weights are a file that can be shared: the recipe's safetensors (weights
stored as float16, with their metadata: classes, held-out accuracy, sizes, dataset identity)
plus a JSON card (``<file>.card.json``) saying how it was made: recipe version, accuracy,
sha256 of the weights (of the tensors, :func:`.extractor.tensors_sha256`, the one the stamp
records) and of the file, and the command that retrains it bit for bit.

Shipped files (``weights/<dataset>.safetensors``) are used for a dataset whose name and image
shape match the file and whose first training images are the ones the file was trained on
(the ``head_fingerprint``, which a ``data.n_train`` truncation keeps), so every run of that
dataset, on every machine, is scored by the same weights without training anything.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from harness import api
from harness.api import DatasetInfo
from harness.errors import HarnessError

from .domain import DomainClassifier, head_fingerprint, train_weights
from .extractor import sha256_of, tensors_sha256, write_safetensors_atomic

SHIPPED_DIR = Path(__file__).resolve().parent / "weights"
#: threads the reproducible training uses: float reductions split over threads round
#: differently, so the bit-for-bit promise holds for one thread count
TRAIN_THREADS = 1
#: The environment of the reproducible training: one thread, and every CPU kernel library
#: held to the same instruction set whatever the machine has. Kernels for AVX-512 and for
#: AVX2 add in other orders (a retrain of the shipped weights on an AVX-512 machine gave other
#: bits than the AVX2-or-older machine that made them); with these, any x86-64 CPU with AVX2
#: (Intel or AMD, 2013 on) runs the same code paths: PyTorch's own kernels
#: (``ATEN_CPU_CAPABILITY``), oneDNN's convolutions (``ONEDNN_MAX_CPU_ISA``) and MKL's matrix
#: products (``MKL_CBWR``, its conditional numerical reproducibility mode). They are read
#: when the libraries load, so ``harness extractor train`` trains in a child process.
REPRODUCIBLE_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                    "MKL_CBWR": "AVX2,STRICT", "OMP_NUM_THREADS": str(TRAIN_THREADS),
                    "MKL_NUM_THREADS": str(TRAIN_THREADS)}


def reproducible_env_set() -> bool:
    """True in a process started with :data:`REPRODUCIBLE_ENV`."""
    return all(os.environ.get(k) == v for k, v in REPRODUCIBLE_ENV.items())
REQUIRED_META = ("num_classes", "accuracy", "n_fit", "n_holdout", "recipe_version")


def card_path(weights: Path) -> Path:
    return weights.with_name(weights.name.removesuffix(".safetensors") + ".card.json")


#: no domain-extractor weights file is larger (the recipe's network is about 0.5 MB in
#: float16; a head for thousands of classes stays far below): a larger file is another file,
#: refused before it is read into memory
MAX_WEIGHTS_BYTES = 64 << 20


def inspect_weights(path: str | Path, shape: tuple[int, ...] | list[int] | None = None
                    ) -> dict[str, str]:  # fmt: skip
    """The metadata of a domain-extractor weights file, checked from its header alone
    (nothing is loaded, so it is cheap before training): a file (not a folder) of a
    plausible size, with the recipe's metadata, holding the recipe's tensors with their
    shapes, and (with ``shape``) made for images of that shape. Refusals name the file."""
    from safetensors import SafetensorError, safe_open

    path = Path(path).expanduser()
    if path.is_dir():
        raise HarnessError(f"domain extractor weights '{path}' is a folder, not a weights file; "
                           "give the .safetensors file `harness extractor train --out FILE` "
                           "wrote")  # fmt: skip
    if not path.is_file():
        raise HarnessError(f"domain extractor weights '{path}' do not exist; write them with "
                           "`harness extractor train --dataset NAME --out FILE`")  # fmt: skip
    size = path.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise HarnessError(f"'{path}' is {size / 1e6:.4g} MB: no domain extractor weights file "
                           f"is larger than {MAX_WEIGHTS_BYTES >> 20} MiB (the recipe's are "
                           "about 0.5 MB); is it the right file?")  # fmt: skip
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise HarnessError(f"'{path}' is not a readable safetensors file ({exc})") from exc
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise HarnessError(f"'{path}' is not a domain extractor weights file (its metadata "
                           f"lacks {', '.join(missing)}); write one with `harness extractor "
                           "train`")  # fmt: skip
    try:
        made_for = json.loads(meta["shape"]) if "shape" in meta else None
        expected = _recipe_shapes(int((made_for or [shapes.get("body.0.weight", [0, 1])[1]])[0]),
                                  int(meta["num_classes"]))
    except (ValueError, TypeError, IndexError, RuntimeError) as exc:
        raise HarnessError(f"'{path}' is not a domain extractor weights file (its metadata "
                           f"does not describe the recipe's network: {exc})") from exc
    if shapes != expected:
        wrong = sorted(k for k in set(shapes) | set(expected) if shapes.get(k) != expected.get(k))
        raise HarnessError(f"'{path}' does not hold the domain extractor's network (tensors "
                           f"missing or of other shapes: {', '.join(wrong[:3])}); write one "
                           "with `harness extractor train`")  # fmt: skip
    if shape is not None and made_for is not None and made_for != list(shape):
        raise HarnessError(f"'{path}' was trained on images of shape {made_for}, the "
                           f"dataset has {list(shape)}: train one for it with `harness "
                           "extractor train --dataset NAME --out FILE`")  # fmt: skip
    return meta


def _recipe_shapes(channels: int, num_classes: int) -> dict[str, list[int]]:
    """Each tensor's shape in the recipe's network for these channels and classes (built on
    the meta device: no memory is used)."""
    with torch.device("meta"):
        net = DomainClassifier(channels, num_classes)
    return {k: list(v.shape) for k, v in net.state_dict().items()}


def read_weights(path: str | Path, info: DatasetInfo | None = None
                 ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:  # fmt: skip
    """(tensors, metadata) of a domain-extractor weights file, once :func:`inspect_weights`
    accepted it (for ``info``'s image shape when given)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = inspect_weights(path, info.shape if info is not None else None)
    path = Path(path).expanduser()
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise HarnessError(f"'{path}' is not a readable safetensors file ({exc})") from exc
    return state, meta


def shipped_weights(train: Any, info: DatasetInfo) -> Path | None:
    """The shipped weights file trained on this dataset, or None."""
    path = SHIPPED_DIR / f"{info.name}.safetensors"
    if not path.is_file():
        return None
    _, meta = read_weights(path)
    if json.loads(meta.get("shape", "[]")) != list(info.shape):
        return None  # e.g. another data.size: train one for it
    return path if meta.get("head_fingerprint") == head_fingerprint(train) else None


def retrain_command(dataset: str, out: str) -> str:
    return f"harness extractor train --dataset {dataset} --out {out}"


def write_weights(train: Any, info: DatasetInfo, out: Path, *, progress: bool = True,
                  device: Any = None) -> dict[str, Any]:  # fmt: skip
    """Train the recipe on ``train`` (one thread, seed 0: reproducible bit for bit on one
    machine and torch version), write ``out`` and its card atomically; returns the card."""
    threads = torch.get_num_threads()
    start = time.perf_counter()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        state, meta = train_weights(train, info, progress=progress, device=device)
    finally:
        torch.set_num_threads(threads)
    write_safetensors_atomic(out, state, meta)
    card = {
        "dataset": info.name, "shape": list(info.shape), "task": meta["task"],
        "recipe_version": int(meta["recipe_version"]),
        "accuracy": float(meta["accuracy"]), "n_fit": int(meta["n_fit"]),
        "n_holdout": int(meta["n_holdout"]), "n_train": int(meta["n_train"]),
        "weights_sha256": tensors_sha256(state), "file_sha256": sha256_of(out),
        "file_bytes": out.stat().st_size, "dtype": "float16",
        "command": retrain_command(info.name, out.name), "threads": TRAIN_THREADS,
        "torch": torch.__version__, "device": str(device or "cpu"),
        "cpu_kernels": torch.backends.cpu.get_cpu_capability()
        + (" (pinned: " + ", ".join(f"{k}={v}" for k, v in REPRODUCIBLE_ENV.items()
                                    if k.isupper() and "THREADS" not in k) + ")"
           if reproducible_env_set() else " (not pinned)"),
        "train_seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    api.atomic_write_json(card_path(out), card)
    return card
