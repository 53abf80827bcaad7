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


def build_model(host: Host, config: RunConfig, info: Any) -> Any:
    """The model of ``config`` for a dataset described by ``info`` (its config is validated
    already: :func:`harness.config.resolve` built it)."""
    return host.get("model", config.model).load().from_config(config.model_cfg, info)


def load_data(host: Host, config: RunConfig) -> Any:
    from .validation import carve_validation

    loader = host.get("dataset", config.dataset).load()
    return carve_validation(loader(config.data), config.data.validation)


def resolve_config(
    *, model: str | None, dataset: str | None, config_file: str | None,
    sets: list[str], seed: int | None, host: Host | None = None,
) -> RunConfig:
    """The run's configuration, every section validated against the installed components
    (unknown names fail with "did you mean")."""
    host = host or get_host()
    if dataset is not None:
        host.get("dataset", dataset)  # fail early, with "did you mean"
    return cfgmod.resolve(model=model, dataset=dataset, config_file=config_file, sets=sets,
                          seed=seed, host=host)


def run_experiment(config: RunConfig, out: str | Path | None, *, resume: bool = False,
                   evaluate: bool = True, save_samples: bool = False) -> Path:
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
    trainer.check_batch_size(config.train.batch_size, model, config.model)
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
        runs.save_model(run_dir, model, name=config.model, config=config.model_cfg,
                        info=splits.info)
        training = {k: v for k, v in vars(result).items() if k != "model"}
        if evaluate:
            doc = evaluate_model(host, model, splits, config, run_dir, device=accelerator.device,
                                 training=training, save_samples=save_samples)
            if config.train.trackers:
                log_final_metrics(accelerator, doc, step=int(training.get("steps", 0)))
        else:
            doc = runs.metrics_document(config, [], {"training": training})
            runs.atomic_write_json(run_dir / runs.METRICS_FILE, doc)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir


def log_final_metrics(accelerator: Any, doc: dict[str, Any], step: int) -> dict[str, float]:
    """Send the run's scalar metrics to the configured trackers (``train.trackers``) as
    ``final/<protocol>/<metric>``, beside the training loss; returns what was logged."""
    values = {f"final/{rec.get('protocol')}/{rec.get('metric')}": float(rec["value"])
              for rec in doc.get("results", [])
              if isinstance(rec.get("value"), int | float) and not isinstance(rec["value"], bool)}
    if values:
        accelerator.log(values, step=step)
    return values


def evaluate_model(host: Host, model: Any, splits: Any, config: RunConfig, run_dir: Path, *,
                   device: Any = None, training: dict[str, Any] | None = None,
                   write_config: bool = False, save_samples: bool = False,
                   write_metrics: bool = True) -> dict[str, Any]:
    """Run the protocols, then write metrics.json and the image grids; returns the metrics
    document. An earlier metrics.json is kept as metrics.prev.json. With ``write_config`` the
    run's config.toml is rewritten too, after the evaluation succeeded (``harness evaluate
    --set``): a failed evaluation leaves config and metrics as they were. ``save_samples``
    exports what was scored into ``run_dir/samples/`` (see
    :func:`harness.evaluation.export_samples`)."""
    from . import evaluation

    protocols = evaluation.build_protocols(config.eval, host=host)
    metrics = evaluation.build_metrics(config.eval, host=host, progress=True)
    model.eval()
    previews: dict[str, tuple[Any, int]] = {}

    def on_images(protocol: str, images: Any, nrow: int) -> None:
        previews[protocol] = (images, nrow)

    records = evaluation.evaluate(
        model, splits, config.eval, seed=config.seed, protocols=protocols, metrics=metrics,
        device=device, on_images=on_images,
        samples_dir=run_dir / runs.SAMPLES_DIR if save_samples else None,
    )
    extra: dict[str, Any] = {"eval": config.eval.as_dict()}
    if training is not None:
        extra["training"] = training
    doc = runs.metrics_document(config, records, extra)
    for protocol, (images, nrow) in previews.items():
        evaluation.save_image_grid(images, run_dir / "images" / f"{protocol}.png", nrow=nrow)
    if not write_metrics:
        return doc
    runs.write_metrics(run_dir, doc)
    if write_config:
        runs.write_config(run_dir, config)
    host.pm.hook.run_finished(run_dir=str(run_dir), metrics=doc)
    return doc


def _override_eval(saved: dict[str, Any], changes: dict[str, Any], host: Host) -> dict[str, Any]:
    """The saved ``eval`` section with ``--set`` changes; when the list of protocols or
    metrics changes, the saved options of components no longer selected are dropped."""
    out = {**saved, **changes}
    if "protocols" in changes or "metrics" in changes:
        schema = cfgmod.Schema(host)
        probe = cfgmod.build_dataclass(
            cfgmod.EvalConfig, {k: v for k, v in out.items() if k in ("protocols", "metrics")},
            "eval")
        selected = set(probe.protocols or schema.default_protocols())
        selected |= set(probe.metrics or schema.all_metrics())
        out = {k: v for k, v in out.items()
               if not isinstance(v, dict) or k in selected or "." in k}
    return out


def evaluate_run(run_dir: str | Path, sets: list[str] | None = None, *,
                 save_samples: bool = False, write_metrics: bool = True) -> dict[str, Any]:
    """Re-evaluate a saved run, optionally with other ``eval`` settings. Everything is
    checked before any work; config.toml and metrics.json change only once the evaluation
    has succeeded (never with ``write_metrics=False``: `harness samples`)."""
    run_dir = Path(run_dir)
    path = run_dir / runs.CONFIG_FILE
    if not path.is_file():
        raise HarnessError(f"'{run_dir}' is not a run directory ({runs.CONFIG_FILE} missing)")
    data = cfgmod.load_toml(path)
    overrides = cfgmod.parse_set(sets or [])
    if set(overrides) - {"eval"}:
        raise ConfigError("`harness evaluate` only takes --set eval.KEY=VALUE; training settings "
                          "are fixed by the saved run")
    host = get_host()
    eval_section = _override_eval(dict(data.get("eval", {})), overrides.get("eval", {}), host)
    config = cfgmod.from_dict({**data, "eval": eval_section}, host=host)
    splits = load_data(host, config)
    model = build_model(host, config, splits.info)
    runs.load_weights(run_dir, model)
    previous: dict[str, Any] = {}
    if (run_dir / runs.METRICS_FILE).is_file():
        previous = runs.read_metrics(run_dir).get("training") or {}
    print(f"evaluating {run_dir} ({config.model} on {config.dataset})", file=sys.stderr)
    return evaluate_model(host, model, splits, config, run_dir, training=previous or None,
                          write_config=bool(overrides) and write_metrics,
                          save_samples=save_samples, write_metrics=write_metrics)
