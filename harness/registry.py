"""Name -> component tables for models, datasets, protocols and metrics.

A component is registered with a factory that may be a lazy ``"module:attr"`` string, so that
listing never imports heavy libraries. Two plugins may claim the same name: both stay
reachable as ``plugin:name``, and asking for the bare name is an error that says so.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import ComponentConflict, HarnessError, UnknownComponent

KINDS = ("model", "dataset", "protocol", "metric")


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
            self._loaded = factory
        return self._loaded

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "plugin": self.plugin, "description": self.description,
                "default": self.default}


class Registry:
    """The components of one kind, by name."""

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown component kind {kind!r}")
        self.kind = kind
        self._by_name: dict[str, list[Component]] = {}

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
        if len(existing) > 1:
            owners = ", ".join(f"'{c.qualified_name}'" for c in existing)
            raise ComponentConflict(
                f"{self.kind} '{component.name}' is registered by several plugins; "
                f"use {owners} to choose one"
            )

    def remove_plugin(self, plugin: str) -> None:
        for name in list(self._by_name):
            kept = [c for c in self._by_name[name] if c.plugin != plugin]
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

    def get(self, name: str) -> Component:
        """The component called ``name`` (or ``plugin:name``), or a helpful error."""
        plugin, sep, bare = name.rpartition(":")
        if sep:
            for component in self._by_name.get(bare, []):
                if component.plugin == plugin:
                    return component
            raise UnknownComponent(self._unknown_message(name))
        candidates = self._by_name.get(name, [])
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


RegisterCallback = Callable[..., None]
