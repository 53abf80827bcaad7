"""Hugging Face Accelerate, set up for the training loop, and the two places it needs help.

Why a module of its own: the loop is device-agnostic because devices, DDP and mixed
precision are Accelerate's (``accelerate launch`` / ``accelerate config``); the loop has no
device-specific branch. What Accelerate does not do for us lives here, each with its reason:

* **CPU launches** (:func:`cpu_launch`, :func:`check_accelerator`): on a machine without
  GPUs, Accelerate 1.x needs ``cpu=True`` to see a multi-process launch at all; without it
  the processes silently train apart. We set it, and refuse an Accelerator that disagrees
  with ``torch.distributed`` about the process count.
* **Trackers** (:func:`check_trackers`): an unknown or uninstalled tracker is an error up
  front, not a warning lost in a long run's output.
* **fp16 on the CPU** (:func:`check_mixed_precision`): Accelerate accepts it and then
  neither autocasts nor scales, so the run would train in float32 while recording fp16.
* **Start-up** (:func:`prepare`, :func:`unwrap_model`): ``Accelerator.prepare`` imports
  ``torch.distributed.tensor`` (and sympy) to look for DTensor parameters, and
  ``Accelerator.unwrap_model`` imports ``torch._dynamo`` and FSDP to look for compiled
  modules: about 1.5 s before the first step, more than an ``import torch``. Neither can be
  found before its module is imported, so in the modes whose only wrapper is DDP the
  harness skips the look.
* **The update** (:class:`OptimizerStep`): backward, gradient clipping, the optimizer step and
  ``zero_grad``, through the torch optimizer directly where Accelerate's wrappers would only
  forward to it (they cost measurable time a step on small models).
* **A step the model owns** (:class:`ModelOwnedStep`, :class:`OptimizerSet`): several named
  optimizers (a GAN's discriminator and generator), each update still through Accelerate
  (backward with the fp16 scaler, clipping, autocast) and with gradients averaged over
  processes, and one checkpointable optimizer state for all of them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from harness.configuration.run_config import MIXED_PRECISION, TrainConfig
from harness.errors import ConfigError, HarnessError
from harness.training.optim import build_optimizer


def cpu_launch() -> bool:
    """True when a launcher started several processes (``WORLD_SIZE`` > 1) on a machine with
    no GPU-like device. Accelerate then needs ``cpu=True`` to pick its MULTI_CPU (gloo) mode:
    without it, Accelerate 1.x initialises the process group but reports a *single*
    process and never wraps the model in DDP, so the processes would silently diverge.
    Pass it to the first ``PartialState``/``Accelerator`` of the process:
    ``PartialState(cpu=cpu_launch())``."""
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in {"1", "true", "yes"}:
        return True  # also one process: Accelerator honours it, the first PartialState must agree
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


def forget_other_precision(mixed_precision: str) -> None:
    """Let a second run in the same Python process (the API, tests) ask for another mixed
    precision: Accelerate keeps one per process and would refuse it.

    Accelerate has no public call for this, so this is the one place the host touches its
    private state (``AcceleratorState._shared_state`` / ``_reset_state``), guarded: on an
    Accelerate without them nothing is reset and Accelerate's own error names the clash.
    The process state (devices, process group) is kept."""
    from accelerate.state import AcceleratorState

    shared = getattr(AcceleratorState, "_shared_state", None)
    reset = getattr(AcceleratorState, "_reset_state", None)
    if not isinstance(shared, dict) or not callable(reset):
        return
    current = shared.get("_mixed_precision")
    if current is not None and current != mixed_precision:
        reset(reset_partial_state=False)


def check_mixed_precision(mixed_precision: str, device: Any) -> None:
    """Refuse ``fp16`` on a CPU device before any work: Accelerate 1.x turns fp16 on only off
    the CPU, and on it trains in float32 without a word (measured: a dcgan's weights after 3
    fp16 steps on the CPU are bit-identical to ``no``'s), while the run would record fp16."""
    if mixed_precision == "fp16" and torch.device(device).type == "cpu":
        raise ConfigError(
            "train.mixed_precision=fp16 needs a GPU: on the CPU Accelerate would train in "
            "float32 and the run record fp16. Use train.mixed_precision=bf16 (autocast on the "
            "CPU) or no, or run on a GPU")


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


def check_accelerator(acc: Any) -> None:
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
                "Accelerator with cpu=True (harness.training.loop.make_accelerator does), or launch "
                "with ACCELERATE_USE_CPU=1"
            )


#: Accelerate's modes whose only model wrapper is DDP (or DataParallel)
_DDP_ONLY_MODES = ("NO", "MULTI_CPU", "MULTI_GPU", "MULTI_XPU")


def _ddp_only(acc: Any) -> bool:
    return str(getattr(acc.distributed_type, "value", acc.distributed_type)) in _DDP_ONLY_MODES


def prepare(acc: Any, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Any:
    """``acc.prepare(model, optimizer)``, without importing ``torch.distributed.tensor`` where
    that cannot change the answer: Accelerate imports it to skip device placement for a model
    with DTensor parameters, and while it is not imported no parameter can be a DTensor. The
    placement passed is then the one Accelerate would choose (``acc.device_placement``)."""
    placement = None
    if _ddp_only(acc) and "torch.distributed.tensor" not in sys.modules:
        placement = [acc.device_placement, acc.device_placement]
    return acc.prepare(model, optimizer, device_placement=placement)


def unwrap_model(acc: Any, model: torch.nn.Module, *,
                 keep_fp32_wrapper: bool = True) -> torch.nn.Module:
    """``acc.unwrap_model(model, keep_fp32_wrapper)``, without importing ``torch._dynamo``
    where that cannot change the answer: while ``torch._dynamo`` is not imported no module
    can be compiled, so in the modes whose only wrapper is DDP unwrapping is taking
    ``.module``. Everything else (a compiled model, FSDP, DeepSpeed, removing the mixed
    precision forward wrapper) goes to Accelerate."""
    if "torch._dynamo" in sys.modules or not _ddp_only(acc):
        return acc.unwrap_model(model, keep_fp32_wrapper=keep_fp32_wrapper)
    while isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        model = model.module
    if not keep_fp32_wrapper and "_original_forward" in model.__dict__:
        return acc.unwrap_model(model, keep_fp32_wrapper=False)
    return model


class OptimizerStep:
    """``backward(loss)``, ``step()``, ``zero_grad()`` for a model and optimizer that went
    through ``accelerator.prepare``.

    ``AcceleratedOptimizer.step`` checks for an optional package with importlib on every call
    (~0.1-0.3 ms a step, measurable on small models), its ``zero_grad`` inspects a signature,
    and ``Accelerator.backward`` divides the loss by the accumulation steps (1 here: this loop
    never accumulates), an extra autograd node. Where they would only forward to torch (no
    fp16 scaler, no XLA/DeepSpeed/Megatron, no gradient accumulation) the torch optimizer and
    ``Tensor.backward`` are called directly; otherwise Accelerate's. ``step()`` clips the
    gradient norm first when ``grad_clip`` is set (through Accelerate, which unscales fp16
    gradients before clipping).

    ``applied`` counts the optimizer steps taken and ``updating`` is true while one is being
    applied: an interrupt that lands mid-update must not be saved as a whole state
    (:meth:`settled`).
    """

    def __init__(self, accelerator: Any, model: torch.nn.Module, optimizer: Any,
                 grad_clip: float | None) -> None:
        from accelerate.utils import DistributedType

        #: the plain torch optimizer (unwrapped): checkpoints save its state
        self.optimizer: torch.optim.Optimizer = getattr(optimizer, "optimizer", optimizer)
        acc = accelerator
        self.direct = (getattr(acc, "scaler", None) is None
                       and acc.distributed_type not in (DistributedType.XLA,
                                                        DistributedType.DEEPSPEED,
                                                        DistributedType.MEGATRON_LM)
                       and getattr(acc, "gradient_accumulation_steps", 1) == 1)
        owner = self.optimizer if self.direct else optimizer
        self.backward: Callable[[torch.Tensor], Any] = (
            torch.Tensor.backward if self.direct else acc.backward)
        self._step: Callable[[], Any] = owner.step
        self._zero_grad: Callable[..., Any] = owner.zero_grad
        self._clip = grad_clip
        self._clip_fn = acc.clip_grad_norm_
        self._model = model
        self.applied = 0
        self.updating = False

    def run(self, x: torch.Tensor, ctx: Any, step: int, guard: Any) -> dict[str, float]:
        """One training step of the model's loss (``step``: 1-based, for a NaN's message):
        forward, the check before anything is applied, backward, :meth:`step`; returns the
        loss parts as floats. The same call as :meth:`ModelOwnedStep.run`."""
        losses = self._model(x, ctx)
        values = guard.check(losses, step)  # raises before anything is applied
        self.backward(losses["total"])
        self.step()
        return values  # type: ignore[no-any-return]

    def step(self) -> None:
        """Clip (if ``grad_clip``), then apply the optimizer step."""
        if self._clip is not None:
            self._clip_fn(self._model.parameters(), self._clip)
        self.updating = True
        self._step()
        self.applied += 1
        self.updating = False

    def zero_grad(self) -> None:
        self._zero_grad(set_to_none=True)

    def settled(self, steps: int) -> bool:
        """True when exactly ``steps`` updates were applied and none is under way: the
        weights and optimizer state are those after the loop's ``steps`` steps."""
        return not self.updating and self.applied == steps

    def lr(self) -> Any:
        """The first parameter group's learning rate (what the log records)."""
        return self.optimizer.param_groups[0]["lr"]


class OptimizerSet:
    """Several named torch optimizers seen as one by checkpoints and the log: its
    ``state_dict`` is one optimizer state in torch's format (the optimizers' param groups in
    order, each tagged with its ``"optimizer"`` name, their states numbered on), so the
    checkpoint files and a resume's ``train.lr`` change work as for one optimizer."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        self.optimizers = dict(optimizers)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for opt in self.optimizers.values() for g in opt.param_groups]

    def state_dict(self) -> dict[str, Any]:
        state: dict[int, Any] = {}
        groups: list[dict[str, Any]] = []
        offset = 0
        for name, opt in self.optimizers.items():
            sd = opt.state_dict()
            count = sum(len(g["params"]) for g in sd["param_groups"])
            state.update({offset + int(i): v for i, v in sd["state"].items()})
            groups += [{**g, "params": [offset + int(i) for i in g["params"]], "optimizer": name}
                       for g in sd["param_groups"]]
            offset += count
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = list(state_dict["param_groups"])
        offset = 0
        for name, opt in self.optimizers.items():
            mine = [g for g in groups if g.get("optimizer") == name]
            if len(mine) != len(opt.param_groups):
                raise ValueError(f"the saved state has {len(mine)} param groups for optimizer "
                                 f"'{name}', which has {len(opt.param_groups)}")
            count = sum(len(g["params"]) for g in opt.param_groups)
            opt.load_state_dict({
                "state": {int(i) - offset: v for i, v in state_dict["state"].items()
                          if offset <= int(i) < offset + count},
                "param_groups": [{k: v for k, v in g.items() if k != "optimizer"} | {
                    "params": [int(i) - offset for i in g["params"]]} for g in mine]})
            offset += count


class ModelOwnedStep:
    """The update for a model that owns its step (:class:`harness.api.OwnsTrainingStep`):
    :meth:`run` calls ``model.training_step(x, ctx, update)``, where ``update(name, loss)``
    checks the loss (NaN stops the run before this update), back-propagates it through
    Accelerate (the fp16 scaler; outside autocast), averages every gradient over processes
    (the model's losses are local means), clips (``grad_clip``), steps optimizer ``name`` and
    zeroes every gradient of the model (a generator's loss also reaches the discriminator).
    The model is not wrapped in DDP: the averaging here replaces it. Same interface as
    :class:`OptimizerStep` for the loop, the log and checkpoints (``optimizer`` is the
    :class:`OptimizerSet`)."""

    def __init__(self, accelerator: Any, model: torch.nn.Module, optimizers: dict[str, Any],
                 grad_clip: float | None) -> None:
        self.acc, self._model, self._clip = accelerator, model, grad_clip
        self.prepared = dict(optimizers)
        self.optimizer = OptimizerSet({name: getattr(o, "optimizer", o)
                                       for name, o in self.prepared.items()})
        self._params = {name: [p for g in opt.param_groups for p in g["params"]]
                        for name, opt in self.optimizer.optimizers.items()}
        self.applied = 0
        self.updating = False

    def run(self, x: torch.Tensor, ctx: Any, step: int, guard: Any) -> dict[str, float]:
        """One step of the model's own (``step``: 1-based, for a NaN's message); returns
        its loss parts as floats."""
        from harness.distributed import is_distributed, world_size

        acc, device_type = self.acc, torch.device(self.acc.device).type

        def update(name: str, loss: torch.Tensor) -> None:
            if name not in self.prepared:
                raise HarnessError(f"training_step asked to step optimizer '{name}'; "
                                   f"configure_optimizers made {', '.join(self.prepared)}")
            guard.check_update(name, loss, step)
            with torch.autocast(device_type, enabled=False):
                acc.backward(loss)
            params = self._params[name]
            if is_distributed():
                import torch.distributed as dist

                n = world_size()
                for param in params:
                    if param.grad is not None:
                        dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
                        param.grad.div_(n)
            if self._clip is not None:
                acc.clip_grad_norm_(params, self._clip)
            self.prepared[name].step()
            self._model.zero_grad(set_to_none=True)

        self.updating = True
        with acc.autocast():
            parts = self._model.training_step(x, ctx, update)  # type: ignore[operator]
        if is_distributed() and isinstance(parts, dict):  # the log shows global-batch means
            from harness.distributed import all_reduce_sum

            parts = {k: all_reduce_sum(v.detach().float().reshape(())) / world_size()
                     if isinstance(v, torch.Tensor) else v for k, v in parts.items()}
        values = guard.check_parts(parts, step)
        self.applied += 1
        self.updating = False
        return values  # type: ignore[no-any-return]

    def zero_grad(self) -> None:
        self._model.zero_grad(set_to_none=True)

    def settled(self, steps: int) -> bool:
        return not self.updating and self.applied == steps

    def lr(self) -> Any:
        return self.optimizer.param_groups[0]["lr"]


def prepare_update(acc: Any, model: torch.nn.Module, cfg: TrainConfig
                   ) -> tuple[torch.nn.Module, OptimizerStep | ModelOwnedStep]:
    """The model as Accelerate prepared it, and how a step updates it: the model's own
    optimizers and step when it owns them (a GAN, a diffusion model with EMA; not wrapped in
    DDP), else the optimizer ``train.optimizer`` names, on its loss."""

    if callable(getattr(model, "training_step", None)):
        model = model.to(acc.device)
        optimizers = model_optimizers(model, cfg)
        prepared = acc.prepare(*optimizers.values())
        prepared = prepared if isinstance(prepared, (tuple, list)) else (prepared,)
        return model, ModelOwnedStep(acc, model, dict(zip(optimizers, prepared, strict=True)),
                                     cfg.grad_clip)
    model, optimizer = prepare(acc, model, build_optimizer(model.parameters(), cfg))
    return model, OptimizerStep(acc, model, optimizer, cfg.grad_clip)


def model_optimizers(model: Any, cfg: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    """``model.configure_optimizers(cfg)``, checked: a non-empty dict of torch optimizers on
    disjoint parameters of the model (what else would update a weight twice a step, or
    never save its state). Raises :class:`ConfigError` naming what is wrong."""
    optimizers = model.configure_optimizers(cfg)
    if not isinstance(optimizers, dict) or not optimizers or not all(
            isinstance(k, str) and isinstance(v, torch.optim.Optimizer)
            for k, v in optimizers.items()):
        raise ConfigError(f"{type(model).__name__}.configure_optimizers must return a non-empty "
                          f"dict of name: torch.optim.Optimizer, got {optimizers!r:.200}")
    seen: set[int] = set()
    for name, opt in optimizers.items():
        ids = {id(p) for g in opt.param_groups for p in g["params"]}
        if ids & seen:
            raise ConfigError(f"{type(model).__name__}.configure_optimizers: optimizer '{name}' "
                              "shares parameters with another one; give each its own")
        seen |= ids
    return optimizers


__all__ = ["MIXED_PRECISION", "ModelOwnedStep", "OptimizerSet", "OptimizerStep",
           "check_accelerator", "check_mixed_precision", "check_trackers", "cpu_launch",
           "make_accelerator", "model_optimizers", "prepare", "prepare_update", "unwrap_model"]
