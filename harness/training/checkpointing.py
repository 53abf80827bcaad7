"""When training writes checkpoints, what goes into them, and how a run resumes from one.

Why a module of its own: :mod:`harness.rundir.checkpoints` is the file format (safetensors + JSON,
atomic, never unpickled) and knows nothing about a run; this is the run's side of it, the part
that makes training *resumable bit for bit*:

* The data position follows from the step alone (:mod:`harness.training.sampling`) and noise from
  ``(seed, step)``; a checkpoint holds weights, optimizer state (and the fp16 gradient
  scaler's), the step and every process's RNG states. So continuing from step ``s`` replays
  exactly what the uninterrupted run did after ``s``.
* A resume is refused when the checkpoint was written with another ``run.seed``,
  ``train.batch_size`` or training-set size: the data order would differ. (More or fewer
  ``train.steps`` are fine: training simply continues, or has nothing left to do.)
* Order matters: the weights are loaded *before* ``accelerator.prepare`` (DDP then broadcasts
  rank 0's, identical anyway), the optimizer, scaler and RNG states after it (prepare wraps
  the optimizer, and must not draw from the restored RNG). The log is cut back to the
  checkpoint's step, so it reads like one uninterrupted run.
* Cadence: every ``train.checkpoint_every`` steps, at the end, and when stopped by a signal
  (:mod:`harness.training.stopsignal`). The log file is flushed first, so a resumed run finds every
  record up to the checkpoint.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from harness.configuration.run_config import RunConfig
from harness.rundir import checkpoints
from harness.rundir.layout import CHECKPOINT_DIR, RunLayout
from harness.training.plan import TrainPlan
from harness.training.steplog import truncate_log


def _no_flush() -> None:
    return None


class CheckpointPolicy:
    """Checkpoints of one run under ``run_dir/checkpoints/``; every process holds one and
    calls its methods at the same points (saving is collective).

    Use: :meth:`load_weights` (when resuming, before ``prepare``), :meth:`attach` (the
    unwrapped model and torch optimizer to save), :meth:`load_state` (when resuming, after
    ``prepare``), then :meth:`maybe_save` each step and :meth:`save_final` at the end.
    ``last`` is the newest checkpoint written or resumed from.
    """

    def __init__(self, run_dir: Path, config: RunConfig, accelerator: Any,
                 plan: TrainPlan) -> None:
        self.run_dir = Path(run_dir)
        self.layout = RunLayout(run_dir)
        self.root = self.layout.checkpoints
        self.config, self.acc = config, accelerator
        self.every = config.train.checkpoint_every
        self.n_train, self.total, self.bpe = plan.n_train, plan.total_steps, plan.batches_per_epoch
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.start = 0
        self.resumed: Path | None = None
        self.last: str | None = None
        self._model: torch.nn.Module | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._flush_log: Callable[[], None] = _no_flush

    # ---- resuming
    def load_weights(self, model: torch.nn.Module) -> int:
        """Find the newest complete checkpoint, check that it belongs to this run, load its
        weights into ``model`` (not yet prepared); returns its step, where training resumes
        (past ``total`` when the steps were lowered since: then nothing is left to train)."""
        resumed = checkpoints.latest_checkpoint(self.root)
        if resumed is None:
            raise checkpoints.CheckpointError(
                f"nothing to resume: '{self.root}' holds no complete checkpoint; run without "
                "--resume to start this run from scratch"
            )
        saved = checkpoints.read_trainer_state(resumed)
        checkpoints.check_data_order(resumed, saved, seed=self.config.seed,
                              batch_size=self.config.train.batch_size, n_train=self.n_train)
        checkpoints.load_model_weights(resumed, model)
        self.resumed, self.last, self.start = resumed, str(resumed), saved.step
        return saved.step

    def attach(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
               flush_log: Callable[[], None] = _no_flush) -> None:
        """What :meth:`save` writes: the unwrapped ``model`` and the torch ``optimizer``;
        ``flush_log`` runs before each save."""
        self._model, self._optimizer, self._flush_log = model, optimizer, flush_log

    def load_state(self) -> None:
        """After ``prepare`` and :meth:`attach`: restore the optimizer, the gradient scaler
        and this process's RNG states from the resumed checkpoint, and cut the log back to
        its step (main process)."""
        resumed = self.resumed
        assert resumed is not None and self._optimizer is not None, "load_weights, attach first"
        checkpoints.load_optimizer_state(resumed, self._optimizer)
        # what a resumed run may change (e.g. a lowered train.lr after a NaN) wins over the
        # values stored with the optimizer state
        checkpoints.apply_resume_settings(self._optimizer, self.config.train)
        scaler_state = checkpoints.load_extra(resumed).get("scaler")
        if scaler_state and getattr(self.acc, "scaler", None) is not None:
            self.acc.scaler.load_state_dict(scaler_state)
        if not checkpoints.load_rng_state(resumed, self.rank):
            print(f"harness: warning: checkpoint '{resumed}' has no RNG state for process "
                  f"{self.rank} (written by fewer processes); global RNG streams will differ",
                  file=sys.stderr)
        if self.acc.is_main_process:
            truncate_log(self.layout.log, self.start)

    # ---- saving
    def maybe_save(self, step: int) -> None:
        """Save when ``step`` is on the ``train.checkpoint_every`` cadence (the last step is
        left to :meth:`save_final`)."""
        if self.every and step % self.every == 0 and step < self.total:
            self.save(step)

    def save_final(self, step: int) -> None:
        """The end of the loop: save, unless this call trained nothing after a resume (the
        resumed checkpoint already is that state)."""
        if step > self.start or self.resumed is None:
            self.save(step)

    def save_interrupted(self, step: int) -> None:
        """A KeyboardInterrupt that did not go through :class:`StopRequest` (a second Ctrl-C,
        or no handler installed); call it only when the state is whole (no update under
        way). Saves only when this process can do it alone (one process: the others may be
        anywhere in their step) and it trained something."""
        if self.world == 1 and step > self.start:
            self.save(step)
            print(f"harness: interrupted at step {step}/{self.total}; checkpoint saved to "
                  f"{self.last}. Continue with --resume", file=sys.stderr)

    def save(self, step: int) -> None:
        """Write the checkpoint of ``step`` (collective: every process calls it)."""
        assert self._model is not None and self._optimizer is not None, "attach first"
        self._flush_log()
        extra: dict[str, Any] = {}
        if getattr(self.acc, "scaler", None) is not None:
            extra["scaler"] = self.acc.scaler.state_dict()
        path = checkpoints.save_checkpoint(self.root, model=self._model, optimizer=self._optimizer,
                                    state=self.state_at(step), extra=extra, rank=self.rank,
                                    barrier=self.acc.wait_for_everyone)
        self.last = str(path)

    def state_at(self, step: int) -> checkpoints.TrainerState:
        bpe = self.bpe
        return checkpoints.TrainerState(
            step=step, epoch=step // bpe, batch_in_epoch=step % bpe, batches_per_epoch=bpe,
            total_steps=self.total, seed=self.config.seed,
            batch_size=self.config.train.batch_size, n_train=self.n_train,
            world_size=self.world,
        )


__all__ = ["CHECKPOINT_DIR", "CheckpointPolicy"]
