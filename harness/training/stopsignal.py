"""Ctrl-C (SIGINT), SIGTERM and SIGHUP stop a run cleanly and say what continues it.

Outside training, SIGTERM and SIGHUP (a closed terminal) are turned into the same
``KeyboardInterrupt`` as Ctrl-C (:func:`interrupt_on_termination`), and the command line
prints :func:`next_command`: what continues the phase that was stopped (set with
:func:`set_next_command` as a run moves from training to evaluation).

During training, all three stop at the same step on every process.

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

#: the signals that stop a run: Ctrl-C, a polite kill, a closed terminal (where it exists)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))
_NEXT = {"command": "", "saved": ""}


def set_next_command(command: str, saved: str = "") -> None:
    """Record what an interruption from now on should tell the user: the one command that
    continues, and what is saved already."""
    _NEXT.update(command=command, saved=saved)


def next_command() -> tuple[str, str]:
    """(command, what is saved) for the phase now running; ("", "") when none was set."""
    return _NEXT["command"], _NEXT["saved"]


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interrupt_on_termination() -> None:
    """SIGTERM and SIGHUP raise ``KeyboardInterrupt`` like Ctrl-C (main thread only), so any
    phase stops through the same path: files are written atomically, so nothing is half
    written, and the command line says what continues."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in STOP_SIGNALS:
        if sig != signal.SIGINT:
            signal.signal(sig, _raise_interrupt)


class StopRequest:
    """Turns SIGINT/SIGTERM/SIGHUP into a flag read at step boundaries (a second Ctrl-C raises at
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
        import torch

        self._votes = torch.zeros(1, device=accelerator.device)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.flag and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.flag = True
        self.signal_name = signal.Signals(signum).name

    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in STOP_SIGNALS:
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
                  f"{step}/{total}; checkpoint saved to {checkpoint}", file=sys.stderr)
        return KeyboardInterrupt(self.signal_name)


__all__ = ["STOP_SIGNALS", "StopRequest", "interrupt_on_termination", "next_command",
           "set_next_command"]
