"""Exceptions the host raises for bad input. The CLI prints them without a traceback."""

from __future__ import annotations


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """``Type: message`` of ``exc`` on one line (whitespace collapsed), cut to ``limit``
    characters: how an exception from a library or a plugin is quoted in an ``Error:`` line
    or a plugin's record."""
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if limit is None else line[:limit]


class HarnessError(Exception):
    """A user-facing error: the message names what is wrong and how to fix it.

    ``exit_code`` is the command line's exit status for it: 2 for bad input (the default),
    1 for a run that failed while running.
    """

    exit_code = 2


class ConfigError(HarnessError):
    """A configuration key or value is wrong."""


class UnknownComponent(HarnessError):
    """A model, dataset or metric name is not registered."""


class ComponentConflict(HarnessError):
    """Two plugins register a component under the same name."""


class PluginError(HarnessError):
    """A plugin failed to load (raised only in strict mode)."""


class NonFiniteLoss(HarnessError):
    """A training loss part became NaN or infinite; the run stopped before applying it.

    Attributes say where: ``step`` (1-based, as in the log), ``part`` (e.g. ``"kl"``),
    ``value`` and ``checkpoint`` (the last good checkpoint, or None if none was written).
    """

    exit_code = 1

    def __init__(self, message: str, *, step: int, part: str, value: float, checkpoint: str | None):
        super().__init__(message)
        self.step = step
        self.part = part
        self.value = value
        self.checkpoint = checkpoint


class EvaluationFailed(HarnessError):
    """Every protocol of an evaluation failed: the run produced no number (metrics.json
    records why for each). Exit status 1: the run failed while running."""

    exit_code = 1
