"""Training checkpoints: safetensors + JSON only, written atomically, never unpickled.

Layout (``run_dir/checkpoints/``)::

    step-0000500/
        model.safetensors        the unwrapped model's weights (``safetensors.torch.save_model``)
        optimizer.safetensors    every tensor of ``optimizer.state_dict()["state"]``
        optimizer.json           everything else (param groups, non-tensor state), tuples kept
        trainer.json             step, epoch, position in the epoch, seed, batch size, ...
        rng-rank0.safetensors    this process's torch (and CUDA) generator states, numpy key
        rng-rank0.json           the rest of the numpy and Python ``random`` states
        rng-rank1.*              one pair per process
    latest                       the name of the newest complete checkpoint

Why not ``torch.save``/``accelerator.save_state``: both pickle, and unpickling a file executes
code; the issue asks that loading a checkpoint never does. safetensors and JSON are data only.

Why a directory renamed into place: a checkpoint is several files, and a run killed while
writing must leave the previous checkpoint intact and never a half-written one under a real
name. Files go into ``.tmp-step-XXXXXXX/``, are fsync'ed, then the directory is renamed
(``os.replace``) and ``latest`` is replaced the same way. Only the newest ``keep`` (2)
checkpoints are kept.

In a multi-process run every process writes its own RNG files into the temporary directory
and the main process writes the rest and renames; ``barrier`` keeps them in step. This
assumes the processes share the run directory's file system (they must anyway, to resume).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from .atomic import atomic_write_text, fsync_dir
from .errors import HarnessError

LATEST = "latest"
PREFIX = "step-"
TMP_PREFIX = ".tmp-"


class CheckpointError(HarnessError):
    """A checkpoint is missing, incomplete or does not fit the run being resumed."""


@dataclass
class TrainerState:
    """Where training stands; enough to continue exactly where it stopped.

    ``epoch`` and ``batch_in_epoch`` follow from ``step`` and ``batches_per_epoch``; they are
    stored for people reading the file. ``seed``, ``batch_size`` and ``n_train`` are checked on
    resume: changing any of them would change the data order, so resuming would not continue
    the same run.
    """

    step: int
    epoch: int
    batch_in_epoch: int
    batches_per_epoch: int
    total_steps: int
    seed: int
    batch_size: int
    n_train: int
    world_size: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerState:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:07d}"


# ------------------------------------------------------------------------------- RNG states
def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's global RNG states as (tensors, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = s
    kind, key, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy_key"] = torch.from_numpy(np.asarray(key, dtype=np.int64))
    version, internal, gauss_next = random.getstate()
    rest = {
        "numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached": cached},
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
    }
    return tensors, rest


def restore_rng_state(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda{i}"] for i in range(len(tensors)) if f"cuda{i}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    n = rest["numpy"]
    key = tensors["numpy_key"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], key, n["pos"], n["has_gauss"], n["cached"]))
    p = rest["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


# -------------------------------------------------------------------------- optimizer state
def _encode(value: Any) -> Any:
    """JSON-encode param-group values, keeping tuples (``betas``) as tuples on the way back."""
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):  # a 0-d tensor hyper-parameter (e.g. a tensor lr)
        return {"__tensor__": value.item()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_decode(v) for v in value["__tuple__"])
        if set(value) == {"__tensor__"}:
            return torch.tensor(value["__tensor__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def optimizer_to_files(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into safetensors-able tensors and a JSON document."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in state_dict["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{name}"] = value.detach().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = _encode(value)
    doc = {
        "param_groups": _encode(state_dict["param_groups"]),
        "state_scalars": scalars,
        "state_keys": [str(i) for i in state_dict["state"]],
    }
    return tensors, doc


def optimizer_from_files(tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {int(i): {} for i in doc["state_keys"]}
    for key, value in tensors.items():
        idx, _, name = key.partition(".")
        state[int(idx)][name] = value
    for idx, values in doc["state_scalars"].items():
        state[int(idx)].update({k: _decode(v) for k, v in values.items()})
    return {"state": state, "param_groups": _decode(doc["param_groups"])}


# ----------------------------------------------------------------------------------- writing
def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


def _noop() -> None:
    return None


def save_checkpoint(
    root: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainerState,
    extra: dict[str, Any] | None = None,
    rank: int = 0,
    barrier: Callable[[], None] = _noop,
    keep: int = 2,
) -> Path:
    """Write a checkpoint of ``step`` atomically; every process calls this.

    ``model`` is the unwrapped module and ``optimizer`` the plain torch optimizer (their state
    is identical on every process under DDP, so only the main process writes them). ``extra``
    is JSON-able trainer state such as the fp16 gradient scaler's.
    """
    root = Path(root)
    name = checkpoint_name(state.step)
    final = root / name
    tmp = root / f"{TMP_PREFIX}{name}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(f"{TMP_PREFIX}*"):  # left by a run killed while saving
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        tmp.mkdir()
    barrier()
    rng_tensors, rng_rest = capture_rng_state()
    save_file(rng_tensors, str(tmp / f"rng-rank{rank}.safetensors"))
    _write_json(tmp / f"rng-rank{rank}.json", rng_rest)
    if rank == 0:
        save_model(model, str(tmp / "model.safetensors"))
        opt_tensors, opt_doc = optimizer_to_files(optimizer.state_dict())
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        _write_json(tmp / "optimizer.json", opt_doc)
        _write_json(tmp / "extra.json", extra or {})
        # trainer.json last: its presence marks a complete checkpoint
        _write_json(tmp / "trainer.json", asdict(state))
    barrier()
    if rank == 0:
        for f in tmp.iterdir():
            _fsync_file(f)
        fsync_dir(tmp)
        if final.exists():  # the same step saved again (e.g. Ctrl-C right after a checkpoint)
            old = root / f"{TMP_PREFIX}old-{name}"
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
        fsync_dir(root)
        atomic_write_text(root / LATEST, name + "\n")
        for stale in list_checkpoints(root)[:-keep] if keep > 0 else []:
            shutil.rmtree(stale, ignore_errors=True)
    barrier()
    return final


# ----------------------------------------------------------------------------------- reading
def _step_of(path: Path) -> int:
    try:
        return int(path.name[len(PREFIX) :])
    except ValueError:
        return -1


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(PREFIX) and _step_of(p) >= 0
        and (p / "trainer.json").is_file()
    ]
    return sorted(found, key=_step_of)


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint (a ``step-*`` directory only ever appears complete,
    by rename). The ``latest`` pointer names the same one, for people and tools; it is not
    trusted here because a run killed between the rename and the pointer update leaves it
    one checkpoint behind."""
    found = list_checkpoints(Path(root))
    return found[-1] if found else None


def read_trainer_state(path: Path) -> TrainerState:
    path = Path(path)
    try:
        return TrainerState.from_dict(json.loads((path / "trainer.json").read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint '{path}' is unreadable: {exc}") from exc


def load_model_weights(path: Path, model: torch.nn.Module) -> None:
    """Load ``model.safetensors`` into ``model`` (strict: names and shapes must match)."""
    file = Path(path) / "model.safetensors"
    try:
        load_model(model, str(file), strict=True, device=str(next(model.parameters()).device))
    except (RuntimeError, OSError) as exc:
        raise CheckpointError(
            f"checkpoint '{file}' does not fit this model ({exc}); was the run's [model] "
            "section changed since the checkpoint was written?"
        ) from exc


def load_optimizer_state(path: Path, optimizer: torch.optim.Optimizer) -> None:
    path = Path(path)
    tensors = load_file(str(path / "optimizer.safetensors"))
    doc = json.loads((path / "optimizer.json").read_text())
    optimizer.load_state_dict(optimizer_from_files(tensors, doc))


def load_extra(path: Path) -> dict[str, Any]:
    file = Path(path) / "extra.json"
    return json.loads(file.read_text()) if file.is_file() else {}


def load_rng_state(path: Path, rank: int) -> bool:
    """Restore this process's RNG states; False when the checkpoint has none for ``rank``
    (it was written by fewer processes)."""
    path = Path(path)
    tensors_file = path / f"rng-rank{rank}.safetensors"
    if not tensors_file.is_file():
        return False
    rest = json.loads((path / f"rng-rank{rank}.json").read_text())
    restore_rng_state(load_file(str(tensors_file)), rest)
    return True
