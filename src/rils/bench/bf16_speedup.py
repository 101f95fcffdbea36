"""The speed-up of bf16 autocast over fp32 per method (`run_precision_bench`, `rils bench
--precision-ratio`), both precisions timed interleaved on the same model objects."""
from __future__ import annotations

import statistics

import torch

from ..precision import resolve_device, resolve_precision
from .machine import _machine
from .steps import RilsStep, _batch
from .timing import _timed


def run_precision_bench(preset: str = "vit_ti8_64", methods=("clip", "rils"), batch: int = 64, steps: int = 5,
                        warmup: int = 2, repeats: int = 3, device: str = "auto") -> dict:
    """bf16 autocast against fp32 on the same model objects, interleaved, so the speed-up is a ratio
    measured side by side rather than across two runs."""
    dev = resolve_device(device)
    out = {"preset": preset, "batch": batch, "device": str(dev), "machine": _machine(dev), "torch": torch.__version__,
           "bf16": resolve_precision("auto", dev)[1], "results": {}}
    for m in methods:
        torch.manual_seed(0)
        step = RilsStep(m, preset, dev)
        data = _batch(step.preset, batch, dev, step.views)
        times = {"bf16": [], "fp32": []}
        for prec in times:
            step.precision = prec
            for _ in range(warmup):
                step(data)
        for _ in range(repeats):
            for prec in times:
                step.precision = prec
                times[prec].extend(_timed(step, data, dev, steps))
        med = {p: statistics.median(v) for p, v in times.items()}
        out["results"][m] = {"bf16_images_per_sec": batch / med["bf16"], "fp32_images_per_sec": batch / med["fp32"],
                             "bf16_speedup": med["fp32"] / med["bf16"], "step_times_s": times}
    return out
