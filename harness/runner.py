"""What ``harness run`` and ``harness evaluate`` do, independent of the command line.

``run_experiment`` works unchanged under ``accelerate launch``: every process loads the data
and builds the model; the main process owns the run directory, evaluation and metrics.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from . import config as cfgmod
from . import runs
from .config import RunConfig
from .errors import ConfigError, HarnessError
from .plugins import Host, get_host
from .resources import peak_memory


def build_model(host: Host, config: RunConfig, info: Any) -> Any:
    cls = host.get("model", config.model).load()
    model_cfg = cfgmod.build_dataclass(cls.Config, config.model_cfg, "model")
    return cls.from_config(model_cfg, info)


def load_data(host: Host, config: RunConfig) -> Any:
    loader = host.get("dataset", config.dataset).load()
    return loader(config.data)


def resolve_config(
    *, model: str | None, dataset: str | None, config_file: str | None,
    sets: list[str], seed: int | None, host: Host | None = None,
) -> RunConfig:
    host = host or get_host()
    model_name = model
    if model_name is None and config_file:
        model_name = cfgmod.load_toml(config_file).get("run", {}).get("model")
    if model_name is None:
        raise ConfigError("no model given: pass --model NAME (`harness models` lists them)")
    cls = host.get("model", model_name).load()
    if dataset is not None:
        host.get("dataset", dataset)  # fail early, with "did you mean"
    return cfgmod.resolve(model=model, dataset=dataset, config_file=config_file, sets=sets,
                          seed=seed, model_config_cls=cls.Config)


def run_experiment(config: RunConfig, out: str | Path | None, *, resume: bool = False,
                   evaluate: bool = True) -> Path:
    """Train, evaluate and record one run; returns the run directory."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    from . import train as trainer

    host = get_host()
    state = PartialState(cpu=trainer.cpu_launch())
    # Every process must agree on the directory (a default name contains a timestamp).
    chosen = [str(out) if out else str(runs.default_run_dir(config))]
    if state.num_processes > 1:
        broadcast_object_list(chosen, from_process=0)
    run_dir = Path(chosen[0])
    # Read-only checks on every process (they all see the same files), so a refusal stops
    # them all; nothing is written before the data and the model are known to be fine.
    runs.check_run_dir(run_dir, resume=resume)
    splits = load_data(host, config)
    trainer.seed_everything(config.seed)
    model = build_model(host, config, splits.info)
    if config.train.batch_size < model.min_batch_size:
        raise ConfigError(
            f"train.batch_size={config.train.batch_size} is smaller than model "
            f"'{config.model}' accepts ({model.min_batch_size}, its bottleneck k): the truncated "
            f"SVD needs at least k columns. Raise train.batch_size or lower model.k"
        )
    if state.is_main_process:
        runs.prepare_run_dir(run_dir, resume=resume)
        if not resume:
            runs.write_config(run_dir, config)
    state.wait_for_everyone()
    accelerator = trainer.make_accelerator(config.train, run_dir)
    if accelerator.is_main_process:
        env = runs.environment(device=str(accelerator.device),
                               num_processes=accelerator.num_processes,
                               mixed_precision=config.train.mixed_precision,
                               plugins=host.records.values())
        runs.atomic_write_json(run_dir / runs.ENVIRONMENT_FILE, env)
        host.pm.hook.run_started(run_dir=str(run_dir), config=config.as_dict(), environment=env)

    def on_log(record: dict[str, Any]) -> None:
        if accelerator.is_main_process:
            host.pm.hook.step_logged(run_dir=str(run_dir), record=record)

    result = trainer.train(model, splits, config, run_dir, resume=resume,
                           accelerator=accelerator, on_log=on_log)
    model = result.model
    if accelerator.is_main_process:
        runs.save_model(run_dir, model, config.model, config.model_cfg, splits.info)
        training = {k: v for k, v in vars(result).items() if k != "model"}
        training.update(peak_memory(accelerator.device))  # the run's peak GPU memory / RSS
        if evaluate:
            evaluate_model(host, model, splits, config, run_dir, device=accelerator.device,
                           training=training)
        else:
            doc = runs.metrics_document(config, [], {"training": training})
            runs.atomic_write_json(run_dir / runs.METRICS_FILE, doc)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir


def evaluate_model(host: Host, model: Any, splits: Any, config: RunConfig, run_dir: Path, *,
                   device: Any = None, training: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the protocols, write metrics.json and image grids; returns the metrics document."""
    from . import protocols

    metrics = protocols.build_metrics(config.eval, host=host)
    model.eval()

    def on_images(protocol: str, images: Any, nrow: int) -> None:
        protocols.save_image_grid(images, run_dir / "images" / f"{protocol}.png", nrow=nrow)

    records = protocols.evaluate(
        model, splits, config.eval, seed=config.seed, metrics=metrics, device=device,
        on_images=on_images,
    )
    extra: dict[str, Any] = {}
    if training is not None:
        extra["training"] = training
    doc = runs.metrics_document(config, records, extra)
    runs.atomic_write_json(run_dir / runs.METRICS_FILE, doc)
    host.pm.hook.run_finished(run_dir=str(run_dir), metrics=doc)
    return doc


def evaluate_run(run_dir: str | Path, sets: list[str] | None = None) -> dict[str, Any]:
    """Re-evaluate a saved run (optionally with other eval settings)."""
    run_dir = Path(run_dir)
    path = run_dir / runs.CONFIG_FILE
    if not path.is_file():
        raise HarnessError(f"'{run_dir}' is not a run directory ({runs.CONFIG_FILE} missing)")
    data = cfgmod.load_toml(path)
    overrides = cfgmod.parse_set(sets or [])
    if set(overrides) - {"eval"}:
        raise ConfigError("`harness evaluate` only takes --set eval.KEY=VALUE; training settings "
                          "are fixed by the saved run")
    data.setdefault("eval", {}).update(overrides.get("eval", {}))
    config = cfgmod.from_dict(data)
    host = get_host()
    splits = load_data(host, config)
    model = build_model(host, config, splits.info)
    runs.load_weights(run_dir, model)
    previous: dict[str, Any] = {}
    if (run_dir / runs.METRICS_FILE).is_file():
        previous = runs.read_metrics(run_dir).get("training") or {}
    if overrides:
        runs.write_config(run_dir, config)
    print(f"evaluating {run_dir} ({config.model} on {config.dataset})", file=sys.stderr)
    return evaluate_model(host, model, splits, config, run_dir, training=previous or None)
