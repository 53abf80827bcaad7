"""``harness extractor train``: the metrics plugin's command (added through the
``register_commands`` hook, like a third-party plugin's).

Writes the ``domain`` FID extractor of a dataset as a weights file and its card
(:mod:`.domain_weights`), trained on the dataset's whole training split; ``eval.fid.
feature_extractor = "PATH"`` then scores with exactly those weights, so labs that share the
file get comparable numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def _data_config(sets: tuple[str, ...]) -> Any:
    """``data.KEY=VALUE`` options (``data.root``, ``data.size``) as a DataConfig."""
    import dataclasses
    import json

    from harness.api import DataConfig
    from harness.errors import ConfigError

    known = {f.name for f in dataclasses.fields(DataConfig)} - {"validation", "n_train"}
    values: dict[str, Any] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        name = key.removeprefix("data.")
        if not sep or not key.startswith("data.") or name not in known:
            raise ConfigError(f"--set '{item}': expected data.KEY=VALUE with KEY one of "
                              f"{', '.join(sorted(known))} (the extractor trains on the whole "
                              "training split)")  # fmt: skip
        try:
            values[name] = json.loads(raw)
        except json.JSONDecodeError:
            values[name] = raw
    return DataConfig(**values)


def train_command(dataset: str, out: str | None, sets: tuple[str, ...]) -> None:
    """Check the options and the output path, then train in a child process started with
    the reproducible environment (:data:`.domain_weights.REPRODUCIBLE_ENV`) unless this one
    was: load the data, train, write file and card."""
    from harness.errors import ConfigError

    from .domain_weights import reproducible_env_set

    config = _data_config(sets)
    target = Path(out or f"{dataset}-domain-extractor.safetensors").expanduser()
    if target.suffix != ".safetensors":
        raise ConfigError(f"--out '{target}' must end in .safetensors")
    if target.is_dir() or not target.parent.is_dir():
        raise ConfigError(f"--out '{target}': its folder must exist and it must not be a folder")
    if not reproducible_env_set():
        _train_in_child(dataset, target, sets)
        return
    _train(dataset, target, config)


def _train_in_child(dataset: str, target: Path, sets: tuple[str, ...]) -> None:
    """The same command in a fresh interpreter with the kernels pinned (they are chosen when
    torch loads, which this process may have done); its exit status is this command's."""
    import os
    import subprocess
    import sys

    from .domain_weights import REPRODUCIBLE_ENV

    argv = [sys.executable, "-m", "harness.cli", "extractor", "train", "--dataset", dataset,
            "--out", str(target), *(a for s in sets for a in ("--set", s))]
    done = subprocess.run(argv, env={**os.environ, **REPRODUCIBLE_ENV}, check=False)
    if done.returncode:
        raise SystemExit(done.returncode)


def _train(dataset: str, target: Path, config: Any) -> None:
    from harness import api

    from .domain import check_labelled
    from .domain_weights import card_path, write_weights

    splits = api.load_dataset(dataset, config)
    check_labelled(splits.train, splits.info, "domain")
    card = write_weights(splits.train, splits.info, target, progress=True)
    click.echo(f"wrote {target} ({card['file_bytes']} bytes) and {card_path(target)}")
    click.echo(f"  held-out accuracy {card['accuracy']:.4f} ({card['n_holdout']} images), "
               f"weights sha256 {card['weights_sha256']}")  # fmt: skip
    click.echo(f"  use it: --set eval.fid.feature_extractor={target}")


def register(cli: Any) -> None:
    """Add the ``extractor`` group to the root command."""

    @cli.group("extractor")
    def extractor() -> None:
        """The FID feature extractors of the metrics plugin."""

    @extractor.command("train")
    @click.option("--dataset", required=True, help="registered dataset name")
    @click.option("--out", default=None, help="weights file (.safetensors); its card is "
                  "written next to it (default: ./<dataset>-domain-extractor.safetensors)")
    @click.option("--set", "sets", multiple=True, help="data.KEY=VALUE (e.g. data.root=DIR)")
    def train(dataset: str, out: str | None, sets: tuple[str, ...]) -> None:
        """Train the domain FID extractor of DATASET on its whole training split (bad
        input: the CLI's one ``Error:`` line, exit 2, before any training)."""
        train_command(dataset, out, sets)
