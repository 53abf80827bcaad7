"""Training fails loudly on a NaN/inf loss, before the bad update is applied.

Why a module of its own: a non-finite loss silently poisons the weights, and every checkpoint
written after it; a run should stop at the step it happens, say which loss part went bad and
where the last good checkpoint is, and write nothing more. :class:`LossGuard` checks every
loss part every step *before* ``backward``/``step`` (the parts are identical on all processes,
since models compute the global loss everywhere, so all processes stop together) and raises
:class:`harness.errors.NonFiniteLoss` naming the step, the part and the last good checkpoint.

Cost: one device-to-host copy of all loss parts a step (:func:`loss_values`), which the step
logger needs anyway. The check is one object so that a later change can keep the parts on the
device (``torch.isfinite`` there) and read them only at log steps, without touching the loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from harness.errors import HarnessError, NonFiniteLoss


def loss_values(losses: dict[str, torch.Tensor], *, total: bool = True) -> dict[str, float]:
    """All loss parts as floats with a single device-to-host copy (``total``: a ``"total"``
    part is required, as the host steps on it)."""
    if not isinstance(losses, dict) or (total and "total" not in losses):
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


def first_non_finite(values: dict[str, float]) -> str | None:
    """The name of a non-finite part, preferring a specific part over ``total`` (which is
    non-finite whenever a part is); None when all are finite."""
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if not bad:
        return None
    parts = [k for k in bad if k != "total"]
    return parts[0] if parts else bad[0]


class LossGuard:
    """``check(losses, step)``: the loss parts as floats, or :class:`NonFiniteLoss`.

    ``last_checkpoint`` returns the newest checkpoint written (named in the error) and
    ``write_event`` records the failure in the run's log (main process; the record is
    ``{"step", "event": "non_finite_loss", "part", "value", "checkpoint"}``).
    """

    def __init__(self, batches_per_epoch: int, *, last_checkpoint: Callable[[], str | None],
                 write_event: Callable[[dict[str, Any]], None]) -> None:
        self.batches_per_epoch = batches_per_epoch
        self.last_checkpoint = last_checkpoint
        self.write_event = write_event

    def check(self, losses: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        """``step`` is 1-based, as in the log: the step these losses would complete."""
        values = loss_values(losses)
        bad = first_non_finite(values)
        if bad is not None:
            raise self.failure(step, bad, values[bad])
        return values

    def check_parts(self, parts: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        """:meth:`check` for the loss parts of a step a model owns (no ``"total"`` needed)."""
        values = loss_values(parts, total=False) if parts else {}
        bad = first_non_finite(values)
        if bad is not None:
            raise self.failure(step, bad, values[bad])
        return values

    def check_update(self, name: str, loss: torch.Tensor, step: int) -> None:
        """Before optimizer ``name`` is stepped on ``loss``: a NaN/inf stops the run there."""
        value = float(loss.detach().reshape(()))
        if not math.isfinite(value):
            raise self.failure(step, name, value)

    def failure(self, step: int, part: str, value: float) -> NonFiniteLoss:
        checkpoint = self.last_checkpoint()
        where = (f"the last good checkpoint is {checkpoint} (continue from it with --resume, "
                 "e.g. after lowering train.lr or setting train.grad_clip)"
                 if checkpoint else "no checkpoint had been written yet")
        message = (f"training stopped: loss part '{part}' is {value} at step {step} "
                   f"(epoch {(step - 1) // self.batches_per_epoch}); the update was not "
                   f"applied and nothing was saved; {where}")
        self.write_event({"step": step, "event": "non_finite_loss", "part": part,
                          "value": str(value), "checkpoint": checkpoint})
        return NonFiniteLoss(message, step=step, part=part, value=value, checkpoint=checkpoint)


__all__ = ["LossGuard", "first_non_finite", "loss_values"]
