"""What the dense fine-tunes share: layer-wise lr decay, the lr schedules of MMSeg's and ViTDet's
recipes, and an iteration loop that survives a kill.

The loop counts optimiser steps (MMSeg and detectron2 are iteration-based: 160k for ADE20K). Its
data order is a function of (seed, step): each epoch is a seeded permutation of the training set,
the global batch at step t is positions [t·B·W, (t+1)·B·W) of that stream and rank r takes its r-th
slice, so a resumed run reads exactly the images the uninterrupted one would have (augmentation
draws differ). Checkpoints (`WORK_DIR/checkpoints/latest.pt`: weights, optimiser, step, settings,
history) are written atomically every `checkpoint_every` steps and at the end; a rerun with
`resume` continues from the last one and refuses one whose settings differ.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from ...checkpoint import save_atomic, verify_checkpoint
from ...distributed import all_reduce_sum, rank, world_size
from ...precision import autocast, grad_scaler, resolve_device

CHECKPOINT = "checkpoints/latest.pt"


# ---------------------------------------------------------------------------- optimiser

def build_optimizer(model: nn.Module, *, lr: float, weight_decay: float, layer_decay: float,
                    betas=(0.9, 0.999)) -> torch.optim.Optimizer:
    """AdamW with layer-wise lr decay (BEiT, MAE, ViTDet): the trunk's block i of L gets
    lr · decay^(L+1-i), the patch embedding decay^(L+1), the heads lr. timm's
    `create_optimizer_v2` does it from the model's `group_matcher()` (the wrappers expose the
    trunk's, prefixed) and leaves norms, biases and `no_weight_decay()` names undecayed."""
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(model, "adamw", lr=lr, weight_decay=weight_decay,
                               layer_decay=layer_decay if layer_decay != 1.0 else None, betas=betas)


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> None:
    # timm's layer-decay groups carry `lr_scale`; its own schedulers apply it the same way.
    for group in optimizer.param_groups:
        group["lr"] = base_lr * factor * group.get("lr_scale", 1.0)


# ---------------------------------------------------------------------------- schedules

def warmup_poly(warmup_steps: int, total_steps: int, power: float = 1.0, warmup_ratio: float = 1e-6,
                min_ratio: float = 0.0) -> Callable[[int], float]:
    """MMSeg's MAE/BEiT schedule: LinearLR from `warmup_ratio` over the warm-up, then PolyLR
    (power 1: linear) from 1 to `min_ratio` over the remaining steps. Returns step -> lr factor."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return warmup_ratio + (1.0 - warmup_ratio) * step / warmup_steps
        span = max(total_steps - warmup_steps, 1)
        return min_ratio + (1.0 - min_ratio) * (1.0 - min(step - warmup_steps, span) / span) ** power
    return factor


def warmup_step(warmup_steps: int, total_steps: int, milestones=(0.889, 0.963), gamma: float = 0.1,
                warmup_ratio: float = 0.001) -> Callable[[int], float]:
    """ViTDet's schedule (detectron2 `WarmupParamScheduler(MultiStepParamScheduler)`): ×`gamma`
    at each milestone (fractions of the run: 163,889 and 177,546 of 184,375 iterations), times a
    linear warm-up from `warmup_ratio`."""
    steps_at = [int(round(m * total_steps)) for m in milestones]

    def factor(step: int) -> float:
        value = gamma ** sum(step >= s for s in steps_at)
        if step < warmup_steps:
            alpha = step / warmup_steps
            value *= warmup_ratio * (1.0 - alpha) + alpha
        return value
    return factor


# ---------------------------------------------------------------------------- distribution

def init_distributed(device) -> torch.device:
    """Join the torchrun group if there is one (gloo on a CPU, NCCL on a GPU); the device to use."""
    device = resolve_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda" and dist.is_initialized():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


class StreamSampler(torch.utils.data.Sampler):
    """This rank's batches of the seeded stream, from step `start` to `steps` (see the module doc)."""

    def __init__(self, num_samples: int, batch_size: int, steps: int, start: int, seed: int):
        self.n, self.b, self.steps, self.start, self.seed = num_samples, batch_size, steps, start, seed
        self.world, self.rank = world_size(), rank()
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._perms[epoch]

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self):
        for step in range(self.start, self.steps):
            first = (step * self.world + self.rank) * self.b
            yield [int(self._perm(g // self.n)[g % self.n]) for g in range(first, first + self.b)]


# ---------------------------------------------------------------------------- the loop

def _load_state(path: Path, settings: dict) -> dict:
    if not verify_checkpoint(path):
        raise ValueError(f"{path} does not match its sha256 sidecar (a damaged fine-tune checkpoint)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    changed = [f"{k}: {state['settings'].get(k)!r} -> {v!r}" for k, v in settings.items()
               if state["settings"].get(k) != v]
    if changed:
        raise ValueError(f"{path} was fine-tuned with other settings ({'; '.join(changed)}); "
                         f"resume with the same ones or use another --work-dir")
    return state


def finetune(model: nn.Module, dataset, *, loss_fn: Callable, optimizer: torch.optim.Optimizer,
             lr_factor: Callable[[int], float], steps: int, batch_size: int, work_dir=None, seed: int = 0,
             checkpoint_every: int = 1000, resume: bool = False, device="cpu", precision: str = "fp32",
             num_workers: int = 0, progress: bool = True, desc: str = "fine-tune", collate_fn=None,
             clip_grad: float | None = None, settings: dict | None = None) -> dict:
    """Train `model` in place for `steps` optimiser steps of `batch_size` per rank.

    `loss_fn(model, batch, device) -> (loss, {name: 0-dim tensor})` runs under autocast (the logged
    parts stay on the device: the loop reads them with the loss, once per step); `model` is wrapped
    in DDP when there are several ranks. `settings` (plain values) identify the run: a resumed
    checkpoint must hold the same. Returns {"history", "steps", "resumed_from", "seconds_per_step"}.
    """
    device = torch.device(device)
    settings = dict(settings or {})
    base_lr = optimizer.defaults["lr"]
    ckpt = Path(work_dir) / CHECKPOINT if work_dir is not None else None
    start, history = 0, []
    if ckpt is not None and ckpt.is_file():
        if not resume:
            raise ValueError(f"{ckpt} holds a fine-tune already; pass --resume to continue it or "
                             f"choose another --work-dir")
        state = _load_state(ckpt, settings)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, history = int(state["step"]), list(state["history"])

    def save(step: int) -> None:
        if ckpt is not None and is_main():
            save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                         "settings": settings, "history": history}, ckpt)
        barrier()

    net = model
    if world_size() > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=StreamSampler(len(dataset), batch_size, steps, start, seed),
        num_workers=num_workers, collate_fn=collate_fn, pin_memory=device.type == "cuda",
        # augmentation draws: a fresh seed per (run seed, start step, rank)
        generator=torch.Generator().manual_seed(seed * 1_000_003 + start * 101 + rank()))
    scaler = grad_scaler(device, precision)
    log_every = max(1, min(50, steps // 20))
    times, running = [], {}
    bar = tqdm(total=steps, initial=start, desc=desc, disable=not (progress and is_main()),
               dynamic_ncols=True)
    net.train()
    for step, batch in enumerate(loader, start=start):
        t0 = time.perf_counter()
        set_lr(optimizer, base_lr, lr_factor(step))
        with autocast(device, precision):
            loss, logs = loss_fn(net, batch, device)
        # One read from the device per step: the loss summed over the ranks (all stop together on a
        # non-finite one) and this rank's logged values.
        values = torch.stack([loss.detach().float(), *(v.detach().float() for v in logs.values())])
        read = torch.cat([all_reduce_sum(values[:1]), values]).tolist()
        if not math.isfinite(read[0]):
            raise RuntimeError(f"{desc}: the loss is {read[1]} at step {step}; lower --lr or check the data")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if clip_grad:
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        times.append(time.perf_counter() - t0)
        for k, v in zip(("loss", *logs), read[1:]):
            running[k] = running.get(k, 0.0) + v
        done = step + 1
        if done % log_every == 0 or done == steps:
            n = log_every if done % log_every == 0 else done % log_every
            history.append({"step": done, "lr": base_lr * lr_factor(step),
                            **{k: round(v / n, 6) for k, v in running.items()}})
            running = {}
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
        bar.update(1)
        if done % checkpoint_every == 0 and done < steps:
            save(done)
    bar.close()
    if start < steps:
        save(steps)
    # The first steps pay for allocation and worker start-up: the median is the steady state.
    per_step = float(np.median(times[1:] if len(times) > 1 else times)) if times else math.nan
    return {"history": history, "steps": steps, "resumed_from": start or None,
            "seconds_per_step": round(per_step, 4)}
