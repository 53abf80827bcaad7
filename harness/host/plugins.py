"""Finding, loading and checking plugins.

Built-in plugins (``harness_plugins.*``) and third-party ones are found the same way: through
the ``harness`` entry-point group. Loading never dies on one bad plugin: an import error, a
hook with a bad signature, an unknown hook name, a duplicate entry-point name or a component
name claimed twice is recorded against that plugin (see :class:`PluginRecord`), the plugin is
dropped, and everything else keeps working. ``HARNESS_STRICT_PLUGINS=1`` turns every such
problem into a :class:`~harness.errors.PluginError`.

Isolation rules:

* An import that escapes with ``SystemExit``, ``KeyboardInterrupt`` or any other
  ``BaseException`` is caught like an ``Exception``: reported, the plugin dropped.
* Built-in components keep their bare names: a third-party plugin registering a built-in's
  name keeps its component, reachable only as ``plugin:name``, with a warning on its record.
  Two third-party plugins claiming one name are both reachable as ``plugin:name`` only.
* Notification hooks (``run_started``, ``step_logged``, ``run_finished``) go through
  :meth:`Host.call_hook`: an implementation that raises is reported once on stderr and
  disabled until the next ``run_started``; strict mode makes it fatal.

Escape hatches, as in llm and tox:

* ``HARNESS_LOAD_PLUGINS=a,b`` loads only these third-party plugins (empty: none). Built-in
  plugins are always loaded unless disabled.
* ``HARNESS_DISABLE_PLUGINS=a,b`` skips these plugins, built-in ones included.

Both take plugin names (as ``harness plugins`` shows them) or distribution names (as
``pip list`` shows them; llm's ``LLM_LOAD_PLUGINS`` takes those).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from harness import hookspecs
from harness.errors import ComponentConflict, HarnessError, PluginError, env_flag, one_line
from harness.host.registry import COMPONENT_HOOKS, Component, ComponentShadowed, Registry

ENTRY_POINT_GROUP = "harness"
BUILTIN_DISTRIBUTION = "vrrae-harness"
_COMPONENT_HOOKS = COMPONENT_HOOKS


@dataclass
class PluginRecord:
    """What ``harness plugins`` shows for one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    loaded: bool = False
    #: Problems that leave the plugin loaded: a shadowed built-in name, a hook that raised.
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "builtin": self.builtin,
            "hooks": sorted(self.hooks),
            "error": self.error,
            "warnings": list(self.warnings),
        }


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def strict_mode() -> bool:
    return env_flag("HARNESS_STRICT_PLUGINS")


class Host:
    """The loaded plugins and the components they registered."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.registries = {kind: Registry(kind) for kind in _COMPONENT_HOOKS}
        self.strict = strict_mode()
        self._failed_hooks: set[tuple[str, str]] = set()  # (plugin, hook) disabled this run

    # -- failures -------------------------------------------------------------------------
    def _fail(self, record: PluginRecord, message: str) -> None:
        record.error = message if record.error is None else f"{record.error}; {message}"
        record.loaded = False
        plugin = self.pm.get_plugin(record.name)
        if plugin is not None:
            self.pm.unregister(plugin)
        for registry in self.registries.values():
            registry.remove_plugin(record.name)
        if self.strict:
            raise PluginError(
                f"plugin '{record.name}' ({record.distribution or 'no distribution'} "
                f"{record.version or ''}) failed: {message} "
                "(HARNESS_STRICT_PLUGINS=1 makes this fatal; unset it to skip the plugin)"
            )

    def _free_key(self, key: str) -> str:
        """``key``, or ``key #2``, ``key #3``...: the first one not used in ``records``."""
        candidate, n = key, 1
        while candidate in self.records:
            n += 1
            candidate = f"{key} #{n}"
        return candidate

    # -- loading --------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        only = _env_list("HARNESS_LOAD_PLUGINS")
        disabled = _env_list("HARNESS_DISABLE_PLUGINS") or []
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=_builtin_first):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            builtin = dist_name == BUILTIN_DISTRIBUTION
            if _named(ep.name, dist_name, disabled) or (
                only is not None and not builtin and not _named(ep.name, dist_name, only)
            ):
                continue
            record = PluginRecord(
                name=ep.name,
                distribution=dist_name,
                version=dist.version if dist is not None else None,
                builtin=builtin,
            )
            if ep.name in self.records:
                first = self.records[ep.name]
                record.error = (
                    f"entry-point name '{ep.name}' is already used by "
                    f"{first.distribution or 'another plugin'}; this one was dropped"
                )
                self.records[self._free_key(f"{ep.name} ({dist_name})")] = record
                if self.strict:
                    raise PluginError(f"plugin '{ep.name}' ({dist_name}): {record.error}")
                continue
            self.records[ep.name] = record
            try:
                module = ep.load()
            except BaseException as exc:  # noqa: B036 - sys.exit() in a plugin must not exit us
                self._fail(record, f"import failed: {one_line(exc)}")
                continue
            self.register(module, record)

    def register(self, plugin: ModuleType | object, record: PluginRecord | str) -> PluginRecord:
        """Register one plugin object (a module or any object with hook implementations)."""
        if isinstance(record, str):
            name = record
            record = PluginRecord(name=name)
            if name in self.records or self.pm.has_plugin(name):
                # Keep the first plugin of that name working: record this one apart, drop it.
                record.error = f"plugin name '{name}' is already used; this one was dropped"
                self.records[self._free_key(f"{name} (duplicate)")] = record
                if self.strict:
                    raise PluginError(f"plugin '{name}': {record.error}")
                return record
            self.records[name] = record
        try:
            self.pm.register(plugin, name=record.name)
        except pluggy.PluginValidationError as exc:
            self._fail(record, f"bad hook: {one_line(exc)}")
            return record
        except ValueError as exc:  # pluggy: name or object already registered
            self._fail(record, one_line(exc))
            return record
        record.loaded = True
        record.hooks = [impl for impl in _hook_names(self.pm, plugin)]
        self._check_pending()
        return record

    def _check_pending(self) -> None:
        while True:
            try:
                self.pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                name = self.pm.get_name(exc.plugin) or "?"
                record = self.records.setdefault(name, PluginRecord(name=name))
                self._fail(record, f"unknown hook: {one_line(exc)}")
                if self.strict:  # pragma: no cover - _fail raised already
                    raise

    # -- calling hooks: the one way, with one failure policy ------------------------------
    def _implementations(self, hook_name: str, *,
                         last_first: bool = True) -> list[tuple[str, PluginRecord, Any]]:
        """``(plugin, record, hookimpl)`` for every loaded plugin implementing ``hook_name``,
        built-in plugins first, then in pluggy's calling order (the last registered first;
        ``last_first=False``: in registration order)."""
        caller = getattr(self.pm.hook, hook_name, None)
        if caller is None:
            raise ValueError(f"no hook called {hook_name!r}")
        found = []
        impls = caller.get_hookimpls()
        for impl in reversed(impls) if last_first else impls:
            name = self.pm.get_name(impl.plugin) or impl.plugin_name
            record = self.records.setdefault(name, PluginRecord(name=name, loaded=True))
            if record.loaded:
                found.append((name, record, impl))
        return sorted(found, key=lambda item: not item[1].builtin)

    def _hook_failed(self, record: PluginRecord, hook_name: str, exc: BaseException, *,
                     drop: bool = False, contributes: bool = False, then: str = "") -> None:
        """The failure policy of every hook: the plugin is named, the problem recorded on
        its record (``harness plugins`` shows it) and reported once on stderr, and the other
        plugins go on. What the plugin failed to contribute is an *error* on its record
        (``drop``: components, the plugin is unloaded since they would be partial; commands
        and suites: those are missing); a notification that failed is a *warning*.
        ``then`` says what happens to the plugin next, in the stderr line.
        ``HARNESS_STRICT_PLUGINS=1`` makes any failure a :class:`PluginError` (exit 1)."""
        if drop:
            self._fail(record, one_line(exc) if isinstance(exc, HarnessError)
                       else f"{hook_name} failed: {one_line(exc)}")  # raises in strict mode
            return
        problem = f"hook {hook_name} failed: {one_line(exc)}"
        if contributes:
            record.error = problem if record.error is None else f"{record.error}; {problem}"
        elif problem not in record.warnings:
            record.warnings.append(problem)
        if self.strict:
            error = PluginError(f"plugin '{record.name}': {problem} "
                                "(HARNESS_STRICT_PLUGINS=1 makes this fatal; unset it to only warn)")
            error.exit_code = 1
            raise error from exc
        print(f"warning: plugin '{record.name}': {problem}{then}", file=sys.stderr)

    def _call_each(self, hook_name: str, kwargs: dict[str, Any], *, then: str = "",
                   skip: set[tuple[str, str]] | None = None,
                   contributes: bool = False) -> list[Any]:
        """Call each implementation of ``hook_name`` on its own (an implementation may take
        fewer arguments than the spec); the results of those that did not fail. A plugin
        that fails is added to ``skip`` (and skipped while it is there)."""
        results = []
        for name, record, impl in self._implementations(hook_name):
            if skip is not None and (name, hook_name) in skip:
                continue
            try:
                results.append(impl.function(**{a: kwargs[a] for a in impl.argnames}))
            except PluginError:
                raise
            except (Exception, SystemExit) as exc:  # not KeyboardInterrupt: the user's Ctrl-C
                if skip is not None:
                    skip.add((name, hook_name))
                self._hook_failed(record, hook_name, exc, then=then, contributes=contributes)
        return results

    def collect_components(self) -> None:
        """Call every plugin's register hooks, one plugin at a time, to attribute names.

        Built-in plugins go first, so that the order of the others never matters (the
        registry gives a built-in its bare name whichever registers first anyway). A hook
        that raises drops its plugin (see :meth:`_hook_failed`)."""
        for kind, hook_name in _COMPONENT_HOOKS.items():
            for name, record, impl in self._implementations(hook_name, last_first=False):
                if not record.loaded:  # dropped by an earlier kind's hook
                    continue
                register = self._registrar(kind, name, record)
                try:
                    impl.function(**{arg: register for arg in impl.argnames})
                except PluginError:
                    raise
                except (Exception, SystemExit) as exc:
                    self._hook_failed(record, hook_name, exc, drop=True)

    def _registrar(self, kind: str, plugin: str, record: PluginRecord) -> Any:
        """The ``register`` callable handed to plugin ``plugin``'s hook for ``kind``."""
        registry = self.registries[kind]

        def register(comp_name: str, factory: Any, description: str = "", *,
                     default: bool = False, aliases: tuple[str, ...] = ()) -> None:
            try:
                registry.add(Component(kind, comp_name, factory, description, plugin,
                                       default=bool(default), builtin=record.builtin,
                                       aliases=tuple(aliases)))
            except ComponentShadowed as exc:
                # The built-in keeps its name; the newcomer stays as plugin:name.
                for component in exc.shadowed:
                    self._warn(component.plugin, str(exc))
            except ComponentConflict as exc:
                # Both stay reachable as plugin:name, and the plugin goes on registering its
                # other components; strict mode makes it fatal.
                message = one_line(exc)
                record.error = message if record.error is None else f"{record.error}; {message}"
                if self.strict:
                    raise PluginError(f"plugin '{plugin}': {exc}") from exc

        return register

    def add_commands(self, cli: Any) -> None:
        """Let every plugin add its commands to the ``harness`` click group ``cli``."""
        self._call_each("register_commands", {"cli": cli}, contributes=True)

    def suites(self) -> dict[str, tuple[Any, str]]:
        """Benchmark suites from the plugins' ``register_suites`` hooks: name -> (the path
        of a suite file or its content as a dict, description)."""
        found: dict[str, tuple[Any, str]] = {}

        def register(name: str, suite: Any, description: str = "") -> None:
            found[name] = (suite, description)

        self._call_each("register_suites", {"register": register}, contributes=True)
        return found

    def _warn(self, plugin: str, message: str) -> None:
        """Record a problem that leaves ``plugin`` loaded; fatal in strict mode."""
        record = self.records.setdefault(plugin, PluginRecord(name=plugin, loaded=True))
        if message not in record.warnings:
            record.warnings.append(message)
        if self.strict:
            raise PluginError(
                f"plugin '{plugin}': {message} "
                "(HARNESS_STRICT_PLUGINS=1 makes this fatal; unset it to only warn)"
            )

    # -- notification hooks ---------------------------------------------------------------
    def call_hook(self, name: str, **kwargs: Any) -> list[Any]:
        """Call every plugin's implementation of the notification hook ``name``.

        Each implementation runs on its own: one that raises (``SystemExit`` included; not
        ``KeyboardInterrupt``, which is the user's Ctrl-C) is reported once on stderr, recorded
        in its plugin's warnings and skipped until the next ``run_started``, and the others
        still run (:meth:`_hook_failed`). ``HARNESS_STRICT_PLUGINS=1`` makes the failure a
        :class:`PluginError` (exit status 1: the run failed). Returns the results."""
        caller = getattr(self.pm.hook, name, None)
        if caller is None:
            raise ValueError(f"no hook called {name!r}")
        spec_args = set(caller.spec.argnames) if caller.spec is not None else set()
        if spec_args != set(kwargs):
            raise TypeError(f"hook {name} takes {sorted(spec_args)}, got {sorted(kwargs)}")
        if name == "run_started":
            self._failed_hooks.clear()  # a new run: every hook gets a fresh chance
        return self._call_each(name, kwargs, skip=self._failed_hooks,
                               then="; it is disabled for the rest of this run")

    # -- queries --------------------------------------------------------------------------
    def registry(self, kind: str) -> Registry:
        return self.registries[kind]

    def get(self, kind: str, name: str) -> Component:
        return self.registries[kind].get(name)

    def canonical(self, kind: str, name: str, *, warn: bool = False) -> str:
        """The current name of component ``name`` (a former name is mapped to it). ``warn``:
        say once per process on stderr that the former name is deprecated (for names a user
        typed: configurations, suites; records of old runs are mapped silently)."""
        new = self.registries[kind].canonical(name)
        if warn and new != name and (kind, name) not in _TOLD_RENAMED:
            _TOLD_RENAMED.add((kind, name))
            print(f"harness: warning: {kind} '{name}' is now called '{new}'; the old name "
                  "still works for now but is deprecated: write the new one", file=sys.stderr)
        return new


#: (kind, former name) pairs already reported by :meth:`Host.canonical`
_TOLD_RENAMED: set[tuple[str, str]] = set()


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _named(plugin: str, distribution: str | None, names: list[str]) -> bool:
    """Whether ``names`` (from an environment variable) names this plugin or its distribution."""
    wanted = {_normalize(n) for n in names}
    return _normalize(plugin) in wanted or (
        distribution is not None and _normalize(distribution) in wanted
    )


def _builtin_first(ep: metadata.EntryPoint) -> tuple[int, str]:
    dist = getattr(ep, "dist", None)
    dist_name = dist.metadata["Name"] if dist is not None else ""
    return (0 if dist_name == BUILTIN_DISTRIBUTION else 1, ep.name)


def _hook_names(pm: pluggy.PluginManager, plugin: object) -> Iterable[str]:
    for caller in pm.get_hookcallers(plugin) or []:
        yield caller.name


_HOST: Host | None = None


def get_host() -> Host:
    """The process-wide host, loaded on first use."""
    return _HOST if _HOST is not None else load_host()


def host_or_default(host: Host | None) -> Host:
    """The one default of the library's entry points (``harness.run``, the benchmark's
    ``run_benchmark``/``load_suite``, ``resolve``): the host a caller passed, else this
    process's. Everything below an entry point receives the host explicitly."""
    return host if host is not None else get_host()


def reset_host() -> None:
    """Forget the loaded host (tests register plugins, then reset)."""
    global _HOST
    _HOST = None


def load_host(plugins: dict[str, object] | None = None, entry_points: bool = True) -> Host:
    """Build a fresh host, optionally with extra in-process plugins; makes it the current one."""
    global _HOST
    host = Host()
    if entry_points:
        host.load_entry_points()
    for name, plugin in (plugins or {}).items():
        host.register(plugin, name)
    host.collect_components()
    _HOST = host
    return host


__all__ = ["Host", "PluginRecord", "get_host", "load_host", "reset_host", "strict_mode"]
