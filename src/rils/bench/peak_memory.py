"""Peak resident memory of one training step on a CPU: each measurement in a fresh spawned process,
so that every stepper gets its own high-water mark (`_cpu_step_peak_mb`, whose child is
`_cpu_peak_child`). On a GPU the allocator's own peak counter does this in-process (`step_time.py`)."""
from __future__ import annotations

import gc
import os
import resource

import torch

from .steps import OpenClipStep, RilsStep, _batch


def _cpu_peak_child(kind: str, method: str, preset: str, batch: int, precision: str, step_options, queue) -> None:
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    step = (OpenClipStep(preset, cpu, precision, step_options.get("grad_checkpointing", False)) if kind == "open_clip"
            else RilsStep(method, preset, cpu, False, precision, **step_options))
    data = _batch(step.preset, batch, cpu, step.views)
    gc.collect()
    before = _rss_mb()
    step(data)
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before)


_MMAP_THRESHOLD = "MALLOC_MMAP_THRESHOLD_"


def _cpu_step_peak_mb(name: str, preset: str, batch: int, precision: str, step_options: dict | None = None) -> float:
    """Peak resident memory of the first training step (activations, gradients, optimiser state)
    above the resident size after building the model, in a fresh process per method so that each
    gets its own high-water mark. (Forking this process instead could deadlock OpenMP.) The child
    runs with glibc's mmap threshold fixed at 128 KiB: by default the threshold adapts (up to 32 MiB)
    as large blocks are freed, so some activations land in the heap and stay resident after they
    die, and the same step's peak moved by about ±2.5 % from process to process; fixed, freed
    tensors leave the resident size at once and the peak is that of the live ones."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    kind, method = name.split(":")
    proc = ctx.Process(target=_cpu_peak_child, args=(kind, method, preset, batch, precision, step_options or {}, queue))
    saved = os.environ.get(_MMAP_THRESHOLD)
    os.environ[_MMAP_THRESHOLD] = str(128 * 1024)      # read by glibc when the spawned interpreter starts
    try:
        proc.start()
    finally:
        if saved is None:
            del os.environ[_MMAP_THRESHOLD]
        else:
            os.environ[_MMAP_THRESHOLD] = saved
    value = queue.get(timeout=600)
    proc.join()
    return max(0.0, float(value))


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
