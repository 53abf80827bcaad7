"""The one result schema, ``result.schema.json`` (shipped in this package), and validation
against it, on write and on read.

Why JSON Schema, with the ``jsonschema`` library: another lab's tool can check our files with
its own validator in any language, and the schema file documents every field
(docs/results.md). This module needs nothing of the harness but its errors, so the writers of
the lowest layers (``metrics.json``, a benchmark's ``report.json``) can validate with it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from harness.errors import HarnessError

SCHEMA_FILE = "result.schema.json"
SCHEMA_VERSION = 1


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The result schema, read from the package."""
    text = resources.files("harness.results").joinpath(SCHEMA_FILE).read_text("utf-8")
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
