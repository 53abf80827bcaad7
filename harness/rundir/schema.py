"""The JSON documents of a run folder and a benchmark: plain JSON values (:func:`to_json`),
and the one result schema, ``result.schema.json`` (shipped in this package), with validation
against it, on write and on read.

Why JSON Schema, with the ``jsonschema`` library: another lab's tool can check our files with
its own validator in any language, and the schema file documents every field
(docs/results.md). This module needs nothing of the harness but its errors, so the writers
(``metrics.json``, a benchmark's ``report.json``) and the readers (:mod:`harness.results`)
share it.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from typing import Any

from harness.errors import ComponentFault, HarnessError

SCHEMA_FILE = "result.schema.json"
SCHEMA_VERSION = 1


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The result schema, read from the package."""
    text = resources.files("harness.rundir").joinpath(SCHEMA_FILE).read_text("utf-8")
    return json.loads(text)


@lru_cache(maxsize=8)
def _validator(definition: str) -> Any:
    from jsonschema import Draft202012Validator

    whole = schema()
    target = whole if definition == "result" else {"$defs": whole["$defs"],
                                                   "$ref": f"#/$defs/{definition}"}
    return Draft202012Validator(target)


def problems(doc: Any, definition: str = "result") -> list[str]:
    """Where ``doc`` breaks the schema (``definition``: ``result`` or one of its ``$defs``,
    e.g. ``metrics_file``), one line each; empty when valid."""
    errors = sorted(_validator(definition).iter_errors(doc), key=lambda e: list(e.path))
    return [f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message[:200]}" for e in errors]


class InvalidOnWrite(HarnessError):
    """A document the harness was about to write breaks the schema: a bug (in the harness or
    a plugin), so the exit status is 1, and nothing is written."""

    exit_code = 1


def validate(doc: Any, definition: str = "result", *, where: str = "",
             writing: bool = False) -> None:
    """Raise :class:`HarnessError` (on read: bad input, status 2) or :class:`InvalidOnWrite`
    (``writing``) naming the first violations when ``doc`` is not valid."""
    found = problems(doc, definition)
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        error = InvalidOnWrite if writing else HarnessError
        what = "it was not written" if writing else "re-create it with this harness"
        raise error(f"{where or 'document'} does not follow the result schema ({definition}): "
                    f"{'; '.join(found[:3])}{more}; {what}")


def to_json(value: Any, *, strict: bool = True, where: str = "value") -> tuple[Any, list[str]]:
    """``value`` as plain JSON (numpy and torch scalars and arrays become numbers and lists),
    with every NaN or infinity replaced by None; returns it and the paths of the numbers that
    were not finite. ``strict``: a value that is not JSON (a set, an object) raises
    :class:`ComponentFault`; otherwise it is written as its ``str``."""
    bad: list[str] = []

    def walk(v: Any, path: str) -> Any:
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            return v
        if isinstance(v, float):
            if math.isfinite(v):
                return v
            bad.append(f"{path} = {v}")
            return None
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {k: walk(x, f"{path}.{k}") for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x, f"{path}[{i}]") for i, x in enumerate(v)]
        if hasattr(v, "tolist") and callable(v.tolist) and type(v).__module__.split(".")[0] \
                in ("numpy", "torch"):
            return walk(v.tolist(), path)
        if strict:
            raise ComponentFault(f"returned a {type(v).__name__} for '{path}', not a number "
                                 "or a JSON value (str, bool, list, dict)")
        return str(v)

    return walk(value, where), bad
