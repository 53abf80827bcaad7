"""The hooks a harness plugin can implement.

Every component hook is in the *register-callback* style (as in ``llm``): the host hands the
plugin a ``register`` callable, and the plugin calls it once per component. The callable takes
the component's name, a **factory** and a one-line description. The factory is either an
object or a lazy ``"package.module:attribute"`` string: listing components never imports the
factory, so ``harness models`` answers without importing torch.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "harness"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_models(register: Any) -> None:
    """Register generative models: ``register(name, factory, description)``.

    Every ``register`` of the four component hooks also takes ``aliases=("old_name",)``: the
    names a component had before a rename, still accepted (with a deprecation warning where
    a user typed them) and mapped to ``name`` in configurations and reports. Names are
    lower-case words joined by hyphens (``gaussian-fit``, ``fashion-mnist``).

    The factory, once loaded, is a class following :class:`harness.api.GenerativeModel`:
    it has a ``Config`` dataclass (the ``model`` section of a run) and
    ``from_config(config, info)`` building the model for a dataset described by ``info``.
    """


@hookspec
def register_datasets(register: Any) -> None:
    """Register datasets: ``register(name, factory, description, default=False)``.

    The factory, once loaded, is a callable ``factory(config: DataConfig) -> DataSplits``.
    ``default=True`` makes it the dataset of ``harness run`` without ``--dataset`` (the host
    has no default of its own; when no plugin, or more than one, claims it, ``--dataset`` is
    required and the error lists the choices).
    """


@hookspec
def register_protocols(register: Any) -> None:
    """Register evaluation protocols: ``register(name, factory, description, default=False)``.

    The factory, once loaded, is a class following :class:`harness.api.EvaluationProtocol`:
    a ``Config`` dataclass (the ``eval.<name>`` section of a run), ``__init__(config)``, and
    ``run(ctx: EvalContext) -> ProtocolOutput`` producing images or codes for the metrics and
    the protocol's own stamped values. ``default=True`` runs it when ``eval.protocols`` is
    empty (the default).
    """


@hookspec
def register_metrics(register: Any) -> None:
    """Register metrics: ``register(name, factory, description)``.

    The factory, once loaded, is a class following :class:`harness.api.Metric`: an optional
    ``Config`` dataclass (the ``eval.<name>`` section of a run), and
    ``factory(config)`` (``factory()`` without a ``Config``; ``progress=`` is passed too when
    the factory accepts it) returns the metric object.
    """


@hookspec
def register_suites(register: Any) -> None:
    """Register benchmark suites: ``register(name, suite, description)``.

    ``suite`` is the path of a suite TOML file or the same content as a dict (see
    :mod:`harness.benchmark.suite_runner` for the keys); ``harness benchmark NAME`` runs it and
    ``harness benchmark --list`` lists it beside the built-in ones.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``harness`` command line; ``cli`` is the root ``click.Group``."""


@hookspec
def run_started(run_dir: str, config: dict[str, Any], environment: dict[str, Any]) -> None:
    """Called on the main process when a run starts (after its directory is created)."""


@hookspec
def step_logged(run_dir: str, record: dict[str, Any]) -> None:
    """Called on the main process for every logged training step (a JSON-able record)."""


@hookspec
def run_finished(run_dir: str, metrics: dict[str, Any]) -> None:
    """Called on the main process when a run has finished and its metrics are written."""


@hookspec
def report_figures(dataset: str, runs: dict[str, str], folder: str, register: Any) -> None:
    """Add figures that need a plugin's knowledge to a benchmark report:
    ``register(caption, png_path)`` for each PNG written into ``folder``. ``runs``: model
    name -> run directory (the first seed's finished final run of each model on
    ``dataset``). The host draws only what runs wrote (scored samples, logs); a figure that
    must reload a model or knows a dataset's special split (e.g. a latent scatter with a
    held-out diagonal) comes from here."""
