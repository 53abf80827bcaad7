"""The one place a file-backed dataset decides where its data comes from, in this order:

1. ``data.hub_id`` naming a local folder: that folder, read as the dataset's own files, else
   as a saved Hugging Face dataset;
2. local folders (:func:`._common.candidate_dirs`): ``data.root`` when given (and nowhere
   else), otherwise ``$HARNESS_DATA_ROOT/<name>``, the user cache, ``./data/<name>`` and the
   system data folders; the first folder the dataset's reader accepts wins;
3. the Hugging Face hub (``data.hub_id`` or the dataset's default id), only when allowed
   (:func:`._hf.hf_allowed`: not in offline mode unless the cache holds it).

When nothing is found, one :class:`._common.DatasetNotFound` lists every folder searched,
what the reader said about folders it refused, and how to fix it. Every loader (mnist,
fashion-mnist, cifar10, celeba) goes through :func:`load_from_sources` with its own readers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.api import DataConfig, DataSplits

from . import _hf
from ._common import DatasetNotFound, candidate_dirs, not_found_message

#: a reader of one folder: the splits, or None when the folder does not hold the dataset
#: (it may append a note saying why, e.g. "has 2 of the 4 IDX files")
FolderReader = Callable[[Path, list[str]], DataSplits | None]


@dataclass(frozen=True)
class Sources:
    """What a dataset tells :func:`load_from_sources` about itself."""

    name: str
    aliases: Sequence[str]  # folder names it may live under
    subdirs: Sequence[str]  # tried inside each candidate folder too, e.g. "raw"
    default_hub_id: str
    what: str  # what was looked for, for the error message
    fix: str  # how to provide it


def load_from_sources(sources: Sources, config: DataConfig, read_folder: FolderReader,
                      read_hub: Callable[[str], DataSplits]) -> DataSplits:
    """The dataset from the first source that has it (see the module docstring)."""
    notes: list[str] = []
    if config.hub_id and Path(config.hub_id).expanduser().is_dir():
        local = Path(config.hub_id).expanduser()
        found = read_folder(local, notes)
        return found if found is not None else read_hub(str(local))
    searched = candidate_dirs(config.root, sources.aliases, subdirs=sources.subdirs)
    for folder in searched:
        if folder.is_dir():
            found = read_folder(folder, notes)
            if found is not None:
                return found
    hub_id = config.hub_id or sources.default_hub_id
    allowed, why = _hf.hf_allowed(hub_id)
    if not allowed:
        raise DatasetNotFound(not_found_message(sources.name, sources.what, searched,
                                                sources.fix, _lines(*notes, why)))
    try:
        return read_hub(hub_id)
    except DatasetNotFound as exc:
        raise DatasetNotFound(not_found_message(sources.name, sources.what, searched,
                                                sources.fix, _lines(*notes, str(exc)))) from exc


def _lines(*parts: str) -> str:
    return "\n".join(p for p in parts if p)
