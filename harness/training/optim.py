"""The optimizers ``train.optimizer`` names.

Why a module of its own: the paper's optimizer is AdaBelief, and "AdaBelief" names several
algorithms depending on a library's flags; this is the one place that pins which one runs
(``tests/test_train.py`` checks it against the formula, and bit for bit against
pytorch-optimizer's ``AdaBelief`` set to the same algorithm).

Why AdaBelief is written here rather than imported: importing pytorch-optimizer imports
``torch.distributed.tensor`` and sympy (~0.7 s, half an ``import torch``), before the first
step of every run, for a dozen lines of tensor arithmetic.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from typing import Any

import torch

from harness.configuration.run_config import OPTIMIZERS, TrainConfig
from harness.errors import ConfigError


class AdaBelief(torch.optim.Optimizer):
    """The paper's AdaBelief: the update of ``optax.adabelief(b1, b2, eps, eps_root=eps)``.

    For each parameter p with gradient g, at step t (from 1)::

        m = b1 m + (1 - b1) g                     (m, s start at zero)
        s = b2 s + (1 - b2) (g - m)^2 + eps       (the belief: g's distance to the new mean)
        p -= lr * (m / (1 - b1^t)) / (sqrt(s) / sqrt(1 - b2^t) + eps)

    and, when ``weight_decay`` is non-zero, AdamW-style decoupled decay first:
    ``p *= 1 - lr * weight_decay``. No rectification (RAdam warm-up), no AMS bound.

    The operations, their order and the state's names (``exp_avg``, ``exp_avg_var``, the
    group's integer ``step``) are those of ``pytorch_optimizer.AdaBelief(rectify=False,
    ams_bound=False, weight_decouple=True, fixed_decay=False)`` (4.x), so its results are
    bit-identical to the runs trained with that class, and its checkpoints resume here.
    Real, dense parameters only (what the harness's models have).
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-16,
                 weight_decay: float = 0.0) -> None:
        if not (math.isfinite(lr) and lr >= 0):
            raise ValueError(f"learning rate must be a finite number >= 0, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        if not (eps >= 0 and weight_decay >= 0):
            raise ValueError(f"eps and weight_decay must be >= 0, got {eps}, {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            group["step"] = group.get("step", 0) + 1
            t, lr, eps = group["step"], group["lr"], group["eps"]
            beta1, beta2 = group["betas"]
            step_size = lr / (1.0 - math.pow(beta1, t))
            bias_correction2_sqrt = math.sqrt(1.0 - math.pow(beta2, t))
            for params in self._buckets(group):
                grads = [p.grad for p in params if p.grad is not None]  # _buckets: all have one
                states = [self._state_of(p) for p in params]
                exp_avgs = [s["exp_avg"] for s in states]
                exp_avg_vars = [s["exp_avg_var"] for s in states]
                if group["weight_decay"] != 0.0:
                    torch._foreach_mul_(params, 1.0 - group["weight_decay"] * lr)
                torch._foreach_lerp_(exp_avgs, grads, weight=1.0 - beta1)
                residuals = torch._foreach_sub(grads, exp_avgs)  # type: ignore[arg-type]  # torch's stub misses list - list
                torch._foreach_mul_(exp_avg_vars, beta2)
                torch._foreach_addcmul_(exp_avg_vars, residuals, residuals, value=1.0 - beta2)
                torch._foreach_add_(exp_avg_vars, eps)
                denominators = torch._foreach_sqrt(exp_avg_vars)
                torch._foreach_div_(denominators, bias_correction2_sqrt)
                torch._foreach_add_(denominators, eps)
                torch._foreach_addcdiv_(params, exp_avgs, denominators, value=-step_size)
        return loss

    @staticmethod
    def _buckets(group: dict[str, Any]) -> list[list[torch.Tensor]]:
        """The group's parameters that have a gradient, by device and dtype (one list per
        pair, in order of first appearance: what a fused ``torch._foreach_*`` call takes)."""
        buckets: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse or p.is_complex():
                raise RuntimeError("AdaBelief takes real, dense gradients only")
            buckets.setdefault((p.device, p.dtype), []).append(p)
        return list(buckets.values())

    def _state_of(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.state[p]
        if not state:
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_var"] = torch.zeros_like(p)
        return state


#: ``torch.optim.Optimizer``'s methods that torch wraps with ``torch._disable_dynamo``, which
#: imports ``torch._dynamo`` on their first call only to mark them "never compile"
_DYNAMO_DISABLED_METHODS = ("add_param_group", "state_dict", "load_state_dict", "zero_grad")


def _eager_optimizer_methods(eager: bool) -> None:
    """Let an eager run use an optimizer without importing ``torch._dynamo``.

    ``torch._disable_dynamo`` wraps ``Optimizer.add_param_group`` (called by the
    constructor), ``state_dict``, ``load_state_dict`` and ``zero_grad``; on its first call
    the wrapper imports ``torch._dynamo`` (and sympy: ~1 s, most of an ``import torch``) to
    build the "do not compile" version, and caches it on the function as
    ``__dynamo_disable``. In an eager run nothing is compiled, so the "do not compile"
    version of each is the function itself: it is put in that cache before the first call
    (``eager=True``). ``eager=False`` (``train.compile``) takes entries put there back out,
    so torch builds its own. Where ``torch._dynamo`` is already imported, or this torch
    wraps them otherwise, nothing changes (at worst, the import happens as before).
    """
    for name in _DYNAMO_DISABLED_METHODS:
        fn = getattr(getattr(torch.optim.Optimizer, name, None), "__wrapped__", None)
        if fn is None:
            continue
        cached = getattr(fn, "__dynamo_disable", None)
        if eager and cached is None and "torch._dynamo" not in sys.modules:
            fn.__dynamo_disable = fn
        elif not eager and cached is fn:
            delattr(fn, "__dynamo_disable")


def build_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: TrainConfig
) -> torch.optim.Optimizer:
    """The optimizer ``train.optimizer`` names.

    ``adabelief`` is :class:`AdaBelief`, the plain algorithm of the paper, the same update as
    the reference's ``optax.adabelief(b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16)``, with
    ``train.weight_decay`` (0 by default, the paper's) as AdamW-style decoupled decay.
    ``adam`` and ``adamw`` are torch's (whose ``step`` imports ``torch._dynamo``).
    """
    params = list(params)
    name = cfg.optimizer.lower()
    _eager_optimizer_methods(eager=not getattr(cfg, "compile", False))
    if name == "adabelief":
        return AdaBelief(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-16,
                         weight_decay=cfg.weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ConfigError(
        f"train.optimizer '{cfg.optimizer}' is not known; valid: {', '.join(OPTIMIZERS)}"
    )


__all__ = ["OPTIMIZERS", "AdaBelief", "build_optimizer"]
