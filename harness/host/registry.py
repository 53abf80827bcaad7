"""Name -> component tables for models, datasets, protocols and metrics.

A component is registered with a factory that may be a lazy ``"module:attr"`` string, so that
listing never imports heavy libraries. Name clashes:

* a built-in component keeps its bare name: a third-party plugin registering the same name is
  *shadowed* (reachable only as ``plugin:name``; :class:`ComponentShadowed` tells the host to
  warn), whichever of the two registers first;
* two third-party plugins claiming one name both stay reachable as ``plugin:name``, and asking
  for the bare name is an error that says so (:class:`ComponentConflict`).

A component may keep the names it had before a rename (``aliases``): :meth:`Registry.get`
finds it by either, and :meth:`Registry.canonical` turns an old name into the new one, which
is what configurations, records and reports carry. An alias never takes a name a component
has.

Everything here is generic over the component kinds listed in :data:`KINDS`.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from harness.errors import ComponentConflict, HarnessError, UnknownComponent

#: Component kind -> the hook that registers components of that kind. Adding a kind is one
#: line here (plus its hook spec in :mod:`harness.hookspecs`); the host and registries follow.
COMPONENT_HOOKS = {
    "model": "register_models",
    "dataset": "register_datasets",
    "protocol": "register_protocols",
    "metric": "register_metrics",
}
KINDS = tuple(COMPONENT_HOOKS)


class ComponentShadowed(ComponentConflict):
    """A third-party component took a built-in's name: it is kept, reachable only as
    ``plugin:name``. ``shadowed`` lists the components that lost the bare name."""

    def __init__(self, message: str, shadowed: list[Component]) -> None:
        super().__init__(message)
        self.shadowed = shadowed


@dataclass
class Component:
    """One registered model, dataset, protocol or metric.

    ``default`` is the plugin's own claim: a dataset that is the default when ``--dataset`` is
    not given, a protocol that runs when ``eval.protocols`` is empty. The host keeps no list
    of such names itself.
    """

    kind: str
    name: str
    factory: Any
    description: str
    plugin: str
    default: bool = False
    builtin: bool = False
    shadowed: bool = False  # a built-in has this name: reachable only as plugin:name
    aliases: tuple[str, ...] = ()  # former names, still accepted (deprecated)
    _loaded: Any = field(default=None, repr=False)

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}:{self.name}"

    def load(self) -> Any:
        """Import (once) and return the factory object."""
        if self._loaded is None:
            factory = self.factory
            if isinstance(factory, str):
                module_name, _, attr = factory.partition(":")
                try:
                    obj: Any = importlib.import_module(module_name)
                    for part in attr.split(".") if attr else []:
                        obj = getattr(obj, part)
                except (ImportError, AttributeError) as exc:
                    raise HarnessError(
                        f"{self.kind} '{self.name}' from plugin '{self.plugin}' could not be "
                        f"loaded from '{factory}': {exc}"
                    ) from exc
                factory = obj
            if self.kind == "model" and isinstance(factory, type):  # capabilities it cannot honour
                from harness.host.capabilities import check_model_class

                check_model_class(factory, f"model '{self.name}' from plugin '{self.plugin}'")
            self._loaded = factory
        return self._loaded

    def summary(self) -> dict[str, Any]:
        """One listing row; ``name`` is what to type (``plugin:name`` when shadowed)."""
        name = self.qualified_name if self.shadowed else self.name
        return {"name": name, "plugin": self.plugin, "description": self.description,
                "default": self.default}


class Registry:
    """The components of one kind, by name."""

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown component kind {kind!r}")
        self.kind = kind
        self._by_name: dict[str, list[Component]] = {}
        self._aliases: dict[str, str] = {}  # former name -> name

    def add(self, component: Component) -> None:
        """Add a component; raises :class:`ComponentConflict` if its name is already taken.

        The component is kept even then (reachable as ``plugin:name``): the caller decides
        whether the conflict is fatal.
        """
        if not isinstance(component.name, str) or not component.name or ":" in component.name:
            raise HarnessError(
                f"plugin '{component.plugin}' registered an invalid {self.kind} name "
                f"{component.name!r}: names are non-empty strings without ':'"
            )
        existing = self._by_name.setdefault(component.name, [])
        for other in existing:
            if other.plugin == component.plugin:
                raise ComponentConflict(
                    f"plugin '{component.plugin}' registers {self.kind} '{component.name}' twice"
                )
        existing.append(component)
        for alias in component.aliases:
            if alias != component.name and alias not in self._by_name:
                self._aliases.setdefault(alias, component.name)
        builtins = [c for c in existing if c.builtin]
        if len(builtins) == 1:
            # The built-in keeps the bare name; every third-party namesake is shadowed.
            newly = [c for c in existing if not c.builtin and not c.shadowed]
            for other in newly:
                other.shadowed = True
            if newly:
                raise ComponentShadowed(
                    "; ".join(
                        f"{self.kind} '{c.name}' is a built-in name (plugin "
                        f"'{builtins[0].plugin}' keeps it); the one from plugin '{c.plugin}' "
                        f"is reachable only as '{c.qualified_name}'"
                        for c in newly
                    ),
                    newly,
                )
            return
        if len(existing) > 1:
            owners = ", ".join(f"'{c.qualified_name}'" for c in existing)
            raise ComponentConflict(
                f"{self.kind} '{component.name}' is registered by several plugins; "
                f"use {owners} to choose one"
            )

    def remove_plugin(self, plugin: str) -> None:
        for name in list(self._by_name):
            kept = [c for c in self._by_name[name] if c.plugin != plugin]
            if kept and not any(c.builtin for c in kept):
                for component in kept:  # the built-in went with its plugin: no more shadow
                    component.shadowed = False
            if kept:
                self._by_name[name] = kept
            else:
                del self._by_name[name]

    def __iter__(self) -> Iterator[Component]:
        for name in sorted(self._by_name):
            yield from self._by_name[name]

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_name.values())

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def defaults(self) -> list[Component]:
        """The components whose plugin declared them default, in name order."""
        return [c for c in self if c.default]

    def canonical(self, name: str) -> str:
        """``name`` as configurations carry it: a former name (an alias) becomes the
        component's name; any other name is returned as it is."""
        plugin, sep, bare = name.rpartition(":")
        if bare in self._by_name:
            return name
        new = self._aliases.get(bare)
        return name if new is None else f"{plugin}{sep}{new}"

    def get(self, name: str) -> Component:
        """The component called ``name`` (or ``plugin:name``; a former name works too), or a
        helpful error."""
        name = self.canonical(name)
        plugin, sep, bare = name.rpartition(":")
        if sep:
            for component in self._by_name.get(bare, []):
                if component.plugin == plugin:
                    return component
            raise UnknownComponent(self._unknown_message(name))
        candidates = [c for c in self._by_name.get(name, []) if not c.shadowed]
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            owners = ", ".join(f"'{c.qualified_name}'" for c in candidates)
            raise ComponentConflict(
                f"{self.kind} '{name}' is registered by several plugins; choose one with "
                f"{owners}"
            )
        raise UnknownComponent(self._unknown_message(name))

    def _unknown_message(self, name: str) -> str:
        known = self.names()
        close = difflib.get_close_matches(name.rpartition(":")[2], known, n=3, cutoff=0.5)
        hint = ""
        if close:
            hint = " did you mean " + ", ".join(f"'{c}'" for c in close) + "?"
        listing = ", ".join(known) if known else "(none: no plugin registers any)"
        return f"{self.kind} '{name}' is not known;{hint} Known: {listing}"


