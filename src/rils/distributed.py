"""torch.distributed helpers: who am I, and gathering features across ranks with their gradient."""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from all ranks along dim 0, rank order.

    The backward sums every rank's gradient for this rank's rows, so with DDP's gradient averaging, a loss that every rank computes on the
    global batch has exactly the gradient it would have on one device with the whole batch.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x.contiguous())


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward sums the gradient over ranks and keeps this rank's rows."""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        n = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * n:(dist.get_rank() + 1) * n]


def gather_without_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from all ranks along dim 0, rank order, with no gradient through any slice,
    this rank's included: a plain `all_gather`, as SLIP's `all_gather_batch` (the RILS authors'
    trainer). On one process `x` itself comes back, gradient and all, as there."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, no gradient (counts, normalisers, logged values)."""
    if not is_distributed():
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x


def any_rank_bad(bad: torch.Tensor, flags: list[bool]) -> tuple[torch.Tensor, list[bool]]:
    """`bad` (a device bool) OR-ed over the ranks, and each host flag likewise, in one all-reduce.
    On one process nothing is read back from the device; across ranks the flags are (a stop must be
    decided on the host), so each step waits for its all-reduce there."""
    if not is_distributed():
        return bad, [bool(f) for f in flags]
    t = torch.cat([bad.float().reshape(1), torch.tensor([float(f) for f in flags], device=bad.device)])
    dist.all_reduce(t)
    host = t[1:].tolist() if flags else []
    return t[0] > 0, [v > 0 for v in host]


def any_rank_flags(flags: list[bool], device: torch.device | str = "cpu") -> list[bool]:
    """For each flag, whether it is set on any rank (one all-reduce for all of them). Ranks must
    agree on stopping or skipping at the same step, or the next collective would hang."""
    return any_rank_bad(torch.zeros((), dtype=torch.bool, device=device), flags)[1]
