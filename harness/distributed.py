"""Collectives with gradients, so a loss can be computed over the *global* batch.

The convention every model follows under data parallelism: **every process computes the
identical global loss**, and tensors that come from other processes enter only through
:func:`gather_with_grad` or :func:`all_reduce_sum_with_grad`. The backward of both sums the
incoming gradients over processes, so each process gets ``world_size`` times its share of the
exact gradient and DDP's gradient averaging divides that factor out again. The result: N
processes at per-process batch B/N produce the same loss and the same gradients as one
process at batch B.

(A loss term computed from local tensors only, without passing through one of these, would
be scaled by 1/N under DDP: don't write one.)

With one process (or torch.distributed not initialised) both functions are the identity.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        tensor = tensor.contiguous()
        n = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
        sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
        dist.all_gather(sizes, n)
        counts = [int(s.item()) for s in sizes]
        biggest = max(counts)
        padded = tensor
        if tensor.shape[0] < biggest:
            pad = tensor.new_zeros((biggest - tensor.shape[0], *tensor.shape[1:]))
            padded = torch.cat([tensor, pad])
        parts = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(parts, padded)
        ctx.counts = counts
        ctx.rank = dist.get_rank()
        return torch.cat([p[:c] for p, c in zip(parts, counts, strict=False)])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.counts[: ctx.rank])
        return grad[start : start + ctx.counts[ctx.rank]]


class _AllReduceSumWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (batch-first) from all processes in rank order, with gradients.

    Per-process batches may differ in size.
    """
    if not is_distributed():
        return tensor
    return _GatherWithGrad.apply(tensor)


def all_reduce_sum_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes, with gradients (see the module docstring)."""
    if not is_distributed():
        return tensor
    return _AllReduceSumWithGrad.apply(tensor)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes without gradients (statistics, Gram matrices); returns a new tensor."""
    out = tensor.detach().clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out

