"""The speed-up of `torch.compile` over eager per method, with its interval and the compile time
(`run_compile_bench`, `rils bench --compile-ratio`)."""
from __future__ import annotations

import torch

from ..precision import resolve_device, resolve_precision
from .intervals import ratio_interval
from .machine import _machine
from .steps import RilsStep, _batch
from .timing import _timed


def run_compile_bench(preset: str = "vit_ti8_64", methods=("clip", "rils"), precision: str = "auto", batch: int = 64,
                      steps: int = 5, warmup: int = 2, repeats: int = 3, device: str = "auto") -> dict:
    """`torch.compile` against eager, per method: two steppers built from the same seed, timed
    interleaved repetition by repetition (the ratio's bootstrap interval as `run_bench`'s); compile
    time is the first compiled step's wall time less an eager step's. Whether a compiled run still
    resumes exactly is checked by benchmarks/perf/compile_check.py, not here."""
    dev = resolve_device(device)
    precision, why = resolve_precision(precision, dev)
    out = {"preset": preset, "batch": batch, "precision": precision, "precision_reason": why, "device": str(dev),
           "machine": _machine(dev), "torch": torch.__version__, "steps": steps, "repeats": repeats, "results": {}}
    for m in methods:
        steppers = {}
        for kind in ("eager", "compiled"):
            torch.manual_seed(0)
            steppers[kind] = RilsStep(m, preset, dev, kind == "compiled", precision)
        data = _batch(steppers["eager"].preset, batch, dev, steppers["eager"].views)
        eager_s = _timed(steppers["eager"], data, dev)[0]
        compile_s = _timed(steppers["compiled"], data, dev)[0] - eager_s
        for step in steppers.values():
            for _ in range(warmup):
                step(data)
        times = {k: [] for k in steppers}
        for _ in range(repeats):
            for kind, step in steppers.items():
                times[kind].append(_timed(step, data, dev, steps))
        interval = ratio_interval(times["eager"], times["compiled"])   # eager / compiled = speed-up
        out["results"][m] = {"speedup": interval["median"], "speedup_interval": [interval["lo"], interval["hi"]],
                             "compile_seconds": compile_s, "step_times_s": times}
    return out
