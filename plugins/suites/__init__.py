"""Built-in benchmark suites: the paper's experiments (``paper-synthetic``, ``paper-real``,
``paper-ablation``, ``beta-sweep``), shipped as package data beside this module and
registered through the same ``register_suites`` hook a third-party plugin uses, so a wheel
install carries them."""

from __future__ import annotations

import sys
from importlib import resources
from typing import Any

from harness import hookimpl

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def suite_files() -> list[Any]:
    """The suite TOML files of this package (``importlib.resources`` files: they are read
    from the installed package, wheel or source tree alike)."""
    return sorted((f for f in resources.files(__package__).iterdir()
                   if f.name.endswith(".toml")), key=lambda f: f.name)


@hookimpl
def register_suites(register: Any) -> None:
    for file in suite_files():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
            name, description = data["name"], data.get("description", "")
        except (tomllib.TOMLDecodeError, KeyError, UnicodeDecodeError):
            name, description = file.name[: -len(".toml")], "(unreadable: run it to see why)"
        register(name, file, description)


@hookimpl
def report_figures(dataset: str, runs: dict[str, str], folder: str, register: Any) -> None:
    from .figures import latent_scatter

    path = latent_scatter(dataset, runs, folder)
    if path is not None:
        register(f"{dataset}: latent means (k = 2) of the training set, and of the diagonal "
                 "test set in red where the dataset has one (paper figure 2)", path)
