"""AdamW with the paper's weight decay on weights only, and warm-up + cosine schedule."""
from __future__ import annotations

import math

import torch


def param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decay on weights; none on 1-D parameters (norms, biases) and on what the
    module names in `no_weight_decay()` (SLIP's rule for the model: ndim < 2, biases, norms; a
    method may add its own, e.g. the learned prototypes). Frozen parameters are left out."""
    exempt = set(module.no_weight_decay()) if hasattr(module, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name in exempt:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw(groups, lr: float, betas=(0.9, 0.98), eps: float = 1e-6) -> torch.optim.AdamW:
    """AdamW with the fused kernel: on a CPU, torch's default is a per-tensor Python loop, which on a
    small ViT took half of the training step (see docs/PERFORMANCE.md)."""
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)


def warmup_cosine(warmup_steps: int, total_steps: int, base_lr: float, min_lr: float = 0.0,
                  start_lr: float = 0.0):
    """Multiplier for LambdaLR, per optimiser step: linear warm-up, then cosine decay to `min_lr`
    (Sec. 3.3). The cosine is SLIP's `cosine_scheduler` (the authors' trainer) step for step. With
    `start_lr` > 0 so is the warm-up, `np.linspace(start_lr, base_lr, warmup_steps)`: `start_lr` on
    the first step, `base_lr` on the last. With `start_lr` 0 the ramp starts one step before the
    first, `base_lr * (step + 1) / warmup_steps`, as it always has here: a step at lr 0 would be lost."""
    floor = min_lr / base_lr if base_lr else 0.0
    start = start_lr / base_lr if base_lr else 0.0

    def factor(step: int) -> float:
        if step < warmup_steps:
            if start_lr == 0:
                return (step + 1) / warmup_steps
            return start + (1 - start) * step / max(1, warmup_steps - 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor
