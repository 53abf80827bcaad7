"""The one way files are written: to a temporary name in the same directory, fsync'ed, then
renamed into place (``os.replace`` is atomic on POSIX and Windows). A crash, a kill or a full
disk leaves either the old file or the new one, never half of one, and no stray temporary
file once the writer's exception has propagated.

Files get the permissions of the process's umask (0644 under the usual 022), as ``open``
would give them, not the 0600 of a temporary file: results are shared on clusters and
served. A writer that reports a full disk in its own exception type (safetensors does) is
turned into ``OSError(ENOSPC)``, so a full disk is named as one everywhere.

Plugins reach these through :mod:`harness.api` (e.g. a dataset's decoded-array cache).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_dir", "atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "build_once", "default_mode", "file_sha256", "fsync_dir", "reports_full_disk"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name (e.g.
    ``safetensors.torch.save_file``, ``numpy.lib.format.open_memmap``, PIL); on success the
    file is fsync'ed and renamed to ``path``, on any exception it is removed."""
    path = Path(path)
    with _temporary(path, ".tmp" + ("".join(path.suffixes[-1:]) or ".tmp")) as (fd, tmp):
        os.close(fd)
        try:
            yield Path(tmp)
        except Exception as exc:
            if not isinstance(exc, OSError) and reports_full_disk(exc):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
            raise
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())


@contextlib.contextmanager
def _temporary(path: Path, suffix: str) -> Iterator[tuple[int, str]]:
    """``(fd, name)`` of a new temporary file beside ``path``: when the block ends normally
    the file gets the umask's permissions and replaces ``path``; in any case no temporary
    file is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        yield fd, tmp
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new empty folder beside ``path`` to fill; on success it replaces ``path`` as
    a whole (nothing of the old content stays beside the new: an export of fewer files
    leaves no stale ones), on any exception it is removed and ``path`` is as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~current_umask())  # what mkdir gives
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with _temporary(Path(path), ".tmp") as (fd, _tmp), os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def current_umask() -> int:
    """The process's umask, read from /proc where it can be (so no other thread ever sees
    it changed), else set and restored."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the umask."""
    return 0o666 & ~current_umask()


#: what libraries print for ENOSPC in their own exceptions (Rust's io::Error, C's strerror)
_FULL_DISK_TEXT = ("os error 28", "no space left on device", "storagefull")


def reports_full_disk(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a full disk: ``OSError(ENOSPC)``, or a
    library's own exception that says so (safetensors: ``No space left on device (os error
    28)``)."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        if any(text in str(seen).lower() for text in _FULL_DISK_TEXT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


@contextlib.contextmanager
def build_once(path: str | os.PathLike[str], *, waiting: str = "") -> Iterator[bool]:
    """Serialise the building of a cache file ``path`` across processes (``harness benchmark
    --jobs N`` starts N runs that may all need the same trained extractor). Yields whether
    ``path`` still has to be built, checked while holding an exclusive lock on
    ``path + ".lock"``: the first process builds, the others wait (printing ``waiting``) and
    then find the file. The lock is ``flock``: the kernel drops it when its holder dies, so a
    killed build never blocks the next one. Where ``fcntl`` is missing (Windows) there is no
    lock, only the check."""
    path = Path(path)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield not path.is_file()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                import sys

                print(waiting, file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield not path.is_file()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks (checkpoint checksums, weight
    files named in stamps)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory (a rename is durable only then); a no-op where it is refused."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse to fsync directories
        pass
    finally:
        os.close(fd)


def _json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
