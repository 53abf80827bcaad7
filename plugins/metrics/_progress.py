"""Progress for long evaluation work (reference features, extractor training).

On a terminal (stderr is a tty reporting a non-zero width) a tqdm bar; otherwise plain lines
``[eval] <what>: <done>/<total> (<seconds> s)`` at a steady cadence (every ``interval``
seconds, 10 by default, and once at the end), so logs of batch jobs show steady progress.
Disabled entirely with ``enabled=False``.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any


def _on_terminal() -> bool:
    try:
        return sys.stderr.isatty() and shutil.get_terminal_size((0, 0)).columns > 0
    except (OSError, ValueError):
        return False


class Progress:
    """``update(n)`` after each chunk of work, ``close()`` (or use as a context manager)."""

    def __init__(self, what: str, total: int, *, enabled: bool = True, unit: str = "img",
                 interval: float = 10.0) -> None:  # fmt: skip
        self.what = what
        self.total = total
        self.unit = unit
        self.enabled = enabled
        self.interval = interval
        self.done = 0
        self.start = self._last = time.perf_counter()
        self.postfix = ""
        self._bar: Any = None
        if enabled and _on_terminal():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=what, unit=unit, leave=False, file=sys.stderr)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def set_postfix(self, text: str) -> None:
        self.postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            self._line(now)

    def _line(self, now: float) -> None:
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"[eval] {self.what}: {self.done}/{self.total} {self.unit} "
              f"({now - self.start:.0f} s{extra})", file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self.done:
            self._line(time.perf_counter())
            self.enabled = False
