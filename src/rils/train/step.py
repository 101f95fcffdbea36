"""One optimiser step, as training runs it and as `rils bench` times it: micro-batches (gradient
accumulation, DDP's `no_sync` on all but the last), autocast, clipping, one collective that decides
for every rank whether the step is finite, then the update. Also the metrics record of a log line.

Accumulation with the whole accumulated batch as negatives (`accum_negatives`, open_clip's
`--accum-freq`): first every micro-batch's pooled features (`method.pooled`) are computed without
gradients and cached; then each micro-batch is computed again with gradients, its losses taken
against the cached features of the others (`methods.base.Pool`). Only its fresh rows carry a
gradient, so the n backward passes add up to the gradient of one batch n times larger, with the
memory of one micro-batch plus the cached features. The first pass restores the RNG state before
each micro-batch's second pass (stochastic depth or unseeded masks draw the same numbers twice) and
leaves BatchNorm running statistics alone (they are updated once per micro-batch, by the second pass);
BatchNorm's batch statistics stay those of the micro-batch.

A method with a split backward (`PretrainMethod.split_backward`, RILS) runs each micro-batch as two
forward calls, each followed by its backward pass: part 1 (RILS: the intact pass, the text tower and
L_Contra) under DDP's `no_sync`, part 2 (the masked pass, the decoder and L_Recon) as above; the
gradients add up to those of the one loss, and the peak memory is that of the larger part."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
from torch.nn.parallel import DistributedDataParallel

from .. import distributed as D
from ..methods.base import Pool
from ..precision import autocast
from .config import COMPILE_MODES


@dataclass
class StepResult:
    """What a step leaves for its caller. The logged values, the gradient norm and whether the update
    was dropped stay on the device until `read()`, one device-to-host copy, so that a caller can
    queue the next step first: read at once, the host would wait for the device, and a GPU would then
    sit idle while the host launches the next step's first kernels."""
    names: tuple[str, ...]          # the method's outputs (loss and its parts)
    values: torch.Tensor            # each output summed over the micro-batches, on the device
    grad_norm: torch.Tensor         # global gradient norm before clipping
    images: int                     # images in the step, all ranks together
    bad: torch.Tensor               # the update was dropped: non-finite loss or gradient on some rank
    flags: list[bool] = field(default_factory=list)   # `extra_flags`, each OR-ed over the ranks
    _read: tuple | None = field(default=None, repr=False)

    def read(self) -> tuple[dict[str, float], float, bool]:
        """(sums, grad norm, skipped) on the host."""
        if self._read is None:
            dev = self.values.device
            host = torch.cat([self.values, self.grad_norm.detach().float().reshape(1).to(dev),
                              self.bad.float().reshape(1).to(dev)]).tolist()
            self._read = dict(zip(self.names, host[:-2])), host[-2], bool(host[-1])
        return self._read

    @property
    def sums(self) -> dict[str, float]:
        return self.read()[0]

    @property
    def skipped(self) -> bool:
        return self.read()[2]


def compile_for_training(net, device: torch.device, mode: str = "default"):
    """torch.compile(net, mode=mode) as `train.compile=true` runs it. On a CPU it also turns on PyTorch's
    deterministic algorithms: without them inductor's C++ kernels accumulate some backward ops
    (index-put and scatter adds, such as the token embedding's gradient) with parallel atomic adds,
    whose order changes from run to run, so two compiled runs end with different weights and a
    resumed one cannot match the uninterrupted run (benchmarks/perf/compile_check.py; eager CPU kernels
    are deterministic already). On CUDA the setting is left to the user: it would need
    CUBLAS_WORKSPACE_CONFIG and slows atomics-based kernels, and eager CUDA is not bitwise either."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False   # no NaN-filling of every empty()
    return torch.compile(net, mode=None if mode == "default" else mode)


def data_parallel(method, device: torch.device):
    """`method` under DDP as training runs it. A split backward's part 2 (`PretrainMethod.split_backward`)
    leaves part 1's own parameters (RILS: the text tower, σ) out of its graph; with
    `find_unused_parameters` DDP marks them ready itself and reduces the gradient that part 1 left in
    them (their use under `no_sync` counts). Other methods use every trainable parameter each step."""
    return DistributedDataParallel(method, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=method.split_backward())


def train_step(net, method, optimizer, micro_batches: list[dict], *, device: torch.device, precision: str,
               grad_clip: float = 0.0, scheduler=None, forward=None, extra_flags=(),
               accum_negatives: bool = True, scaler=None) -> StepResult:
    """Run one step on `micro_batches` (already on `device`); `net` is `method` or its DDP wrapper,
    `forward` what to call (a compiled `net`; default `net`). The gradient is the mean over the
    micro-batches; with `accum_negatives` and a two-phase method it is the gradient of the whole
    accumulated batch as one (cross-sample terms see all micro-batches; see the module docstring).
    The scheduler steps and the logit scale is clamped even after a skipped update, so the schedule
    and the data order stay on plan. `scaler` (fp16, `rils.precision.grad_scaler`) scales the loss;
    gradients are unscaled before clipping, and a step whose scaled gradient overflowed is skipped
    (and counted) while the scaler lowers its scale. `extra_flags` are host flags OR-ed over the ranks
    in the step's one collective (`StepResult.flags`), or a function that returns them: it is called
    just before that collective, after the backward passes, so what happened during this step's
    forward and backward (a signal's handler setting a flag) is decided on by this step."""
    forward = net if forward is None else forward   # a compiled module has no truth value
    world = D.world_size()
    n = len(micro_batches)
    pooled = accum_negatives and n > 1 and method.two_phase() and bool(method.pooled)
    if pooled:
        cache, rng = _cache_features(method, micro_batches, device, precision)
    optimizer.zero_grad(set_to_none=True)
    values = None
    images = 0
    split = method.split_backward()
    for i, batch in enumerate(micro_batches):
        defer_sync = world > 1 and i < n - 1
        kwargs = {}
        if pooled:
            _set_rng_state(rng[i], device)
            kwargs["pool"] = Pool(cache, i)
        if split:   # part 1's backward frees its activations before part 2 is built (split_backward)
            with (net.no_sync() if world > 1 else contextlib.nullcontext()), autocast(device, precision):
                first, carry = forward(batch, part=1, **kwargs)
            _backward(first / n, scaler)
            kwargs.update(part=2, carry=carry)
        with (net.no_sync() if defer_sync else contextlib.nullcontext()), autocast(device, precision):
            outputs = forward(batch, **kwargs)
        _backward(outputs["loss"] / n, scaler)
        part = torch.stack([v.detach().float() for v in outputs.values()])   # stays on the device
        values = part if values is None else values + part
        images += batch["image"].shape[0] * world
    if scaler is not None:
        scaler.unscale_(optimizer)      # clip and judge the true gradient, not the scaled one
    grad_norm = torch.nn.utils.clip_grad_norm_(method.parameters(), grad_clip or float("inf"))
    # One collective decides for every rank: a non-finite loss on any rank (a NaN loss also reaches
    # every rank's all-reduced gradient; an infinite one may not), plus the caller's flags.
    bad = ~torch.isfinite(values[list(outputs).index("loss")]) | ~torch.isfinite(grad_norm)
    bad, flags = D.any_rank_bad(bad, list(extra_flags() if callable(extra_flags) else extra_flags))
    if scaler is None and getattr(optimizer, "defaults", {}).get("fused"):
        # The fused AdamW kernel skips the whole update (weights, moments, step count) where
        # found_inf is set (the mechanism GradScaler uses): the step is decided on the device.
        optimizer.found_inf = bad.float()
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif not bool(bad):   # other optimisers, and fp16's scaler: the host decides (one wait)
        if scaler is not None:
            scaler.step(optimizer)
        else:
            optimizer.step()
    if scaler is not None:
        scaler.update()                 # after an overflow: a smaller scale for the next step
    if scheduler is not None:
        scheduler.step()
    method.model.clamp_logit_scale()
    return StepResult(tuple(outputs), values, grad_norm, images, bad, flags)


def _backward(loss: torch.Tensor, scaler) -> None:
    (scaler.scale(loss) if scaler is not None else loss).backward()


def _rng_state(device: torch.device):
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(state, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


@contextlib.contextmanager
def _frozen_batchnorm_stats(module: torch.nn.Module):
    """BatchNorm in train mode that normalises with batch statistics but updates no running ones."""
    norms = [m for m in module.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


@torch.no_grad()
def _cache_features(method, micro_batches: list[dict], device: torch.device, precision: str):
    """First pass of accumulation with the whole batch as negatives: each micro-batch's pooled
    features (detached, this rank only: the gather across ranks happens on the pooled tensors), and
    the RNG state each micro-batch started from."""
    cache: dict[str, list[torch.Tensor]] = {k: [] for k in method.pooled}
    rng = []
    with _frozen_batchnorm_stats(method), autocast(device, precision):
        for batch in micro_batches:
            rng.append(_rng_state(device))
            feats = method.features(batch)
            for k in method.pooled:
                cache[k].append(feats[k].detach())
    return cache, rng


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
