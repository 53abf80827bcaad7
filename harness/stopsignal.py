"""Ctrl-C (SIGINT) and SIGTERM stop training cleanly, at the same step on every process.

Why a module of its own: a signal can arrive at any instruction, and in a multi-process run
it may reach one process and not the others, or reach them in different steps. Stopping where
it lands would leave a half-applied update, or processes waiting forever for each other in a
collective. So the handler only sets a flag; at each step boundary the processes agree on it
(:meth:`StopRequest.agreed`: one all-reduce of the flag), so they all stop after the same
step; the loop then saves a checkpoint and raises ``KeyboardInterrupt`` (the CLI exits 130).
A second Ctrl-C raises at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import torch


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag read at step boundaries (a second Ctrl-C raises at
    once). A context manager: the handlers are installed on entry, only in the main thread
    (where Python allows signal handlers), and the previous ones restored on exit.

    ``accelerator`` supplies the process count and the all-reduce; with one process the flag
    is read as is (no collective)."""

    def __init__(self, accelerator: Any) -> None:
        self.flag = False
        self.signal_name = ""
        self._old: dict[int, Any] = {}
        self._main = bool(accelerator.is_main_process)
        self._reduce = accelerator.reduce if accelerator.num_processes > 1 else None
        self._votes = torch.zeros(1, device=accelerator.device)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.flag and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.flag = True
        self.signal_name = signal.Signals(signum).name

    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return True

    def uninstall(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def __enter__(self) -> StopRequest:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def agreed(self) -> bool:
        """Does any process want to stop? Collective: every process calls it at the same step
        boundary (a signal may reach the processes apart, or only one of them)."""
        if self._reduce is None:
            return self.flag
        self._votes.fill_(1.0 if self.flag else 0.0)
        self._votes = self._reduce(self._votes, reduction="sum")
        return bool(self._votes.item() > 0)

    def interrupt(self, step: int, total: int, checkpoint: str | None) -> KeyboardInterrupt:
        """Say where training stopped (main process) and return the exception to raise."""
        if self._main:
            print(f"harness: interrupted ({self.signal_name or 'signal'}) at step "
                  f"{step}/{total}; checkpoint saved to {checkpoint}. Continue with "
                  "--resume", file=sys.stderr)
        return KeyboardInterrupt()


__all__ = ["StopRequest"]
