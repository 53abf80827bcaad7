"""The configuration a ``harness run --resume`` continues with."""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.configuration import run_config
from harness.configuration.changes import Change, config_changes, refuse_resume_changes
from harness.configuration.run_config import RunConfig
from harness.errors import ConfigError
from harness.host.plugins import Host, host_or_default
from harness.run.build import resolve_config
from harness.rundir import contents
from harness.rundir.layout import RunLayout


@dataclass
class ResumePlan:
    """The configuration a ``--resume`` continues with, and why ``config.toml`` is rewritten."""

    config: RunConfig
    changes: list[Change] = field(default_factory=list)
    rebuilt: bool = False  # config.toml was missing or unreadable; rebuilt from the command line

    @property
    def notes(self) -> list[str]:
        if self.rebuilt:
            return ["rebuilt on --resume from the command line (the old config.toml was "
                    "missing or unreadable)"]
        return [f"changed on --resume: {c}" for c in self.changes]


def resume_config(
    out: str | Path, *, model: str | None = None, dataset: str | None = None,
    config_file: str | None = None, sets: list[str] | None = None, seed: int | None = None,
    host: Host | None = None,
) -> ResumePlan:
    """The configuration for ``harness run --resume --out DIR [original options]``.

    Options repeated from the original command line are accepted when their values equal the
    stored ones; the settings in :data:`harness.configuration.changes.RESUME_MAY_CHANGE` (and ``eval.*``)
    may differ and are applied; any other difference is refused, naming it. When
    ``config.toml`` is missing or unreadable, the command line's configuration is used
    (checked against the checkpoint before anything is written)."""
    host = host_or_default(host)
    run_dir = Path(out)
    path = RunLayout(run_dir).config
    sets = list(sets or [])
    given = bool(model or dataset or config_file or sets or seed is not None)
    try:
        stored_doc = run_config.load_toml(path)
        stored = run_config.from_dict(stored_doc, host=host)
    except ConfigError as exc:
        if not given:
            if not path.exists():
                contents.check_run_dir(run_dir, resume=True)  # the clearer "holds no run" errors
            raise ConfigError(
                f"cannot resume: {exc}. Repeat the run's original options (--model, --set, "
                "...) with --resume to rebuild it, or restore the file"
            ) from exc
        print(f"harness: warning: {exc}; resuming with the command line's configuration "
              "(checked against the checkpoint)", file=sys.stderr)
        config = resolve_config(model=model, dataset=dataset, config_file=config_file,
                                sets=sets, seed=seed, host=host)
        return ResumePlan(config, rebuilt=True)
    if not given:
        return ResumePlan(stored)
    if model is not None and model != stored.model:
        raise ConfigError(
            f"cannot resume '{run_dir}' as model '{model}': the run trains '{stored.model}'. "
            "Drop --model, or start a new run with another --out"
        )
    doc = copy.deepcopy(stored_doc)
    if config_file:
        for section, values in run_config.load_toml(config_file).items():
            doc.setdefault(section, {}).update(values)
    run = doc.setdefault("run", {})
    if model is not None:
        run["model"] = model
    if dataset is not None:
        host.get("dataset", dataset)
        run["dataset"] = dataset
    if seed is not None:
        run["seed"] = seed
    new_model = run.get("model")
    if new_model != stored.model:
        raise ConfigError(
            f"cannot resume '{run_dir}' with config file '{config_file}': it is for model "
            f"{new_model!r}, the run trains '{stored.model}'"
        )
    config = run_config.resolve_data(doc, sets=sets, source=config_file or path, host=host,
                                 saved=True)
    changes = config_changes(stored, config)
    refuse_resume_changes(changes, run_dir)
    return ResumePlan(config, changes)
