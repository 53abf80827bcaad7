"""``harness run``: train, evaluate and record one run.

:func:`run_experiment` works unchanged under ``accelerate launch``: every process loads the
data and builds the model; the main process owns the run directory, evaluation and metrics.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from harness.configuration.run_config import RunConfig
from harness.errors import HarnessError
from harness.host.plugins import Host, host_or_default
from harness.run.build import build_model, load_data
from harness.run.preflight import check_before_training, check_splits
from harness.run.resume import ResumePlan
from harness.run.scoring import evaluate_model, raise_if_every_protocol_failed
from harness.rundir import checkpoints, contents
from harness.rundir.layout import RunLayout
from harness.training import loop
from harness.training.accel import check_mixed_precision, forget_other_precision
from harness.training.resources import peak_memory
from harness.training.stopsignal import set_next_command


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

    plan = config if isinstance(config, ResumePlan) else ResumePlan(config)
    config = plan.config
    host = host_or_default(host)
    state = PartialState(cpu=loop.cpu_launch())
    check_mixed_precision(config.train.mixed_precision, state.device)
    # Every process must agree on the directory (a default name contains a timestamp).
    chosen = [str(out) if out else str(contents.default_run_dir(config))]
    if state.num_processes > 1:
        broadcast_object_list(chosen, from_process=0)
    run_dir = Path(chosen[0])
    # Read-only checks on every process (they all see the same files), so a refusal stops
    # them all; nothing is written before the data and the model are known to be fine.
    contents.check_out_path(run_dir)
    dir_state = contents.check_run_dir(run_dir, resume=resume)
    if state.is_main_process:
        print(f"harness: loading dataset '{config.dataset}' and building model "
              f"'{config.model}'...", file=sys.stderr, flush=True)
    splits = load_data(host, config)
    n_train = check_splits(splits, config.dataset)
    loop.seed_everything(config.seed)
    model = build_model(host, config, splits.info)
    train_plan = check_before_training(host, config, splits, model, n_train,
                                       state.num_processes, evaluate=evaluate)
    if resume and dir_state.checkpoint is not None:
        checkpoints.check_resume_fits(dir_state.checkpoint, seed=config.seed,
                               batch_size=config.train.batch_size, n_train=n_train, model=model)
    # The first write: take the folder's lock, re-check under it, then write.
    lock = contents.RunLock(run_dir)
    refusal = [""]
    if state.is_main_process:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()
            contents.prepare_run_dir(run_dir, resume=resume)
            if not resume or plan.changes or plan.rebuilt:
                contents.write_config(run_dir, config, plan.notes)
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
    state.wait_for_everyone()
    forget_other_precision(config.train.mixed_precision)
    accelerator = loop.make_accelerator(config.train, run_dir)
    if accelerator.is_main_process:
        env = contents.environment(device=str(accelerator.device),
                               num_processes=accelerator.num_processes,
                               mixed_precision=config.train.mixed_precision,
                               plugins=host.records.values())
        contents.atomic_write_json(RunLayout(run_dir).environment, env)
        host.call_hook("run_started", run_dir=str(run_dir), config=config.as_dict(), environment=env)

    def on_log(record: dict[str, Any]) -> None:
        if accelerator.is_main_process:
            host.call_hook("step_logged", run_dir=str(run_dir), record=record)

    if resume and accelerator.is_main_process:
        contents.repair_log(RunLayout(run_dir).log)
    result = loop.train(model, splits, config, run_dir, resume=resume,
                           accelerator=accelerator, on_log=on_log, plan=plan)
    model = result.model
    if accelerator.is_main_process:
        contents.save_model(run_dir, model, name=config.model, config=config.model_cfg,
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
            doc = contents.metrics_document(config, [], {"training": training})
            contents.atomic_write_json(RunLayout(run_dir).metrics, doc)
        set_next_command("", "")  # the run is complete: nothing left to continue
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if accelerator.is_main_process and evaluate:  # after the others were let go: no hang
        raise_if_every_protocol_failed(doc, run_dir)
    return run_dir


def announce(config: RunConfig, run_dir: Path, *, steps: int, device: Any,
             resume: bool) -> None:
    """Say, before the first step, what is trained on what, for how long, where."""
    preset = config.preset or "none"
    verb = "resuming" if resume else "training"
    print(f"harness: {verb} {config.model} on {config.dataset} (preset: {preset}, seed "
          f"{config.seed}) for {steps} steps on {device}\n"
          f"harness: run directory {run_dir}; the first progress line comes after the "
          "first steps (Ctrl-C stops with a checkpoint)", file=sys.stderr, flush=True)
