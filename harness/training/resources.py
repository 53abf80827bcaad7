"""Process resources: glibc malloc thresholds set at start-up, and the peak memory of a run.

Imports nothing heavy (torch only inside :func:`peak_memory`), so the command line can call
:func:`tune_malloc` before torch is imported.

**malloc.** glibc's malloc adapts its mmap threshold to the largest block freed so far and
returns freed memory at the top of the heap to the OS above 128 KiB. A training step
allocates and frees multi-megabyte activations, so with the defaults the same memory is
given back and page-faulted in again step after step: the CPU quick start spent 95 s of its
424 s CPU time in the kernel (41 million minor page faults). Fixing the thresholds
(``M_MMAP_THRESHOLD`` 64 MiB, ``M_TRIM_THRESHOLD`` 1 GiB: what
``MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=1073741824`` do) keeps freed blocks
in the process for reuse. It costs resident memory only up to the largest working set the
run reaches anyway (plus at most 1 GiB of untrimmed heap top).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path
from typing import Any

#: mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: the values set
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 1 << 30
#: other allocators, recognised in LD_PRELOAD: mallopt would not reach them
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def _libc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # glibc only: musl and others have no gnu_get_libc_version (and no such mallopt)
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    return libc


def tune_malloc() -> str:
    """Set glibc's malloc thresholds in this process (see the module docstring) unless the
    user chose malloc settings (a ``MALLOC_*`` variable, malloc ``GLIBC_TUNABLES``) or
    another allocator is preloaded. Returns what was done, in words (for benchmarks and
    logs); a no-op off glibc."""
    user = sorted(k for k in os.environ if k.startswith("MALLOC_"))
    if user or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return "left as set by the user (" + (", ".join(user) or "GLIBC_TUNABLES") + ")"
    preload = os.environ.get("LD_PRELOAD", "")
    if any(name in preload for name in OTHER_ALLOCATORS):
        return f"not glibc's (LD_PRELOAD={preload})"
    libc = _libc()
    if libc is None:
        return "not glibc: unchanged"
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    ok = (libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
          and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    if not ok:  # pragma: no cover - glibc accepts both values on 64-bit Linux
        return "glibc refused mallopt: unchanged"
    return f"glibc mallopt M_MMAP_THRESHOLD={MMAP_THRESHOLD} M_TRIM_THRESHOLD={TRIM_THRESHOLD}"


def peak_memory(device: Any = None) -> dict[str, float]:
    """The peak memory of this process so far, in MiB: ``peak_gpu_memory_mb`` (tensors
    allocated on the CUDA ``device``, ``torch.cuda.max_memory_allocated``) on CUDA, else
    ``peak_rss_mb`` (the peak resident set size, ``getrusage``). Empty where neither can be
    read (e.g. Windows without CUDA)."""
    if getattr(device, "type", str(device) if device is not None else "cpu") == "cuda":
        import torch

        return {"peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}
    try:
        import resource
    except ImportError:  # Windows
        return {}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # kilobytes on Linux, bytes on macOS
    return {"peak_rss_mb": round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)}


__all__ = ["peak_memory", "tune_malloc"]


def cache_dir(*parts: str) -> Path:
    """The one rule for where caches live: ``$HARNESS_CACHE_DIR`` when set, else
    ``$XDG_CACHE_HOME/vrrae-harness`` (``~/.cache/vrrae-harness``), joined with ``parts``
    (``cache_dir("datasets")``: decoded datasets; ``cache_dir("fid-stats")``: reference
    statistics). Plugins reach it as ``harness.api.cache_dir``."""
    root = os.environ.get("HARNESS_CACHE_DIR", "").strip()
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
        base = Path(xdg) / "vrrae-harness"
    return base.joinpath(*parts)
