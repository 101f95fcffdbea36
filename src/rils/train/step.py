"""One optimiser step, as training runs it and as `rils bench` times it: micro-batches (gradient
accumulation, DDP's `no_sync` on all but the last), autocast, clipping, one collective that decides
for every rank whether the step is finite, then the update. Also the metrics record of a log line."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch

from .. import distributed as D
from ..precision import autocast


@dataclass
class StepResult:
    sums: dict[str, float]          # each output (loss and its parts) summed over the micro-batches
    grad_norm: torch.Tensor         # global gradient norm before clipping
    images: int                     # images in the step, all ranks together
    skipped: bool                   # the update was dropped: non-finite loss or gradient on some rank
    flags: list[bool] = field(default_factory=list)   # `extra_flags`, each OR-ed over the ranks


def train_step(net, method, optimizer, micro_batches: list[dict], *, device: torch.device, precision: str,
               grad_clip: float = 0.0, scheduler=None, forward=None, extra_flags=()) -> StepResult:
    """Run one step on `micro_batches` (already on `device`); `net` is `method` or its DDP wrapper,
    `forward` what to call (a compiled `net`; default `net`). The gradient is the mean over the
    micro-batches. The scheduler steps and the logit scale is clamped even after a skipped update,
    so the schedule and the data order stay on plan."""
    forward = forward or net
    world = D.world_size()
    n = len(micro_batches)
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    images = 0
    for i, batch in enumerate(micro_batches):
        defer_sync = world > 1 and i < n - 1
        with (net.no_sync() if defer_sync else contextlib.nullcontext()), autocast(device, precision):
            outputs = forward(batch)
        (outputs["loss"] / n).backward()
        # one device-to-host copy for all logged parts, not one per part
        values = torch.stack([v.detach().float() for v in outputs.values()]).tolist()
        for k, v in zip(outputs, values):
            sums[k] = sums.get(k, 0.0) + v
        images += batch["image"].shape[0] * world
    grad_norm = torch.nn.utils.clip_grad_norm_(method.parameters(), grad_clip or float("inf"))
    # One collective decides for every rank: a non-finite loss on any rank (a NaN loss also reaches
    # every rank's all-reduced gradient; an infinite one may not), plus the caller's flags.
    loss_bad, *flags = D.any_rank_flags([not math.isfinite(sums["loss"]), *extra_flags], device)
    skipped = loss_bad or not bool(torch.isfinite(grad_norm))
    if not skipped:    # a skipped step leaves weights and optimiser state as they are
        optimizer.step()
    if scheduler is not None:
        scheduler.step()
    method.model.clamp_logit_scale()
    return StepResult(sums, grad_norm, images, skipped, flags)


def log_record(*, step: int, steps_per_epoch: int, global_batch: int, lr: float, means: dict,
               grad_norm: float, images_per_sec: float, skipped_total: dict, skipped_steps: int,
               epoch_skipped: dict) -> dict:
    """One metrics.jsonl line (the README's "The run folder" lists the keys)."""
    return {"step": step, "epoch": round(step / steps_per_epoch, 4), "lr": lr, **means,
            "grad_norm": grad_norm if math.isfinite(grad_norm) else None, "images_per_sec": images_per_sec,
            "skipped": sum(skipped_total.values()), "skipped_by_reason": dict(skipped_total),
            "skipped_steps": skipped_steps,
            "epoch_samples": ((step - 1) % steps_per_epoch + 1) * global_batch,
            "epoch_skipped": sum(epoch_skipped.values()), "epoch_skipped_by_reason": dict(epoch_skipped)}
