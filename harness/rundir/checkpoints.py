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
code; loading a checkpoint must never do that. safetensors and JSON are data only.

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
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from harness.errors import HarnessError, one_line
from harness.rundir.atomic import atomic_write_text, default_mode, file_sha256, fsync_dir
from harness.rundir.layout import WEIGHTS_FILE

LATEST = "latest"
CHECKSUMS = "checksums.json"
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
        """Build and check a state: every field an integer, and consistent (0 <= step <=
        total_steps, epoch and position following from step). Raises ValueError naming the
        first bad field."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        for name in names:
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        state = cls(**{n: data[n] for n in names})
        state.check()
        return state

    def check(self) -> None:
        for name in ("step", "total_steps", "epoch", "batch_in_epoch", "n_train"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} is negative")
        for name in ("batches_per_epoch", "batch_size", "world_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.step > self.total_steps:
            raise ValueError(f"step={self.step} is past the end of the run "
                             f"(total_steps={self.total_steps})")
        if (self.epoch, self.batch_in_epoch) != divmod(self.step, self.batches_per_epoch):
            raise ValueError(f"epoch={self.epoch}, batch_in_epoch={self.batch_in_epoch} do not "
                             f"follow from step={self.step} and batches_per_epoch="
                             f"{self.batches_per_epoch}")
        if self.n_train // self.batch_size != self.batches_per_epoch:
            raise ValueError(f"batches_per_epoch={self.batches_per_epoch} does not follow from "
                             f"n_train={self.n_train} and batch_size={self.batch_size}")


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
    try:
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
            save_model(model, str(tmp / WEIGHTS_FILE))
            opt_tensors, opt_doc = optimizer_to_files(optimizer.state_dict())
            save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
            _write_json(tmp / "optimizer.json", opt_doc)
            _write_json(tmp / "extra.json", extra or {})
            # trainer.json last: its presence marks a complete checkpoint
            _write_json(tmp / "trainer.json", asdict(state))
        barrier()
        if rank == 0:
            _write_json(tmp / CHECKSUMS, {f.name: file_sha256(f) for f in sorted(tmp.iterdir())})
            for f in tmp.iterdir():
                # safetensors creates its files 0600: every file follows the umask, as the
                # run's other files do (checkpoints are shared on clusters too)
                os.chmod(f, default_mode())
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
    except BaseException:
        # a full disk or an error mid-write: leave no half-written directory behind (the
        # previous checkpoint is untouched; the next save would remove it anyway)
        if rank == 0:
            old = root / f"{TMP_PREFIX}old-{name}"
            if old.is_dir() and not final.exists():  # stopped between the two renames
                os.replace(old, final)
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        raise
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


def latest_checkpoint(root: Path, *, quiet: bool = False) -> Path | None:
    """The newest *usable* checkpoint: complete (a ``step-*`` directory only ever appears
    complete, by rename) and passing :func:`verify_checkpoint`. A newer one that is corrupt
    (bad metadata, a file whose checksum no longer matches, a truncated file) is skipped with
    a warning on stderr (unless ``quiet``), so a resume falls back to the one before it. The
    ``latest`` pointer names the same one, for people and tools; it is not trusted here
    because a run killed between the rename and the pointer update leaves it one behind."""
    for path in reversed(list_checkpoints(Path(root))):
        try:
            verify_checkpoint(path)
        except CheckpointError as exc:
            if not quiet:
                print(f"harness: warning: skipping checkpoint {path.name}: {exc}", file=sys.stderr)
            continue
        return path
    return None


def _json_file(file: Path) -> Any:
    try:
        return json.loads(file.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"'{file}' is missing") from None
    except (OSError, ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(f"'{file}' is corrupt ({one_line(exc, 300)})") from exc


def verify_checkpoint(path: Path) -> TrainerState:
    """Check a checkpoint without loading its tensors: ``trainer.json`` in range and matching
    the directory's step, every file's SHA-256 as recorded at save time (``checksums.json``;
    checkpoints written before it existed are checked by parsing instead), the JSON files
    parse and the safetensors headers cover their files. Raises :class:`CheckpointError`
    naming the file."""
    from safetensors import safe_open

    path = Path(path)
    state = read_trainer_state(path)
    if _step_of(path) != state.step:
        raise CheckpointError(f"'{path / 'trainer.json'}' says step {state.step}, but the "
                              f"directory is {path.name}")
    sums = path / CHECKSUMS
    if sums.is_file():
        recorded = _json_file(sums)
        if not isinstance(recorded, dict):
            raise CheckpointError(f"'{sums}' is corrupt (not a JSON object)")
        for name, digest in recorded.items():
            file = path / str(name)
            if not file.is_file():
                raise CheckpointError(f"'{file}' is missing")
            if file_sha256(file) != digest:
                raise CheckpointError(f"'{file}' is corrupt (its checksum changed since it "
                                      "was written)")
    for file in sorted(path.glob("*.json")):
        _json_file(file)
    for name in (WEIGHTS_FILE, "optimizer.safetensors"):
        if not (path / name).is_file():
            raise CheckpointError(f"'{path / name}' is missing")
    for file in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as exc:  # safetensors' own error type, OSError
            raise CheckpointError(f"'{file}' is corrupt or truncated ({one_line(exc, 300)})") from exc
    return state


def read_trainer_state(path: Path) -> TrainerState:
    """``trainer.json`` of checkpoint ``path``, checked (see :meth:`TrainerState.from_dict`)."""
    file = Path(path) / "trainer.json"
    data = _json_file(file)
    try:
        return TrainerState.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"'{file}' is invalid: {exc}") from exc


def check_data_order(path: Path, state: TrainerState, *, seed: int, batch_size: int,
                     n_train: int) -> None:
    """Refuse a resume from checkpoint ``path`` (its ``state``) whose data order would differ
    from this run's: another seed, global batch or training-set size. The rule and its wording
    are :func:`harness.configuration.changes.refuse_resume_changes`'s, shared with the command-line check."""
    from harness.configuration.changes import Change, refuse_resume_changes

    changes = [Change(key, saved, current) for key, saved, current in (
        ("run.seed", state.seed, seed), ("train.batch_size", state.batch_size, batch_size),
        ("the training set size (data.n_train)", state.n_train, n_train)) if saved != current]
    refuse_resume_changes(changes, Path(path).parent.parent,
                          stored_in=f"checkpoint {Path(path).name}", given_in="in this run "
                          "(the data order would differ)", error=CheckpointError)


def check_resume_fits(path: Path, *, seed: int, batch_size: int, n_train: int,
                      model: torch.nn.Module | None = None) -> TrainerState:
    """Refuse, before anything is written, a resume whose data order would differ from the
    checkpoint's (:func:`check_data_order`) or whose model does not fit its weights (names
    and shapes, read from the safetensors header)."""
    from safetensors import safe_open

    state = verify_checkpoint(path)
    check_data_order(path, state, seed=seed, batch_size=batch_size, n_train=n_train)
    if model is not None:
        file = Path(path) / WEIGHTS_FILE
        with safe_open(str(file), framework="pt") as handle:
            shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
        own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if shapes != own:
            diff = sorted(set(shapes) ^ set(own)) or sorted(
                k for k in own if shapes.get(k) != own[k])
            raise CheckpointError(
                f"'{file}' does not fit the model built from this configuration (differs at "
                f"{', '.join(diff[:3])}); the [model] section must be the one the run was "
                "trained with"
            )
    return state


def apply_resume_settings(optimizer: torch.optim.Optimizer, cfg: Any) -> None:
    """After the optimizer's state is loaded from a checkpoint, apply the settings a resumed
    run may change: ``train.lr`` (the loaded param groups hold the old one). Call it right
    after :func:`load_optimizer_state`. (``grad_clip`` and ``steps``/``epochs`` are read
    from the config by the loop itself.)"""
    for group in optimizer.param_groups:
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"].fill_(float(cfg.lr))
        else:
            group["lr"] = float(cfg.lr)


def load_model_weights(path: Path, model: torch.nn.Module) -> None:
    """Load ``model.safetensors`` into ``model`` (strict: names and shapes must match)."""
    file = Path(path) / WEIGHTS_FILE
    try:
        load_model(model, str(file), strict=True, device=str(next(model.parameters()).device))
    except (RuntimeError, OSError) as exc:
        raise CheckpointError(
            f"checkpoint '{file}' does not fit this model ({exc}); was the run's [model] "
            "section changed since the checkpoint was written?"
        ) from exc
    except Exception as exc:  # safetensors' own error type: a corrupt file
        raise CheckpointError(f"'{file}' is corrupt or truncated ({one_line(exc, 300)})") from exc


def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except FileNotFoundError:
        raise CheckpointError(f"'{file}' is missing") from None
    except Exception as exc:  # safetensors' own error type, OSError
        raise CheckpointError(f"'{file}' is corrupt or truncated ({one_line(exc, 300)})") from exc


def load_optimizer_state(path: Path, optimizer: torch.optim.Optimizer) -> None:
    path = Path(path)
    tensors = _load_tensors(path / "optimizer.safetensors")
    doc = _json_file(path / "optimizer.json")
    try:
        optimizer.load_state_dict(optimizer_from_files(tensors, doc))
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, RuntimeError) as exc:
        raise CheckpointError(
            f"'{path / 'optimizer.json'}' does not fit this optimizer ({one_line(exc, 300)}); was "
            "train.optimizer changed, or is the file damaged?"
        ) from exc


def load_extra(path: Path) -> dict[str, Any]:
    file = Path(path) / "extra.json"
    if not file.is_file():
        return {}
    doc = _json_file(file)
    if not isinstance(doc, dict):
        raise CheckpointError(f"'{file}' is corrupt (not a JSON object)")
    return doc


def load_rng_state(path: Path, rank: int) -> bool:
    """Restore this process's RNG states; False when the checkpoint has none for ``rank``
    (it was written by fewer processes)."""
    path = Path(path)
    tensors_file = path / f"rng-rank{rank}.safetensors"
    if not tensors_file.is_file():
        return False
    json_file = path / f"rng-rank{rank}.json"
    rest = _json_file(json_file)
    tensors = _load_tensors(tensors_file)
    try:
        restore_rng_state(tensors, rest)
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
        raise CheckpointError(f"'{json_file}' / '{tensors_file.name}' hold no valid RNG state "
                              f"({one_line(exc, 300)})") from exc
    return True
