"""Where a step spends its time: the operator table of one training step, sorted by self time on the
device that ran it (`profile_step` for `rils bench --profile`, `_profile_table` for `run_bench`'s
`profile_rows`)."""
from __future__ import annotations

import torch

from ..precision import resolve_device, resolve_precision
from .steps import OpenClipStep, RilsStep, _batch
from .timing import _sync


def profile_step(preset: str, method: str, precision: str, batch: int, open_clip: bool = False, rows: int = 15) -> str:
    """Operator-level CPU/CUDA time of one training step (after one warm-up step), for finding
    where a step spends its time."""
    dev = resolve_device("auto")
    precision = resolve_precision(precision, dev)[0]
    step = OpenClipStep(preset, dev, precision) if open_clip else RilsStep(method, preset, dev, False, precision)
    data = _batch(step.preset, batch, dev, step.views)
    step(data)
    return _profile_table(step, data, dev, rows)


def _profile_table(step, data, dev, rows: int = 15) -> str:
    """The operator table of one call of `step(data)` (warmed up by the caller), sorted by self time
    on the device that ran it."""
    with torch.profiler.profile() as prof:
        step(data)
        _sync(dev)
    key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)
