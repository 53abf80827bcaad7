"""A run's configuration, data and model, built from the installed plugins (the host)."""

from __future__ import annotations

from typing import Any

from harness.configuration import run_config
from harness.configuration.run_config import RunConfig
from harness.errors import ConfigError, HarnessError, one_line
from harness.host.plugins import Host, host_or_default
from harness.training.validation_split import carve_validation


def build_model(host: Host, config: RunConfig, info: Any) -> Any:
    """The model of ``config`` for a dataset described by ``info`` (its config is validated
    already: :func:`harness.configuration.run_config.resolve` built it)."""
    cls = host.get("model", config.model).load()
    try:
        return cls.from_config(config.model_cfg, info)
    except HarnessError:
        raise
    except (ValueError, TypeError, RuntimeError, MemoryError, OverflowError) as exc:
        # e.g. a layer size torch cannot allocate, or an image size the architecture refuses
        raise ConfigError(
            f"model '{config.model}' cannot be built with this [model] section for dataset "
            f"'{config.dataset}': {one_line(exc, 300, with_type=False)}"
        ) from exc


def load_data(host: Host, config: RunConfig) -> Any:
    loader = host.get("dataset", config.dataset).load()
    return carve_validation(loader(config.data), config.data.validation)


def resolve_config(
    *, model: str | None, dataset: str | None, config_file: str | None,
    sets: list[str], seed: int | None, host: Host | None = None,
) -> RunConfig:
    """The run's configuration, every section validated against the installed components
    (unknown names fail with "did you mean")."""
    host = host_or_default(host)
    if dataset is not None:
        host.get("dataset", dataset)  # fail early, with "did you mean"
    return run_config.resolve(model=model, dataset=dataset, config_file=config_file, sets=sets,
                          seed=seed, host=host)
