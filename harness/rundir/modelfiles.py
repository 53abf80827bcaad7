"""The one format a trained model is saved in, by the host (a run's final weights) and by
plugins (e.g. the autoencoders' ``save_pretrained``) alike::

    DIR/model.safetensors   parameters and buffers (safetensors: data only, never unpickled)
    DIR/model_config.json   {"format": 1, "model": name, "config": {...}, "info": {...},
                             "weights_sha256": "..."}

``info`` records the data shape the model was built for, so the directory alone rebuilds
it. ``weights_sha256`` is the SHA-256 of ``model.safetensors``: loading checks it, so a
damaged byte that still decodes to a finite number is named instead of scored. Both files
are written atomically (:mod:`harness.rundir.atomic`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, one_line
from harness.rundir.atomic import atomic_path, atomic_write_text, file_sha256
from harness.rundir.layout import MODEL_CONFIG_FILE, WEIGHTS_FILE

FORMAT_VERSION = 1

__all__ = ["FORMAT_VERSION", "MODEL_CONFIG_FILE", "WEIGHTS_FILE", "load_weights",
           "read_model_files", "save_model"]


def save_model(directory: str | Path, model: Any, *, name: str, config: Any,
               info: Any = None) -> Path:
    """Write ``model``'s state dict and its description into ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"model": name})
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    doc: dict[str, Any] = {"format": FORMAT_VERSION, "model": name, "config": dict(config)}
    if info is not None:
        doc["info"] = {"name": info.name, "shape": list(info.shape),
                       "num_classes": info.num_classes}
    doc["weights_sha256"] = file_sha256(directory / WEIGHTS_FILE)
    atomic_write_text(directory / MODEL_CONFIG_FILE, json.dumps(doc, indent=2, sort_keys=True)
                      + "\n")
    return directory


def read_model_files(directory: str | Path, *, device: str = "cpu") -> tuple[dict[str, Any],
                                                                             dict[str, Any]]:
    """``(description, state_dict)`` of a saved model; errors name the file at fault."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    doc_path, weights = directory / MODEL_CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (doc_path, weights):
        if not path.is_file():
            raise HarnessError(f"'{directory}' holds no saved model: {path.name} is missing")
    doc = read_description(directory, fix="re-save the model")
    check_weights(weights, doc, fix="re-save the model, or re-train it")
    try:
        state = load_file(str(weights), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise HarnessError(f"'{weights}' is corrupt or truncated ({exc}); re-save the model, "
                           "or re-train it") from exc
    return doc, state


def read_description(directory: Path, *, fix: str) -> dict[str, Any]:
    """``model_config.json`` of ``directory``. It must be there and record the weights'
    SHA-256: without it a damaged weights file would be scored as if it were the trained
    model, so a missing file or checksum is refused like a wrong one, naming the file."""
    path = directory / MODEL_CONFIG_FILE
    if not path.is_file():
        raise HarnessError(f"'{path}' is missing: the weights beside it cannot be checked; {fix}")
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("config", {}), dict):
            raise ValueError("not a model description (a JSON object with a 'config' table)")
        digest = doc.get("weights_sha256")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("no 'weights_sha256' (the SHA-256 of the weights, 64 hex digits)")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise HarnessError(f"'{path}' is damaged ({one_line(exc)}); {fix}") from exc
    return doc


def check_weights(path: Path, doc: dict[str, Any], *, fix: str) -> None:
    """The weights file must have the SHA-256 its description recorded."""
    if file_sha256(path) != doc["weights_sha256"]:
        raise HarnessError(f"'{path}' is damaged: its SHA-256 is not the one "
                           f"{MODEL_CONFIG_FILE} recorded when it was saved; {fix}")


def check_description(directory: Path, doc: dict[str, Any], *, name: str, config: Any,
                      fix: str) -> None:
    """The description must name the model the run's config builds, with its settings: a
    ``model_config.json`` from another model is refused before its weights are scored."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    expected = json.loads(json.dumps(dict(config)))
    if doc.get("model") != name or doc.get("config") != expected:
        differs = sorted(k for k in set(expected) | set(doc.get("config") or {})
                         if (doc.get("config") or {}).get(k, object) != expected.get(k, object))
        what = (f"model {doc.get('model')!r}, not {name!r}" if doc.get("model") != name
                else f"settings differ: {', '.join(differs[:3])}")
        raise HarnessError(f"'{directory / MODEL_CONFIG_FILE}' does not describe the run's model "
                           f"({what}): was the [model] section of config.toml edited after "
                           "training? Restore the values the run was trained with; if the "
                           f"description is what was damaged, {fix}")


def load_weights(directory: str | Path, model: Any, *, name: str | None = None,
                 config: Any = None) -> None:
    """Load the weights saved in ``directory`` into ``model``; their description must be
    there with its checksum (and name the model ``name`` with ``config`` when given), every
    tensor must be there, with the model's shape, and finite. Errors name the file and say
    how to repair it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise HarnessError(
            f"'{directory}' has no {WEIGHTS_FILE}: the run did not finish training "
            "(resume it with `harness run --resume --out DIR`)"
        )
    fix = f"rewrite it from the last checkpoint with `harness run --resume --out {directory}`"
    doc = read_description(directory, fix=fix)
    if name is not None:
        check_description(directory, doc, name=name, config=config, fix=fix)
    check_weights(path, doc, fix=fix)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise HarnessError(f"'{path}' is corrupt or truncated ({one_line(exc)}); rewrite it "
                           f"from the last checkpoint with `harness run --resume --out "
                           f"{directory}`") from exc
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        detail = "; ".join(part for part in (
            f"missing {missing[:3]}" if missing else "",
            f"unexpected {unexpected[:3]}" if unexpected else "",
            f"shapes differ: {', '.join(wrong[:3])}" if wrong else "",
        ) if part)
        raise HarnessError(
            f"'{path}' does not fit the model built from the run's config ({detail}); was the "
            "[model] section edited after training? Restore the values the run was trained with"
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise HarnessError(
            f"'{path}' holds non-finite weights (NaN/inf in {', '.join(bad[:3])}): it is "
            f"damaged; rewrite it from the last checkpoint with `harness run --resume --out "
            f"{directory}`"
        )
    model.load_state_dict(state, strict=True)


