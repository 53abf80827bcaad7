"""The one training loop: any :class:`harness.api.GenerativeModel`, on Hugging Face Accelerate.

What the loop promises, and how:

* **Same result whatever the number of processes.** ``train.batch_size`` is the *global*
  batch. Each epoch's order is one permutation drawn from a generator seeded by
  ``(seed, epoch)``; a global batch is ``batch_size`` consecutive indices of it, and process
  ``r`` of ``N`` takes the contiguous slice ``[r*B/N, (r+1)*B/N)``. Gathering in rank order
  (:meth:`StepContext.gather`) therefore rebuilds exactly the batch one process would see.
  The last partial batch of an epoch is dropped, so an SVD never sees fewer than B columns.
  Models compute the *global* loss on every process (see :mod:`harness.distributed`), and
  their noise comes from :class:`StepContext`'s generator seeded by ``(seed, step)``.
* **Resumable bit for bit.** The data position follows from the step alone, noise from the
  step, and a checkpoint (:mod:`harness.checkpoint`) holds weights, optimizer state, step and
  every process's RNG states; ``resume=True`` continues from the newest one.
* **Fails loudly on NaN/inf.** Every loss part is checked every step *before* the update is
  applied (the parts are identical on all processes, so all stop together); the run raises
  :class:`harness.errors.NonFiniteLoss` naming the step, the part and the last good
  checkpoint, and writes nothing more.
* **Ctrl-C saves.** SIGINT/SIGTERM set a flag that the processes agree on at the next step
  boundary (so they all stop at the same step), a checkpoint is written, and
  ``KeyboardInterrupt`` is raised (the CLI exits 130). A second Ctrl-C stops at once.
* **Device-agnostic.** Devices, DDP and mixed precision are Accelerate's
  (``accelerate launch`` / ``accelerate config``); the loop itself has no device-specific
  branch (CUDA only turns on pinned memory, and :func:`cpu_launch` fixes CPU launches).

"Same" means within float tolerance: one process and N processes sum in different orders, so
results agree to rounding at first; over a long run the trajectories can drift apart (the SVD
gradient of the rrae family amplifies rounding differences), as two machines would.

The loop's own per-step cost is one host sync (reading the loss parts, needed for the NaN
check), a flag all-reduce when there are several processes, and bookkeeping; see
``benchmarks/bench_overhead.py`` for its measured overhead against a bare PyTorch loop.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler
from torch.utils.data._utils.collate import default_collate

from . import checkpoint as ckpt
from .api import DataSplits, StepContext
from .compile import maybe_compile
from .config import RunConfig, TrainConfig
from .data import make_loader
from .errors import ConfigError, HarnessError, NonFiniteLoss
from .resources import peak_memory

OPTIMIZERS = ("adabelief", "adam", "adamw")
MIXED_PRECISION = ("no", "bf16", "fp16")
LOG_FILE = "log.jsonl"
CHECKPOINT_DIR = "checkpoints"
#: seconds between plain progress lines on stderr when it is not a terminal
PLAIN_PROGRESS_EVERY_S = 60.0
#: seconds between flushes of the JSON-lines log (also flushed at checkpoints and at the end)
LOG_FLUSH_S = 5.0


# ------------------------------------------------------------------------------------ seeds
def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device). Call it before building the model, on
    every process, so the initial weights are identical everywhere (DDP would broadcast rank
    0's anyway, but the one-process run must start from the same weights as the N-process one).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds CUDA (and other accelerators) too


# ------------------------------------------------------------------------------- optimizer
def build_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: TrainConfig
) -> torch.optim.Optimizer:
    """The optimizer ``train.optimizer`` names.

    ``adabelief`` is ``pytorch_optimizer.AdaBelief`` set to be the plain algorithm of the
    paper, the same update as the reference's ``optax.adabelief(b1=0.9, b2=0.999, eps=1e-16,
    eps_root=1e-16)``: m = b1 m + (1-b1) g; s = b2 s + (1-b2)(g-m)^2 + eps;
    p -= lr * m_hat / (sqrt(s_hat) + eps) with Adam's bias corrections. The flags set are
    the ones whose library defaults are not that algorithm or could change under us:
    ``rectify=False`` (no RAdam-style warm-up), ``ams_bound=False``, ``weight_decay`` from the
    config (0 by default, the paper's) with ``weight_decouple=True`` so a non-zero value means
    AdamW-style decay, ``fixed_decay=False``, ``maximize=False``; eps 1e-16, betas (0.9, 0.999).
    ``tests/test_train.py`` checks the update against that formula step by step.
    """
    params = list(params)
    name = cfg.optimizer.lower()
    if name == "adabelief":
        from pytorch_optimizer import AdaBelief

        return AdaBelief(
            params,
            lr=cfg.lr,
            betas=(0.9, 0.999),
            eps=1e-16,
            weight_decay=cfg.weight_decay,
            weight_decouple=True,
            fixed_decay=False,
            rectify=False,
            ams_bound=False,
            maximize=False,
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ConfigError(
        f"train.optimizer '{cfg.optimizer}' is not known; valid: {', '.join(OPTIMIZERS)}"
    )


# ------------------------------------------------------------------------------ data order
def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of epoch ``epoch``: the same on every process and for every process count."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_033 + epoch * 7_919 + 12_345) % (2**63 - 1))
    return torch.randperm(n, generator=g)


class ShardedBatchSampler(Sampler[list[int]]):
    """Yields this process's share of global batches ``start_step .. total_steps - 1``.

    Global step ``s`` is batch ``s % batches_per_epoch`` of epoch ``s // batches_per_epoch``;
    process ``rank`` gets the contiguous slice ``[rank*B/N, (rank+1)*B/N)`` of it, so the
    processes' slices in rank order are exactly the one-process batch.
    """

    def __init__(self, n: int, batch_size: int, world_size: int, rank: int, *, seed: int,
                 start_step: int, total_steps: int) -> None:
        self.n = n
        self.batch_size = batch_size
        self.per_process = batch_size // world_size
        self.rank = rank
        self.seed = seed
        self.start_step = start_step
        self.total_steps = total_steps
        self.batches_per_epoch = n // batch_size

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def __iter__(self) -> Iterator[list[int]]:
        bpe = self.batches_per_epoch
        lo = self.rank * self.per_process
        perm: list[int] = []
        epoch = -1
        for step in range(self.start_step, self.total_steps):
            if step // bpe != epoch:
                epoch = step // bpe
                perm = epoch_permutation(self.n, self.seed, epoch).tolist()
            start = (step % bpe) * self.batch_size + lo
            yield perm[start : start + self.per_process]


class _CalibrationSampler(Sampler[list[int]]):
    """The whole training set once, in order: global batches of ``batch_size`` consecutive
    indices (the last one smaller), each split over the processes in rank order (sizes
    differing by at most one). Every process yields the same number of batches, so collective
    calls inside ``calibrate`` line up; a process may get an empty last batch."""

    def __init__(self, n: int, batch_size: int, world_size: int, rank: int) -> None:
        self.n, self.batch_size, self.world, self.rank = n, batch_size, world_size, rank

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(0, self.n, self.batch_size):
            m = min(self.batch_size, self.n - start)
            base, extra = divmod(m, self.world)
            lo = start + self.rank * base + min(self.rank, extra)
            size = base + (1 if self.rank < extra else 0)
            yield list(range(lo, lo + size))


def _images(batch: Any) -> torch.Tensor:
    """The image tensor of a collated ``(image, label)`` batch (or a bare tensor batch)."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, list | tuple):
        return batch[0]
    if isinstance(batch, dict):
        return batch["image"]
    raise HarnessError(f"a training batch must be (image, label) or a tensor, got {type(batch)}")


# -------------------------------------------------------------------------------- results
@dataclass
class TrainResult:
    """What :func:`train` returns. Every field but ``model`` is JSON-able (it goes into the
    run's metrics.json)."""

    steps: int  # optimizer steps done in total (including those before a resume)
    start_step: int  # where this call started (0, or the resumed checkpoint's step)
    total_steps: int  # the planned number of steps
    epochs: float  # passes over the training set done in total
    losses: dict[str, float]  # the loss parts of the last step
    wall_time: float  # seconds spent in the training loop by this call
    samples_per_s: float  # global samples per second in this call's loop
    data_wait: float  # share of the loop's time spent waiting for a batch
    calibration_time: float  # seconds spent in model.calibrate
    world_size: int
    checkpoint: str | None  # the last checkpoint written (or resumed from)
    model: Any = field(default=None, repr=False)  # the unwrapped, trained, calibrated model


# ------------------------------------------------------------------------------- plumbing
class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag read at step boundaries (a second Ctrl-C raises at
    once). Installed only in the main thread, where Python allows signal handlers."""

    def __init__(self) -> None:
        self.flag = False
        self.signal_name = ""
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.flag and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.flag = True
        self.signal_name = signal.Signals(signum).name

    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return True

    def uninstall(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


class _Window:
    """Sums over the steps since the last log record."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.sums: dict[str, float] = {}
        self.wait = 0.0
        self.t0 = time.perf_counter()

    def add(self, values: dict[str, float], wait: float) -> None:
        self.steps += 1
        self.wait += wait
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v


def _loss_values(losses: dict[str, torch.Tensor]) -> dict[str, float]:
    """All loss parts as floats with a single device-to-host copy."""
    if not isinstance(losses, dict) or "total" not in losses:
        raise HarnessError(
            "a model's forward(x, ctx) must return a dict of scalar tensors with a 'total' "
            f"entry, got {type(losses).__name__}"
            + (f" with keys {sorted(losses)}" if isinstance(losses, dict) else "")
        )
    names = list(losses)
    parts = [losses[k] for k in names]
    for name, part in zip(names, parts, strict=True):
        if not isinstance(part, torch.Tensor) or part.numel() != 1:
            raise HarnessError(
                f"loss part '{name}' must be a scalar tensor, got "
                f"{tuple(part.shape) if isinstance(part, torch.Tensor) else type(part).__name__}"
            )
    # one stack (it promotes mixed dtypes) and one copy to the host for all parts
    values = torch.stack([p.detach().reshape(()) for p in parts]).tolist()
    return dict(zip(names, values, strict=True))


def _first_non_finite(values: dict[str, float]) -> str | None:
    # name a specific part before "total" (which is non-finite whenever a part is)
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if not bad:
        return None
    parts = [k for k in bad if k != "total"]
    return parts[0] if parts else bad[0]


def _plan(cfg: TrainConfig, n_train: int, world: int, min_batch: int) -> tuple[int, int]:
    """Validate the batch against the data, the processes and the model; (steps, per epoch)."""
    b = cfg.batch_size
    if b < 1:
        raise ConfigError(f"train.batch_size must be positive, got {b}")
    if b % world:
        raise ConfigError(
            f"train.batch_size={b} is the global batch and must split evenly over the {world} "
            f"processes; set train.batch_size to a multiple of {world} (or change the number "
            "of processes)"
        )
    if b < min_batch:
        raise ConfigError(
            f"train.batch_size={b} is smaller than the model's minimum batch {min_batch} (for "
            "the rrae family, k: the truncated SVD needs at least k columns); raise "
            "train.batch_size or lower model.k"
        )
    if n_train < b:
        raise ConfigError(
            f"the training set has {n_train} images, fewer than one batch "
            f"(train.batch_size={b}); lower train.batch_size or raise data.n_train"
        )
    bpe = n_train // b
    if cfg.steps is not None:
        total = cfg.steps
    elif cfg.epochs is not None:
        total = cfg.epochs * bpe
    else:
        total = TrainConfig.DEFAULT_STEPS
    if total < 0:
        raise ConfigError(f"train.steps/train.epochs must not be negative (got {total} steps)")
    return total, bpe


def _check_options(cfg: TrainConfig) -> None:
    if cfg.optimizer.lower() not in OPTIMIZERS:
        raise ConfigError(
            f"train.optimizer '{cfg.optimizer}' is not known; valid: {', '.join(OPTIMIZERS)}"
        )
    if cfg.mixed_precision not in MIXED_PRECISION:
        raise ConfigError(
            f"train.mixed_precision '{cfg.mixed_precision}' is not known; valid: "
            f"{', '.join(MIXED_PRECISION)}"
        )
    for key in ("log_every", "checkpoint_every"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"train.{key} must be >= 0 (0 turns it off)")
    if cfg.grad_clip is not None and cfg.grad_clip <= 0:
        raise ConfigError("train.grad_clip must be positive, or unset to turn clipping off")


def cpu_launch() -> bool:
    """True when a launcher started several processes (``WORLD_SIZE`` > 1) on a machine with
    no GPU-like device. Accelerate then needs ``cpu=True`` to pick its MULTI_CPU (gloo) mode:
    without it, Accelerate 1.x initialises the process group but reports a *single*
    process and never wraps the model in DDP, so the processes would silently diverge.
    Pass it to the first ``PartialState``/``Accelerator`` of the process:
    ``PartialState(cpu=cpu_launch())``. Also True whenever ``ACCELERATE_USE_CPU`` asks for
    the CPU (``accelerate launch --cpu``), one process included: Accelerator honours it, so
    the first PartialState must agree or Accelerate refuses the mismatch on a GPU machine."""
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in {"1", "true", "yes"}:
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    has_xpu = hasattr(torch, "xpu") and torch.xpu.is_available()
    return not (torch.cuda.is_available() or has_xpu)


def make_accelerator(cfg: TrainConfig, run_dir: str | Path | None = None) -> Any:
    """The ``accelerate.Accelerator`` for ``train``: mixed precision and trackers from the
    ``train`` section, CPU multi-process launches handled (see :func:`cpu_launch`)."""
    from accelerate import Accelerator

    check_trackers(cfg.trackers)
    return Accelerator(
        cpu=cpu_launch(),
        mixed_precision=cfg.mixed_precision,
        log_with=cfg.trackers or None,
        project_dir=str(run_dir) if run_dir is not None else None,
    )


def check_trackers(names: list[str]) -> None:
    """Refuse unknown or uninstalled trackers up front (Accelerate would only warn and train
    without them, which is easy to miss in a long run's log)."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    available = {str(getattr(t, "value", t)) for t in get_available_trackers()}
    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            raise ConfigError(
                f"train.trackers: '{name}' is not a tracker Accelerate knows; valid: "
                f"{', '.join(sorted(LOGGER_TYPE_TO_CLASS))}"
            )
        if name not in available:
            raise ConfigError(
                f"train.trackers: '{name}' is not installed (pip install {name}), or remove "
                "it from train.trackers"
            )


def _check_accelerator(acc: Any) -> None:
    """Refuse an Accelerator that disagrees with torch.distributed about the process count
    (the CPU pitfall described in :func:`cpu_launch`): training would run without DDP."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        n = dist.get_world_size()
        if n != acc.num_processes:
            raise HarnessError(
                f"torch.distributed runs {n} processes but Accelerate sees "
                f"{acc.num_processes} (mode {acc.distributed_type}); gradients would not be "
                "synchronised. On a machine without GPUs, create the first PartialState/"
                "Accelerator with cpu=True (harness.train.make_accelerator does), or launch "
                "with ACCELERATE_USE_CPU=1"
            )


def _truncate_log(path: Path, step: int) -> None:
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
    ckpt.write_text_atomic(path, "".join(k + "\n" for k in kept))


def _flat(record: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in record.items():
        if isinstance(v, dict):
            out.update({f"{k}/{kk}": vv for kk, vv in v.items()})
        elif isinstance(v, int | float):
            out[k] = v
    return out


def _flat_config(config: RunConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section, values in config.as_dict().items():
        for k, v in values.items():
            out[f"{section}.{k}"] = v if isinstance(v, int | float | str | bool) else str(v)
    return out


# ------------------------------------------------------------------------------ the loop
def train(
    model: torch.nn.Module,
    splits: DataSplits,
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    accelerator: Any = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``splits.train`` as ``config.train`` says, then calibrate it.

    Call it on every process (it is collective). ``accelerator`` is an
    ``accelerate.Accelerator`` built from ``config.train`` (one is made when None); the model
    must have been built after :func:`seed_everything`. Log records go to
    ``run_dir/log.jsonl`` and ``on_log`` (main process only); checkpoints to
    ``run_dir/checkpoints/``. ``resume=True`` continues from the newest checkpoint and
    refuses when there is none. Raises :class:`NonFiniteLoss` on a NaN/inf loss part and
    re-raises ``KeyboardInterrupt`` after saving a checkpoint on Ctrl-C.
    """
    cfg = config.train
    run_dir = Path(run_dir)
    _check_options(cfg)
    own_accelerator = accelerator is None
    acc = accelerator if accelerator is not None else make_accelerator(cfg, run_dir)
    _check_accelerator(acc)
    world, rank, main = acc.num_processes, acc.process_index, acc.is_main_process
    device = acc.device
    n_train = len(splits.train)  # type: ignore[arg-type]  # map-style datasets are sized
    total, bpe = _plan(cfg, n_train, world, int(getattr(model, "min_batch_size", 1)))
    ckpt_root = run_dir / CHECKPOINT_DIR
    log_path = run_dir / LOG_FILE
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)

    # ---- resume: weights before prepare (DDP broadcasts rank 0's), the rest after
    start = 0
    resumed: Path | None = None
    if resume:
        resumed = ckpt.latest_checkpoint(ckpt_root)
        if resumed is None:
            raise ckpt.CheckpointError(
                f"nothing to resume: '{ckpt_root}' holds no complete checkpoint; run without "
                "--resume to start this run from scratch"
            )
        saved = ckpt.read_trainer_state(resumed)
        for key, current in (("seed", config.seed), ("batch_size", cfg.batch_size),
                         ("n_train", n_train)):
            if getattr(saved, key) != current:
                name = {"seed": "run.seed", "batch_size": "train.batch_size",
                        "n_train": "the training set size (data.n_train)"}[key]
                raise ckpt.CheckpointError(
                    f"cannot resume from '{resumed}': it was written with {name}="
                    f"{getattr(saved, key)}, this run has {current}; the data order would differ. "
                    "Resume with the run's saved config, or start a new run"
                )
        start = saved.step  # past ``total`` (steps lowered since): nothing left to train
        ckpt.load_model_weights(resumed, model)

    optimizer = build_optimizer(model.parameters(), cfg)
    model, optimizer = acc.prepare(model, optimizer)
    inner_opt = getattr(optimizer, "optimizer", optimizer)
    # AcceleratedOptimizer.step checks for an optional package with importlib on every call
    # (~0.1-0.3 ms a step, measurable on small models) and zero_grad inspects a signature;
    # where they would only forward to the torch optimizer (no fp16 scaler, no XLA, no
    # gradient accumulation: this loop never accumulates), call the torch optimizer itself.
    from accelerate.utils import DistributedType

    # Likewise Accelerator.backward divides the loss by the accumulation steps (1 here), an
    # extra autograd node: call backward() itself in the same cases.
    direct = (getattr(acc, "scaler", None) is None
              and acc.distributed_type not in (DistributedType.XLA, DistributedType.DEEPSPEED,
                                                DistributedType.MEGATRON_LM)
              and getattr(acc, "gradient_accumulation_steps", 1) == 1)
    step_fn = inner_opt.step if direct else optimizer.step
    zero_grad_fn = inner_opt.zero_grad if direct else optimizer.zero_grad

    def backward(loss: torch.Tensor) -> None:
        if direct:
            loss.backward()
        else:
            acc.backward(loss)
    unwrapped = acc.unwrap_model(model)
    maybe_compile(unwrapped, cfg, device)  # train.compile: networks compiled in place

    def barrier() -> None:
        acc.wait_for_everyone()

    if resumed is not None:
        ckpt.load_optimizer_state(resumed, inner_opt)
        scaler_state = ckpt.load_extra(resumed).get("scaler")
        if scaler_state and getattr(acc, "scaler", None) is not None:
            acc.scaler.load_state_dict(scaler_state)
        if not ckpt.load_rng_state(resumed, rank):
            print(f"harness: warning: checkpoint '{resumed}' has no RNG state for process "
                  f"{rank} (written by fewer processes); global RNG streams will differ",
                  file=sys.stderr)
        if main:
            _truncate_log(log_path, start)
    barrier()

    if cfg.trackers and not getattr(acc, "trackers", None):
        acc.init_trackers(project_name=run_dir.name or "harness", config=_flat_config(config))

    sampler = ShardedBatchSampler(n_train, cfg.batch_size, world, rank, seed=config.seed,
                                  start_step=start, total_steps=total)
    # a generator of our own, so making the iterator does not draw from the global RNG
    loader = make_loader(splits.train, sampler, num_workers=cfg.num_workers,
                         pin_memory=device.type == "cuda", device=device,
                         generator=torch.Generator().manual_seed(config.seed))

    def state_at(step: int) -> ckpt.TrainerState:
        return ckpt.TrainerState(
            step=step, epoch=step // bpe, batch_in_epoch=step % bpe, batches_per_epoch=bpe,
            total_steps=total, seed=config.seed, batch_size=cfg.batch_size, n_train=n_train,
            world_size=world,
        )

    last_ckpt: str | None = str(resumed) if resumed is not None else None

    def save(step: int) -> None:
        nonlocal last_ckpt
        if log_file is not None:
            log_file.flush()
        extra: dict[str, Any] = {}
        if getattr(acc, "scaler", None) is not None:
            extra["scaler"] = acc.scaler.state_dict()
        path = ckpt.save_checkpoint(ckpt_root, model=unwrapped, optimizer=inner_opt,
                                    state=state_at(step), extra=extra, rank=rank,
                                    barrier=barrier)
        last_ckpt = str(path)

    # Buffered, flushed every LOG_FLUSH_S seconds, at each checkpoint and at the end: a write
    # syscall per record measurably cost ~0.3-1 ms on a virtualised disk. A killed run loses
    # at most those seconds of records, which resuming would rewrite anyway.
    log_file = open(log_path, "a") if main else None  # noqa: SIM115 - closed below
    last_flush = time.perf_counter()
    progress = None
    interactive = main and sys.stderr.isatty()
    if interactive:
        from tqdm.auto import tqdm

        progress = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True,
                        file=sys.stderr)

    stop = _StopRequest()
    stop.install()
    stop_flag = torch.zeros(1, device=device)
    step = start
    window = _Window()
    last_values: dict[str, float] = {}
    wait_total = 0.0
    updating = False
    next_plain = time.perf_counter() + PLAIN_PROGRESS_EVERY_S
    # hoisted out of the loop: it runs every step, and small models take ~0.5 ms a step
    clock, seed, clip = time.perf_counter, config.seed, cfg.grad_clip
    log_every, ckpt_every = cfg.log_every, cfg.checkpoint_every
    model.train()
    loop_t0 = time.perf_counter()
    try:
        batches = iter(loader)
        while step < total:
            t0 = clock()
            x = _images(next(batches)).to(device, non_blocking=True)
            wait = clock() - t0
            ctx = StepContext(step=step, seed=seed, device=device)
            losses = model(x, ctx)
            values = _loss_values(losses)
            bad = _first_non_finite(values)
            if bad is not None:
                raise _non_finite(step + 1, bad, values[bad], last_ckpt, log_file, bpe)
            backward(losses["total"])
            if clip is not None:
                acc.clip_grad_norm_(model.parameters(), clip)
            updating = True
            step_fn()
            step += 1
            updating = False
            zero_grad_fn(set_to_none=True)
            window.add(values, wait)
            wait_total += wait
            last_values = values

            if log_every and (step % log_every == 0 or step == total):
                now = clock()
                span = max(now - window.t0, 1e-12)
                record = {
                    "step": step,
                    "epoch": (step - 1) // bpe,
                    "loss": {k: v / window.steps for k, v in window.sums.items()},
                    "lr": inner_opt.param_groups[0]["lr"],
                    "samples_per_s": window.steps * cfg.batch_size / span,
                    "data_wait": window.wait / span,
                    "time": now - loop_t0,
                }
                record.update(peak_memory(device))  # peak_gpu_memory_mb (CUDA) / peak_rss_mb
                window.reset()
                if main:
                    log_file.write(json.dumps(record) + "\n")  # type: ignore[union-attr]
                    if now - last_flush >= LOG_FLUSH_S:
                        log_file.flush()  # type: ignore[union-attr]
                        last_flush = now
                    if on_log is not None:
                        on_log(record)
                    if cfg.trackers:
                        acc.log(_flat(record), step=step)
                    if progress is not None:
                        progress.set_postfix(
                            {k: f"{v:.4g}" for k, v in record["loss"].items()}
                            | {"samples/s": f"{record['samples_per_s']:.0f}"},
                            refresh=False,
                        )
                    elif now >= next_plain or step == total:
                        next_plain = now + PLAIN_PROGRESS_EVERY_S
                        parts = " ".join(f"{k}={v:.4g}" for k, v in record["loss"].items())
                        print(f"step {step}/{total} {parts} "
                              f"{record['samples_per_s']:.0f} samples/s", file=sys.stderr)
            if progress is not None:
                progress.update(1)
            if ckpt_every and step % ckpt_every == 0 and step < total:
                save(step)
            # agree on stopping at this step boundary (a signal may reach processes apart)
            if world > 1:
                stop_flag.fill_(1.0 if stop.flag else 0.0)
                stop_flag = acc.reduce(stop_flag, reduction="sum")
                stopping = bool(stop_flag.item() > 0)
            else:
                stopping = stop.flag
            if stopping:
                save(step)
                if main:
                    print(f"harness: interrupted ({stop.signal_name or 'signal'}) at step "
                          f"{step}/{total}; checkpoint saved to {last_ckpt}. Continue with "
                          "--resume", file=sys.stderr)
                raise KeyboardInterrupt
        if step > start or resumed is None:
            save(step)
    except KeyboardInterrupt:
        # a second Ctrl-C, or one that bypassed the handler: save only if the state is whole
        # and saving needs no other process (they may be anywhere in their step)
        if not stop.flag and not updating and world == 1 and step > start:
            save(step)
            print(f"harness: interrupted at step {step}/{total}; checkpoint saved to "
                  f"{last_ckpt}. Continue with --resume", file=sys.stderr)
        raise
    finally:
        stop.uninstall()
        if progress is not None:
            progress.close()
        if log_file is not None:
            log_file.close()
    loop_time = time.perf_counter() - loop_t0
    done = step - start

    # ---- calibration: every image of the training set exactly once over all processes
    unwrapped.eval()
    t_cal = time.perf_counter()
    calibrate = getattr(unwrapped, "calibrate", None)
    if callable(calibrate):
        per = max(1, cfg.batch_size // world)
        cal_loader = make_loader(splits.train,
                                 _CalibrationSampler(n_train, per * world, world, rank),
                                 num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                                 image_shape=splits.info.shape, device=device)
        ctx = StepContext(step=step, seed=config.seed, device=device)
        with torch.no_grad():
            calibrate((b.to(device, non_blocking=True) for b in cal_loader), ctx)
    barrier()
    cal_time = time.perf_counter() - t_cal

    if own_accelerator:
        acc.end_training()
    return TrainResult(
        steps=step,
        start_step=start,
        total_steps=total,
        epochs=step / bpe,
        losses=last_values,
        wall_time=loop_time,
        samples_per_s=done * cfg.batch_size / loop_time if done else 0.0,
        data_wait=wait_total / loop_time if done else 0.0,
        calibration_time=cal_time,
        world_size=world,
        checkpoint=last_ckpt,
        model=acc.unwrap_model(model, keep_fp32_wrapper=False),
    )


def _collate_images(shape: tuple[int, ...]) -> Callable[[list[Any]], torch.Tensor]:
    """Collate ``(image, label)`` items to the image batch; an empty batch (a process's share
    of the last calibration batch can be empty) becomes a (0, C, H, W) tensor."""

    def collate(items: list[Any]) -> torch.Tensor:
        if not items:
            return torch.empty((0, *shape))
        return _images(default_collate(items))

    return collate


def _non_finite(step: int, part: str, value: float, last_ckpt: str | None, log_file: Any,
                bpe: int) -> NonFiniteLoss:
    where = (f"the last good checkpoint is {last_ckpt} (continue from it with --resume, e.g. "
             "after lowering train.lr or setting train.grad_clip)"
             if last_ckpt else "no checkpoint had been written yet")
    message = (f"training stopped: loss part '{part}' is {value} at step {step} "
               f"(epoch {(step - 1) // bpe}); the update was not applied and nothing was "
               f"saved; {where}")
    if log_file is not None:
        log_file.write(json.dumps({"step": step, "event": "non_finite_loss", "part": part,
                                   "value": str(value), "checkpoint": last_ckpt}) + "\n")
    return NonFiniteLoss(message, step=step, part=part, value=value, checkpoint=last_ckpt)


__all__ = [
    "OPTIMIZERS",
    "ShardedBatchSampler",
    "TrainResult",
    "build_optimizer",
    "cpu_launch",
    "make_accelerator",
    "epoch_permutation",
    "seed_everything",
    "train",
]
