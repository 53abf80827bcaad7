"""Progress on long work, one class for the host and the plugins (``harness.api.Progress``).

Training steps, reference features, extractor training: each shows a tqdm bar when its stream
is a terminal with a width, and otherwise (a file, a pipe, a CI log, a terminal reporting 0
columns, where tqdm would show nothing at all) plain lines at a steady *time* cadence: one when
``every_s`` seconds have passed since the previous line, one at the last unit, and one at
:meth:`Progress.close` when the work stopped before its total. Batch-job logs thus show steady
progress whatever the size of a unit.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

#: seconds between plain lines unless the caller says otherwise
PLAIN_EVERY_S = 60.0


def terminal_columns(stream: Any) -> int:
    """The width of the terminal ``stream`` writes to; 0 when it is not a terminal or its
    width is unknown or zero. ``COLUMNS``, when set to an integer, overrides the terminal's
    own report (as :func:`shutil.get_terminal_size` does)."""
    try:
        if not stream.isatty():
            return 0
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return 0
    env = os.environ.get("COLUMNS", "").strip()
    if env:
        try:
            return max(0, int(env))
        except ValueError:
            pass
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


class Progress:
    """Progress over ``total`` units of ``what`` on ``stream`` (stderr when not given).

    :meth:`advance` counts units done; in plain mode a due line is ``line()`` when the caller
    passes one, else ``"<what>: <done>/<total> <unit> (<seconds> s, <postfix>)"``. ``line``
    is only called when a line is due. ``enabled=False`` shows nothing. A context manager:
    leaving it closes the bar (``leave=False``: the bar is erased, for short sub-tasks)."""

    def __init__(self, total: int, *, what: str = "", initial: int = 0, unit: str = "step",
                 stream: TextIO | None = None, every_s: float | None = None,
                 enabled: bool = True, leave: bool = True,
                 clock: Callable[[], float] = time.perf_counter) -> None:  # fmt: skip
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.done, self.what, self.unit = total, initial, what, unit
        self.enabled = enabled
        self.every_s = PLAIN_EVERY_S if every_s is None else every_s
        self._clock = clock
        self.start = clock()
        self._next = self.start + self.every_s
        self._said_at = initial  # units done when the last plain line went out
        self._postfix = ""
        self.bar: Any = None
        columns = terminal_columns(self.stream) if enabled else 0
        if columns > 0:
            from tqdm.auto import tqdm

            sized = {"ncols": columns} if os.environ.get("COLUMNS", "").strip() else {
                "dynamic_ncols": True}
            self.bar = tqdm(total=total, initial=initial, unit=unit, desc=what or None,
                            leave=leave, file=self.stream, **sized)  # fmt: skip

    @property
    def plain(self) -> bool:
        """True when progress goes out as plain lines (no bar)."""
        return self.bar is None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def advance(self, n: int = 1, line: Callable[[], str] | None = None) -> None:
        """``n`` more units done."""
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
            return
        now = self._clock()
        if now >= self._next or self.done >= self.total:
            self._next = now + self.every_s
            self._say(line, now)

    def postfix(self, values: dict[str, str] | str) -> None:
        """Shown beside the bar at its next refresh, and at the end of default plain lines."""
        self._postfix = values if isinstance(values, str) else ", ".join(
            f"{k}={v}" for k, v in values.items())
        if self.bar is not None:
            if isinstance(values, str):
                self.bar.set_postfix_str(values, refresh=False)
            else:
                self.bar.set_postfix(values, refresh=False)

    def close(self, line: Callable[[], str] | None = None) -> None:
        """End the bar; in plain mode, a last line (``line()`` or the default one) if units
        were done since the last line: work that stopped before its total says where."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and self.done > self._said_at:
            self._say(line, self._clock())
        self.enabled = False

    def _say(self, line: Callable[[], str] | None, now: float) -> None:
        self._said_at = self.done
        if line is None:
            extra = f", {self._postfix}" if self._postfix else ""
            text = (f"{self.what}: {self.done}/{self.total} {self.unit} "
                    f"({now - self.start:.0f} s{extra})")
        else:
            text = line()
        print(text, file=self.stream, flush=True)


__all__ = ["PLAIN_EVERY_S", "Progress", "terminal_columns"]
