"""Progress that tells the truth: after the first steps, the expected run time from the measured step
time, and a warning when that time is far above what this machine's matmul rate predicts (emulated
bf16, a starved data loader, a busy machine)."""
from __future__ import annotations

import time

import torch
from torch import nn

from ..precision import autocast

SLOW_FACTOR = 5.0     # warn when a step takes this many times the matmul-rate prediction
MIN_PREDICTED_S = 0.05  # below this, per-step overheads (Python, small kernels) dominate: no warning
MEASURE_AFTER = 10    # steps (after the first, which includes warm-up) before the estimate


def _matmul_params(module: nn.Module | None) -> int:
    """Weights that multiply every token: Linear layers and nn.MultiheadAttention's input projection."""
    if module is None:
        return 0
    n = 0
    for m in module.modules():
        if isinstance(m, nn.Linear):
            n += m.weight.numel()
        elif isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None:
            n += m.in_proj_weight.numel()
        elif isinstance(m, nn.Conv2d):      # the patch embedding, applied once per patch
            n += m.weight.numel()
    return n


def estimate_step_flops(method, batch_size: int) -> float:
    """Training FLOPs of one step, 3 x forward, from the weights each token passes through (2 FLOPs per
    weight per token). Attention scores are left out: a lower bound, enough to spot a 5x slow-down."""
    model, p = method.model, method.model.preset
    tokens = p.num_patches + 1
    vision = _matmul_params(model.visual)
    passes = tokens * (1 + 2 * method.needs_views)                       # intact image (+ two views)
    fwd = vision * passes
    if model.decoder is not None:
        visible = round(p.num_patches * (1 - method.opt.mask_ratio)) + 1
        fwd += vision * visible + _matmul_params(model.decoder) * tokens   # masked pass, decoder
    if model.text is not None:
        fwd += _matmul_params(model.text) * p.context_length
    return 3.0 * 2.0 * fwd * batch_size


def matmul_flops_per_second(device: torch.device, precision: str, n: int = 1024, seconds: float = 0.25) -> float:
    """Measured rate of a square matmul on this device, in this precision (a fraction of a second)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    done, start = 0, time.perf_counter()
    with torch.no_grad(), autocast(device, precision):
        while True:
            a @ b
            if device.type == "cuda":
                torch.cuda.synchronize()
            done += 1
            elapsed = time.perf_counter() - start
            if elapsed > seconds and done >= 2:
                return 2.0 * n ** 3 * done / elapsed


class Progress:
    """Call `step(n)` after each optimiser step; logs once, MEASURE_AFTER steps after the first."""

    def __init__(self, log, *, start_step: int, total_steps: int, flops_per_step: float, device: torch.device,
                 precision: str):
        self.log, self.total, self.flops = log, total_steps, flops_per_step
        self.device, self.precision = device, precision
        self.first = start_step + 1            # the first step pays for warm-up: time from its end
        self.t0 = None
        self.done = False

    def step(self, step: int) -> None:
        if self.done:
            return
        if step == self.first:
            self.t0 = time.perf_counter()
            return
        if self.t0 is None or step < self.first + MEASURE_AFTER:
            return
        self.done = True
        per_step = (time.perf_counter() - self.t0) / (step - self.first)
        remaining = per_step * (self.total - step)
        self.log(f"{step - self.first} steps at {per_step:.2f} s/step: about {_duration(remaining)} to go "
                 f"({_duration(per_step * self.total)} for all {self.total} steps)")
        rate = matmul_flops_per_second(self.device, "fp32")
        if self.precision not in ("fp32", "tf32"):   # measured once when the step runs in fp32
            rate = max(rate, matmul_flops_per_second(self.device, self.precision))
        predicted = self.flops / rate
        if predicted >= MIN_PREDICTED_S and per_step > SLOW_FACTOR * predicted:
            self.log(f"warning: a step takes {per_step / predicted:.0f}x what this machine's matmul rate "
                     f"({rate / 1e9:.0f} GFLOP/s) predicts ({predicted:.2f} s for ~{self.flops / 1e9:.0f} GFLOP): "
                     f"check the precision (bf16 emulated?), the data loader (data.workers) and other load")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
