"""What a training run tells the world about each step: one owner for every output.

Why a module of its own: five outputs follow the same steps (the ``log.jsonl`` records, the
trackers, the ``on_log`` callback behind the ``step_logged`` hook, the progress bar, the plain
progress lines) and each has its own cadence and cost. :class:`StepLogger` gets one call a
step, ``log(step, loss values, data wait)``, and decides what is due:

* **Records**, every ``train.log_every`` steps and at the last step: the mean of each loss part
  over the steps since the previous record, the learning rate, samples/s, the share of time
  spent waiting for data, and the time since the loop started. Written (main process only) to
  ``run_dir/log.jsonl``, given to ``on_log``, and flattened (``loss/total``...) to the
  Accelerate trackers named in ``train.trackers``.
* **The log file is buffered**: flushed every :data:`LOG_FLUSH_S` seconds, at each checkpoint
  (:meth:`StepLogger.flush`) and at the end. A write syscall per record measurably cost
  ~0.3-1 ms on a virtualised disk; a killed run loses at most those seconds of records, which
  resuming rewrites anyway (:func:`truncate_log` drops records past the resumed checkpoint, so
  the log of a resumed run reads like the log of an uninterrupted one).
* **Progress** (:class:`Progress`): a tqdm bar when stderr is a terminal with a width; otherwise
  (a file, a pipe, a CI log, or a terminal reporting 0 columns, where tqdm would show nothing)
  a plain line every :data:`PLAIN_PROGRESS_EVERY_S` seconds and at the last step, at that
  steady time cadence whatever ``log_every`` is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from harness.configuration.run_config import RunConfig
from harness.progress import PLAIN_EVERY_S, Progress
from harness.rundir.atomic import atomic_write_text
from harness.rundir.layout import LOG_FILE, RunLayout
from harness.training.resources import peak_memory

#: seconds between plain progress lines on stderr when it is not a terminal
PLAIN_PROGRESS_EVERY_S = PLAIN_EVERY_S
#: seconds between flushes of the JSON-lines log (also flushed at checkpoints and at the end)
LOG_FLUSH_S = 5.0


# ---------------------------------------------------------------------------- step logger
class _Window:
    """Sums over the steps since the window was last reset."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.sums: dict[str, float] = {}
        self.wait = 0.0
        self.t0 = self._clock()

    def add(self, values: dict[str, float], wait: float) -> None:
        self.steps += 1
        self.wait += wait
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v


class StepLogger:
    """Everything said about training steps: records, log file, trackers, ``on_log``,
    progress. A context manager: entering starts the trackers (if ``train.trackers`` and the
    accelerator has none yet), opens the log file (main process), shows the progress and
    starts the clock; leaving closes them. Call :meth:`log` once a step.

    ``lr`` returns the learning rate a record shows. Only the main process writes anything;
    every process keeps the sums :class:`TrainResult` reports (``elapsed``, ``wait_total``,
    ``last_values``).
    """

    def __init__(self, run_dir: Path, config: RunConfig, *, accelerator: Any, start: int,
                 total: int, batches_per_epoch: int, lr: Callable[[], Any],
                 on_log: Callable[[dict[str, Any]], None] | None = None,
                 stream: TextIO | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        cfg = config.train
        self.path = RunLayout(run_dir).log
        self.config, self.acc = config, accelerator
        self.main = bool(accelerator.is_main_process)
        self.start, self.total, self.bpe = start, total, batches_per_epoch
        self.batch_size, self.log_every, self.trackers = cfg.batch_size, cfg.log_every, cfg.trackers
        self.lr, self.on_log, self.stream, self.clock = lr, on_log, stream, clock
        self.window = _Window(clock)
        self.last_values: dict[str, float] = {}
        self.wait_total = 0.0
        self.t0 = clock()
        self.progress: Progress | None = None
        self._plain: _Window | None = None  # sums since the last plain progress line
        self._file: TextIO | None = None
        self._last_flush = self.t0

    # ---- lifecycle
    def __enter__(self) -> StepLogger:
        if self.trackers and not getattr(self.acc, "trackers", None):
            self.acc.init_trackers(project_name=self.path.parent.name or "harness",
                                   config=flat_config(self.config))
        if self.main:
            self._file = open(self.path, "a")  # noqa: SIM115 - closed in close()
            self.progress = Progress(self.total, initial=self.start, stream=self.stream,
                                     every_s=PLAIN_PROGRESS_EVERY_S, clock=self.clock)
            if self.progress.plain:
                self._plain = _Window(self.clock)
        self.t0 = self._last_flush = self.clock()
        self.window.reset()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close(line=self._plain_line if self._plain is not None else None)
            self.progress = None
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def elapsed(self) -> float:
        """Seconds since the loop started (entering)."""
        return self.clock() - self.t0

    # ---- per step
    def log(self, step: int, values: dict[str, float], wait: float) -> None:
        """Step ``step`` (1-based: steps done) finished with loss parts ``values`` after
        waiting ``wait`` seconds for its batch."""
        self.window.add(values, wait)
        self.wait_total += wait
        self.last_values = values
        if self.log_every and (step % self.log_every == 0 or step == self.total):
            self._record(step)
        if self.progress is not None:
            if self._plain is not None:
                self._plain.add(values, wait)
            self.progress.advance(line=self._plain_line)

    def _record(self, step: int) -> None:
        now = self.clock()
        window = self.window
        span = max(now - window.t0, 1e-12)
        record = {
            "step": step,
            "epoch": (step - 1) // self.bpe,
            "loss": {k: v / window.steps for k, v in window.sums.items()},
            "lr": self.lr(),
            "samples_per_s": window.steps * self.batch_size / span,
            "data_wait": window.wait / span,
            "time": now - self.t0,
        }
        record.update(peak_memory(getattr(self.acc, "device", None)))  # GPU peak, or peak RSS
        window.reset()
        if not self.main:
            return
        self.write(record)
        if now - self._last_flush >= LOG_FLUSH_S:
            self.flush()
            self._last_flush = now
        if self.on_log is not None:
            self.on_log(record)
        if self.trackers:
            self.acc.log(flat(record), step=step)
        if self.progress is not None:
            self.progress.postfix({k: f"{v:.4g}" for k, v in record["loss"].items()}
                                  | {"samples/s": f"{record['samples_per_s']:.0f}"})

    def _plain_line(self) -> str:
        plain = self._plain
        assert plain is not None and self.progress is not None
        span = max(self.clock() - plain.t0, 1e-12)
        parts = " ".join(f"{k}={v / max(plain.steps, 1):.4g}" for k, v in plain.sums.items())
        line = (f"step {self.progress.done}/{self.total} {parts} "
                f"{plain.steps * self.batch_size / span:.0f} samples/s")
        plain.reset()
        return line

    # ---- the file
    def write(self, record: dict[str, Any]) -> None:
        """Append one record to the log (main process; buffered, see the module doc)."""
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        """Push buffered records to the file (before a checkpoint, so a resumed run finds
        every record up to it)."""
        if self._file is not None:
            self._file.flush()


def truncate_log(path: Path, step: int) -> None:
    """Drop log records past ``step`` (written after the checkpoint we resume from), so the
    log of a resumed run reads like the log of an uninterrupted one."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line).get("step", 0)) <= step:
                kept.append(line)
        except (ValueError, AttributeError):
            continue
    atomic_write_text(path, "".join(k + "\n" for k in kept))


def flat(record: dict[str, Any]) -> dict[str, float]:
    """A log record for trackers: nested dicts become ``outer/inner`` keys, numbers only."""
    out: dict[str, float] = {}
    for k, v in record.items():
        if isinstance(v, dict):
            out.update({f"{k}/{kk}": vv for kk, vv in v.items()})
        elif isinstance(v, int | float):
            out[k] = v
    return out


def flat_config(config: RunConfig) -> dict[str, Any]:
    """The run's configuration for trackers: ``section.key`` -> a scalar."""
    out: dict[str, Any] = {}
    for section, values in config.as_dict().items():
        for k, v in values.items():
            out[f"{section}.{k}"] = v if isinstance(v, int | float | str | bool) else str(v)
    return out


__all__ = ["LOG_FILE", "LOG_FLUSH_S", "PLAIN_PROGRESS_EVERY_S", "StepLogger", "flat",
           "flat_config", "truncate_log"]
