"""How a step is timed and what it costs: the wall or device time of each of a run of steps (`_timed`),
its training FLOPs from the operator counts of one forward (`_count_flops`), and the device's peak
bf16 rate (`peak_tflops`) that model FLOPs utilisation divides by."""
from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode


# Dense bf16 tensor-core peaks (TFLOP/s) of common training GPUs, for model FLOPs utilisation.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "4090": 165.0}


def peak_tflops(dev) -> float | None:
    if dev.type != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(step, batch, dev, steps: int = 1) -> list[float]:
    """Seconds of each of `steps` calls of `step(batch)`. On a CPU, the wall time of each call. On a
    GPU, the steps are queued back to back, as training runs them (the engine does not wait for a
    step before queuing the next), and each step's time is the device time between the events that
    close it and the one before, with one synchronisation at the end: a step still counts any time
    the device waits for the host, but not the drain and refill of the queue that synchronising
    after every step would add to each one."""
    if dev.type == "cuda":
        marks = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
        torch.cuda.synchronize()
        marks[0].record()
        for mark in marks[1:]:
            step(batch)
            mark.record()
        torch.cuda.synchronize()
        return [a.elapsed_time(b) / 1000 for a, b in zip(marks, marks[1:])]
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step(batch)
        times.append(time.perf_counter() - t)
    return times


def _count_flops(step, batch) -> float:
    """Training FLOPs per step = 3 x forward FLOPs (backward costs twice the forward), the usual
    convention for model FLOPs utilisation. The forward is counted operator by operator."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        step.forward(batch)
    return 3.0 * float(counter.get_total_flops())
