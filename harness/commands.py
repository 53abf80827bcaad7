"""What ``harness run`` and ``harness evaluate`` do, independent of the command line.

``run_experiment`` works unchanged under ``accelerate launch``: every process loads the data
and builds the model; the main process owns the run directory, evaluation and metrics.
"""

from __future__ import annotations

import copy
import shlex
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.configuration import preflight
from harness.configuration import run_config as cfgmod
from harness.configuration.run_config import RunConfig
from harness.errors import ConfigError, EvaluationFailed, HarnessError, one_line
from harness.host.plugins import Host, host_or_default
from harness.rundir import contents as runs
from harness.rundir.atomic import atomic_dir
from harness.rundir.layout import RunLayout
from harness.training.resources import peak_memory
from harness.training.stopsignal import set_next_command


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
    from harness.training.validation_split import carve_validation

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
    return cfgmod.resolve(model=model, dataset=dataset, config_file=config_file, sets=sets,
                          seed=seed, host=host)


@dataclass
class ResumePlan:
    """The configuration a ``--resume`` continues with, and why ``config.toml`` is rewritten."""

    config: RunConfig
    changes: list[preflight.Change] = field(default_factory=list)
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
    stored ones; the settings in :data:`harness.configuration.preflight.RESUME_MAY_CHANGE` (and ``eval.*``)
    may differ and are applied; any other difference is refused, naming it. When
    ``config.toml`` is missing or unreadable, the command line's configuration is used
    (checked against the checkpoint before anything is written)."""
    host = host_or_default(host)
    run_dir = Path(out)
    path = RunLayout(run_dir).config
    sets = list(sets or [])
    given = bool(model or dataset or config_file or sets or seed is not None)
    try:
        stored_doc = cfgmod.load_toml(path)
        stored = cfgmod.from_dict(stored_doc, host=host)
    except ConfigError as exc:
        if not given:
            if not path.exists():
                runs.check_run_dir(run_dir, resume=True)  # the clearer "holds no run" errors
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
        for section, values in cfgmod.load_toml(config_file).items():
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
    config = cfgmod.resolve_data(doc, sets=sets, source=config_file or path, host=host,
                                 saved=True)
    changes = preflight.config_changes(stored, config)
    preflight.refuse_resume_changes(changes, run_dir)
    return ResumePlan(config, changes)



def check_before_training(host: Host, config: RunConfig, splits: Any, model: Any,
                          n_train: int, world: int, *, evaluate: bool) -> Any:
    """What needs the data and the model, before anything is written: the training plan
    (batch against model and processes), the trackers, the optimizer, the evaluation sizes
    and each protocol's word on the model. Returns the plan ``train()`` follows."""
    train_plan = preflight.plan_training(config.train, n_train, world, model)
    preflight.check_trackers(config.train)
    preflight.check_optimizer(model, config.train)
    preflight.check_eval_sizes(host, config.eval, splits)
    if evaluate:  # a protocol that cannot evaluate this model refuses it before training
        from harness.evaluation import evaluate as evaluation

        skipped = evaluation.check_protocols(
            model, evaluation.build_protocols(config.eval, host=host), config.model)
        from accelerate import PartialState

        if skipped and PartialState().is_main_process:
            for protocol, why in skipped.items():
                print(f"harness: protocol {protocol} {why}; it is listed, not run",
                      file=sys.stderr)
    return train_plan


def run_experiment(config: RunConfig | ResumePlan, out: str | Path | None, *,
                   resume: bool = False, evaluate: bool = True,
                   save_samples: bool = False, host: Host | None = None) -> Path:
    """Train, evaluate and record one run; returns the run directory.

    Everything that can be checked is checked before the first write (the folder, the data,
    the model, every ``train`` option, a resume's checkpoint): a refused run leaves the
    folder as it was. A folder with a config but no usable checkpoint and no results (a run
    stopped before its first checkpoint) is started over. The folder is locked
    (``.harness.lock``) while the run works in it. ``host``: the plugins (the process's
    host when None); everything below receives it explicitly."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    from harness.rundir import checkpoints as ckpt
    from harness.training import loop as trainer

    plan = config if isinstance(config, ResumePlan) else ResumePlan(config)
    config = plan.config
    host = host_or_default(host)
    state = PartialState(cpu=trainer.cpu_launch())
    trainer.check_mixed_precision(config.train.mixed_precision, state.device)
    # Every process must agree on the directory (a default name contains a timestamp).
    chosen = [str(out) if out else str(runs.default_run_dir(config))]
    if state.num_processes > 1:
        broadcast_object_list(chosen, from_process=0)
    run_dir = Path(chosen[0])
    # Read-only checks on every process (they all see the same files), so a refusal stops
    # them all; nothing is written before the data and the model are known to be fine.
    runs.check_out_path(run_dir)
    dir_state = runs.check_run_dir(run_dir, resume=resume)
    if state.is_main_process:
        print(f"harness: loading dataset '{config.dataset}' and building model "
              f"'{config.model}'...", file=sys.stderr, flush=True)
    splits = load_data(host, config)
    n_train = preflight.check_splits(splits, config.dataset)
    trainer.seed_everything(config.seed)
    model = build_model(host, config, splits.info)
    train_plan = check_before_training(host, config, splits, model, n_train,
                                       state.num_processes, evaluate=evaluate)
    if resume and dir_state.checkpoint is not None:
        ckpt.check_resume_fits(dir_state.checkpoint, seed=config.seed,
                               batch_size=config.train.batch_size, n_train=n_train, model=model)
    # The first write: take the folder's lock, re-check under it, then write.
    lock = runs.RunLock(run_dir)
    refusal = [""]
    if state.is_main_process:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()
            runs.prepare_run_dir(run_dir, resume=resume)
            if not resume or plan.changes or plan.rebuilt:
                runs.write_config(run_dir, config, plan.notes)
        except HarnessError as exc:
            lock.release()
            refusal = [str(exc)]
            if state.num_processes == 1:
                raise
        except BaseException:  # e.g. a full disk while writing config.toml
            lock.release()
            raise
    if state.num_processes > 1:
        broadcast_object_list(refusal, from_process=0)
        if refusal[0]:
            raise HarnessError(refusal[0])
    if plan.changes and state.is_main_process:
        print("harness: resuming with changed settings: "
              + "; ".join(str(c) for c in plan.changes), file=sys.stderr)
    if state.is_main_process:
        announce(config, run_dir, steps=train_plan.total_steps, device=state.device,
                 resume=resume)
    set_next_command(f"harness run --resume --out {shlex.quote(str(run_dir))}",
                     "training stopped at a step boundary with a checkpoint")
    try:
        return _train_and_record(host, model, splits, config, run_dir, resume=resume,
                                 evaluate=evaluate, state=state, save_samples=save_samples,
                                 plan=train_plan)
    finally:
        lock.release()


def _train_and_record(host: Host, model: Any, splits: Any, config: RunConfig, run_dir: Path, *,
                      resume: bool, evaluate: bool, state: Any,
                      save_samples: bool = False, plan: Any = None) -> Path:
    from harness.training import loop as trainer

    state.wait_for_everyone()
    _forget_other_precision(config.train.mixed_precision)
    accelerator = trainer.make_accelerator(config.train, run_dir)
    if accelerator.is_main_process:
        env = runs.environment(device=str(accelerator.device),
                               num_processes=accelerator.num_processes,
                               mixed_precision=config.train.mixed_precision,
                               plugins=host.records.values())
        runs.atomic_write_json(RunLayout(run_dir).environment, env)
        host.call_hook("run_started", run_dir=str(run_dir), config=config.as_dict(), environment=env)

    def on_log(record: dict[str, Any]) -> None:
        if accelerator.is_main_process:
            host.call_hook("step_logged", run_dir=str(run_dir), record=record)

    if resume and accelerator.is_main_process:
        runs.repair_log(RunLayout(run_dir).log)
    result = trainer.train(model, splits, config, run_dir, resume=resume,
                           accelerator=accelerator, on_log=on_log, plan=plan)
    model = result.model
    if accelerator.is_main_process:
        runs.save_model(run_dir, model, name=config.model, config=config.model_cfg,
                        info=splits.info)
        set_next_command(f"harness evaluate {shlex.quote(str(run_dir))}",
                         f"training is finished and its weights are saved in {run_dir}")
        training = {k: v for k, v in vars(result).items() if k != "model"}
        training.update(peak_memory(accelerator.device))  # the run's peak GPU memory / RSS
        if evaluate:
            doc = evaluate_model(host, model, splits, config, run_dir, device=accelerator.device,
                                 training=training, save_samples=save_samples,
                                 trackers=accelerator if config.train.trackers else None,
                                 fail=False)
        else:
            doc = runs.metrics_document(config, [], {"training": training})
            runs.atomic_write_json(RunLayout(run_dir).metrics, doc)
        set_next_command("", "")  # the run is complete: nothing left to continue
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if accelerator.is_main_process and evaluate:  # after the others were let go: no hang
        raise_if_every_protocol_failed(doc, run_dir)
    return run_dir


def _forget_other_precision(mixed_precision: str) -> None:
    """A second run in the same Python process (the API, tests) may ask for another mixed
    precision; Accelerate keeps one per process and would refuse. Forget the old one (the
    process state, devices and process group, is kept)."""
    from accelerate.state import AcceleratorState

    current = AcceleratorState._shared_state.get("_mixed_precision")
    if current is not None and current != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def log_final_metrics(accelerator: Any, doc: dict[str, Any], step: int) -> dict[str, float]:
    """Send the run's scalar metrics to the configured trackers (``train.trackers``) as
    ``final/<protocol>/<metric>``, beside the training loss; returns what was logged."""
    values = {f"final/{rec.get('protocol')}/{rec.get('metric')}": float(rec["value"])
              for rec in doc.get("results", [])
              if isinstance(rec.get("value"), int | float) and not isinstance(rec["value"], bool)}
    if values:
        accelerator.log(values, step=step)
    return values


def log_final_images(accelerator: Any, previews: dict[str, tuple[Any, ...]], info: Any,
                     step: int) -> list[str]:
    """Send each protocol's preview grid (the run directory's ``images/<protocol>.png``) to
    every configured tracker that takes images, as ``final/<protocol>``; returns the names of
    the trackers that got them. TensorBoard takes a batch of NHWC arrays; W&B, ClearML and Aim
    a list of HWC arrays. Trackers without images (MLflow, Comet, DVCLive) get the metrics only."""
    import numpy as np

    from harness.evaluation.evaluate import to_display
    from harness.evaluation.figures import grid_array

    grids = {}
    for protocol, (images, nrow, *labels) in previews.items():
        grids[f"final/{protocol}"] = grid_array(to_display(images, info), nrow,
                                                labels[0] if labels else None)
    told = []
    for tracker in getattr(accelerator, "trackers", None) or []:
        if not grids or not callable(getattr(tracker, "log_images", None)):
            continue
        if getattr(tracker, "name", "") == "tensorboard":
            tracker.log_images({k: np.ascontiguousarray(v)[None] for k, v in grids.items()},
                               step=step, dataformats="NHWC")
        else:
            tracker.log_images({k: [v] for k, v in grids.items()}, step=step)
        told.append(str(getattr(tracker, "name", type(tracker).__name__)))
    return told


def evaluate_model(host: Host, model: Any, splits: Any, config: RunConfig, run_dir: Path, *,
                   device: Any = None, training: dict[str, Any] | None = None,
                   write_config: bool = False, save_samples: bool = False,
                   write_metrics: bool = True, trackers: Any = None,
                   fail: bool = True) -> dict[str, Any]:
    """Run the protocols, then write metrics.json and the image grids; returns the metrics
    document. An earlier metrics.json is kept as metrics.prev.json. With ``write_config`` the
    run's config.toml is rewritten too, after the evaluation succeeded (``harness evaluate
    --set``): a failed evaluation leaves config and metrics as they were. ``save_samples``
    exports what was scored into ``run_dir/samples/`` (see
    :func:`harness.evaluation.evaluate.export_samples`). ``trackers``: the run's accelerator when
    ``train.trackers`` is set; the final metrics and the preview grids are logged to it."""
    from harness.evaluation import evaluate as evaluation

    protocols = evaluation.build_protocols(config.eval, host=host)
    metrics = evaluation.build_metrics(config.eval, host=host, progress=True)
    model.eval()
    previews: dict[str, tuple[Any, int, Any]] = {}
    labels: dict[str, Any] = {}

    def on_images(protocol: str, images: Any, nrow: int) -> None:
        previews[protocol] = (images, nrow, None)

    def on_labels(protocol: str, grid_labels: Any) -> None:
        labels[protocol] = grid_labels

    notes = evaluation.EvalNotes()
    # the export replaces samples/ as a whole, once it is complete
    seconds: dict[str, dict[str, float]] = {}
    with atomic_dir(RunLayout(run_dir).samples) if save_samples else nullcontext() as samples:
        records = evaluation.evaluate(
            model, splits, config.eval, seed=config.seed, host=host, protocols=protocols,
            metrics=metrics, device=device, on_images=on_images, on_labels=on_labels,
            samples_dir=samples, model_name=config.model, notes=notes, seconds=seconds)
    previews = {p: (images, nrow, labels.get(p)) for p, (images, nrow, _) in previews.items()}
    extra: dict[str, Any] = {"eval": config.eval.as_dict()}
    if training is not None:
        extra["training"] = training
    ran = [(name, p) for name, p in protocols if name not in notes.not_applicable]
    extra.update(_unscored(ran, metrics, records, splits.info, host))
    extra.update(notes.as_dict())
    extra["evaluation_seconds"] = seconds  # where the evaluation's time went
    doc = runs.metrics_document(config, records, extra)
    for protocol, (images, nrow, grid) in previews.items():
        evaluation.save_image_grid(images, RunLayout(run_dir).image(protocol), nrow=nrow,
                                   info=splits.info, labels=grid)
    if trackers is not None:
        step = int((training or {}).get("steps", 0))
        log_final_metrics(trackers, doc, step=step)
        log_final_images(trackers, previews, splits.info, step=step)
    if not write_metrics:
        return doc
    runs.write_metrics(run_dir, doc)
    if fail:  # metrics.json says why; the config stays as it was
        raise_if_every_protocol_failed(doc, run_dir)
    if write_config:
        runs.write_config(run_dir, config)
    host.call_hook("run_finished", run_dir=str(run_dir), metrics=doc)
    return doc


def raise_if_every_protocol_failed(doc: dict[str, Any], run_dir: Path) -> None:
    """:class:`EvaluationFailed` (exit 1) when every protocol that ran failed: each has error
    records and no number (a protocol no metric scored, ``unscored``, did not fail)."""
    results = doc.get("results") or []
    ran = list(dict.fromkeys(r.get("protocol") for r in results))
    if not ran or doc.get("unscored"):
        return
    errors: dict[str, str] = {}
    for name in ran:
        own = [r for r in results if r.get("protocol") == name]
        if any(r.get("value") is not None for r in own) or not any(r.get("error") for r in own):
            return
        errors[str(name)] = str(next(r["error"] for r in own if r.get("error")))[:120]
    failed = "; ".join(f"{name}: {error}" for name, error in errors.items())
    raise EvaluationFailed(f"every protocol failed, no number was computed ({failed}); "
                           f"{RunLayout(run_dir).metrics} records each error")


def _unscored(protocols: list[tuple[str, Any]], metrics: list[tuple[str, Any]],
              records: list[dict[str, Any]], info: Any, host: Host) -> dict[str, Any]:
    """``{"unscored": {protocol: why}}`` for the protocols that produced no number at all
    (e.g. interpolation on the bumps, where no image metric applies); {} when all did."""
    from harness.evaluation.display import unscored_reason

    scored = {rec.get("protocol") for rec in records}
    why = {name: unscored_reason(name, protocol, metrics, info, host)
           for name, protocol in protocols if name not in scored}
    return {"unscored": why} if why else {}


def announce(config: RunConfig, run_dir: Path, *, steps: int, device: Any,
             resume: bool) -> None:
    """Say, before the first step, what is trained on what, for how long, where."""
    preset = config.preset or "none"
    verb = "resuming" if resume else "training"
    print(f"harness: {verb} {config.model} on {config.dataset} (preset: {preset}, seed "
          f"{config.seed}) for {steps} steps on {device}\n"
          f"harness: run directory {run_dir}; the first progress line comes after the "
          "first steps (Ctrl-C stops with a checkpoint)", file=sys.stderr, flush=True)


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
                 save_samples: bool = False, write_metrics: bool = True,
                 host: Host | None = None) -> dict[str, Any]:
    """Re-evaluate a saved run, optionally with other ``eval`` settings. Everything is
    checked before any work; config.toml and metrics.json change only once the evaluation
    has succeeded (never with ``write_metrics=False``: `harness samples`)."""
    run_dir = Path(run_dir)
    path = RunLayout(run_dir).config
    if not path.is_file():
        raise HarnessError(f"'{run_dir}' is not a run directory ({path.name} missing)")
    data = cfgmod.load_toml(path)
    overrides = cfgmod.parse_set(sets or [])
    if set(overrides) - {"eval"}:
        raise ConfigError("`harness evaluate` only takes --set eval.KEY=VALUE; training settings "
                          "are fixed by the saved run")
    host = host_or_default(host)
    eval_section = _override_eval(dict(data.get("eval", {})), overrides.get("eval", {}), host)
    config = cfgmod.from_dict({**data, "eval": eval_section}, host=host)
    splits = load_data(host, config)
    preflight.check_eval_sizes(host, config.eval, splits)  # before any model work
    model = build_model(host, config, splits.info)
    runs.load_weights(run_dir, model, name=config.model, config=config.model_cfg)
    previous = runs.previous_training(run_dir)
    print(f"evaluating {run_dir} ({config.model} on {config.dataset})", file=sys.stderr)
    if write_metrics:
        set_next_command(f"harness evaluate {shlex.quote(str(run_dir))}",
                         f"the weights and metrics of {run_dir} are as they were")
    return evaluate_model(host, model, splits, config, run_dir, training=previous or None,
                          write_config=bool(overrides) and write_metrics,
                          save_samples=save_samples, write_metrics=write_metrics)
