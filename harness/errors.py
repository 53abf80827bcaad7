"""Exceptions the host raises for bad input (the CLI prints them without a traceback), how
an exception is quoted on one line, and the one reading of on/off environment variables."""

from __future__ import annotations

import os

FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to something other than empty, 0,
    false, no or off (any case): the one reading of every on/off variable (``HARNESS_DEBUG``,
    which adds tracebacks to errors, ``HARNESS_STRICT_PLUGINS``, the hub's offline flags)."""
    return os.environ.get(name, "").strip().lower() not in FALSE_WORDS


def one_line(exc: BaseException, limit: int | None = None, *, with_type: bool = True) -> str:
    """``Type: message`` of ``exc`` on one line (whitespace collapsed), cut to ``limit``
    characters: how an exception from a library or a plugin is quoted in an ``Error:`` line
    or a plugin's record. ``with_type=False``: the message alone, where the line already
    says what failed (a refused ``[model]`` section)."""
    text = " ".join(str(exc).split())
    if with_type:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if limit is None else text[:limit]


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


class ComponentFault(Exception):
    """A plugin component returned something the host cannot record (a value that is not
    JSON, a result that is not a dict of name: value); the message says what, the evaluation
    that caught it names the component and its plugin and records it as that component's
    failure (:mod:`harness.evaluation.evaluate`)."""
