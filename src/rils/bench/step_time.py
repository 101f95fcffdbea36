"""Step time, throughput, FLOPs and peak memory of each method's training step, side by side with
open_clip's CLIP (`run_bench`, the default `rils bench`), and the table it prints (`format_table`).
Timings are medians over several steps after warm-up; methods are interleaved repetition by
repetition so a noisy neighbour slows all of them alike and the printed ratios stay meaningful."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch

from ..precision import native_bf16, resolve_device, resolve_precision
from ..train.config import TrainConfig
from .intervals import ratio_interval
from .machine import _machine, source_commit
from .op_profile import _profile_table
from .peak_memory import _cpu_step_peak_mb
from .steps import OpenClipStep, RilsStep, _batch
from .timing import _count_flops, _sync, _timed, peak_tflops


@dataclass
class Measurement:
    name: str
    step_times: list = field(default_factory=list)
    flops_per_step: float = 0.0
    peak_mem_mb: float = 0.0

    def summary(self, batch: int) -> dict:
        med = statistics.median(self.step_times)
        return {"name": self.name, "median_step_s": med, "images_per_sec": batch / med,
                "step_times_s": self.step_times, "gflops_per_step": self.flops_per_step / 1e9,  # 3 x forward
                "achieved_tflops": self.flops_per_step / med / 1e12, "peak_mem_mb": self.peak_mem_mb}


# The step-time ratios a bench reports: (name, numerator, denominator).
RATIOS = (("rils_over_clip_step_time", "rils:rils", "rils:clip"),
          ("our_clip_over_open_clip_step_time", "rils:clip", "open_clip:clip"))


def run_bench(preset: str = "vit_ti8_64", methods=("clip", "rils"), precision: str = "auto", batch: int = 64,
              steps: int = 10, warmup: int = 3, repeats: int = 3, open_clip: bool = True, device: str = "auto",
              compile_: bool = False, accum_steps: int = 1, grad_clip: float = TrainConfig.grad_clip,
              progress=None, target_half_width: float | None = 0.03, max_seconds: float = 600.0,
              max_repeats: int = 30, memory_repeats: int = 3, grad_checkpointing: bool = False,
              masked_grad_checkpointing: bool = False, profile_rows: int = 0, compile_mode: str = "default") -> dict:
    """Time each method's training step, interleaved repetition by repetition. `repeats` is the least
    number of repetitions; with `target_half_width`, repetitions go on until every step-time ratio's
    bootstrap 95 % interval has at most that half-width, or `max_seconds` / `max_repeats` is reached.
    On a CPU the peak memory of a step is measured `memory_repeats` times per method, each in a fresh
    process (resident size moves by about 1 % from process to process): the median, and the RILS/CLIP
    ratio's range over the repetitions. With `profile_rows`, the report's "profiles" holds an operator
    table of one more step of each stepper, the one timed (compiled steps too, at no second compile)."""
    dev = resolve_device(device)
    requested = precision
    precision, why = resolve_precision(precision, dev)
    say = progress or (lambda msg: None)
    step_options = dict(grad_clip=grad_clip, accum_steps=accum_steps, grad_checkpointing=grad_checkpointing,
                        masked_grad_checkpointing=masked_grad_checkpointing, compile_mode=compile_mode)
    candidates = {f"rils:{m}": (lambda m=m: RilsStep(m, preset, dev, compile_, precision, **step_options))
                  for m in methods}
    if open_clip:
        candidates["open_clip:clip"] = lambda: OpenClipStep(preset, dev, precision, grad_checkpointing, compile_,
                                                            compile_mode)
    steppers, results = {}, {}
    for name, make in candidates.items():
        torch.manual_seed(0)
        steppers[name] = make()
        results[name] = Measurement(name)
    batches = {name: _batch(s.preset, batch, dev, s.views) for name, s in steppers.items()}

    # FLOPs (fwd + bwd, from the operator counts) and peak memory of one step.
    cpu_peaks = {name: [] for name in steppers}
    for name, step in steppers.items():
        say(f"{name}: FLOPs and peak memory")
        results[name].flops_per_step = _count_flops(step, batches[name])
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step(batches[name])
            _sync(dev)
            results[name].peak_mem_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    if dev.type == "cpu":
        for _ in range(memory_repeats):    # interleaved, like the timings
            for name in steppers:
                cpu_peaks[name].append(_cpu_step_peak_mb(name, preset, batch, precision, step_options))
        for name in steppers:
            results[name].peak_mem_mb = statistics.median(cpu_peaks[name])

    for name, step in steppers.items():
        say(f"{name}: {warmup} warm-up steps")
        for _ in range(warmup):
            step(batches[name])
    _sync(dev)
    per_rep = {name: [] for name in steppers}     # step times of each repetition, per method
    pairs = [(k, a, b) for k, a, b in RATIOS if a in steppers and b in steppers]
    started, done, intervals, stop_reason = time.perf_counter(), 0, {}, "repeats"
    while True:                       # interleave: every method sees the same machine state
        done += 1
        say(f"repetition {done}: {steps} steps of each of {', '.join(steppers)}")
        for name, step in steppers.items():
            times = _timed(step, batches[name], dev, steps)
            per_rep[name].append(times)
            results[name].step_times.extend(times)
        if done >= 2:
            intervals = {k: ratio_interval(per_rep[a], per_rep[b]) for k, a, b in pairs}
            say("  " + ", ".join(f"{k}: {v['median']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]" for k, v in intervals.items()))
        if done < repeats:
            continue
        if target_half_width is None or not pairs:
            break
        if intervals and all(v["half_width"] <= target_half_width for v in intervals.values()):
            stop_reason = f"every interval's half-width <= {target_half_width}"
            break
        if time.perf_counter() - started > max_seconds or done >= max_repeats:
            stop_reason = f"time or repetition cap ({max_seconds:.0f} s, {max_repeats}) before the target half-width"
            break

    profiles = {name: _profile_table(step, batches[name], dev, profile_rows)
                for name, step in steppers.items()} if profile_rows else {}
    summaries = {n: r.summary(batch) for n, r in results.items()}
    peak = peak_tflops(dev)
    for r in summaries.values():
        r["mfu"] = r["achieved_tflops"] / peak if peak else None
    ratios = {}
    if "rils:rils" in summaries and "rils:clip" in summaries:
        a, b = summaries["rils:rils"], summaries["rils:clip"]
        ratios["rils_over_clip_step_time"] = a["median_step_s"] / b["median_step_s"]
        ratios["rils_over_clip_flops"] = a["gflops_per_step"] / b["gflops_per_step"]
        if b["peak_mem_mb"] > 0:
            ratios["rils_over_clip_peak_mem"] = a["peak_mem_mb"] / b["peak_mem_mb"]
    if "open_clip:clip" in summaries and "rils:clip" in summaries:
        ratios["our_clip_over_open_clip_step_time"] = (summaries["rils:clip"]["median_step_s"] /
                                                       summaries["open_clip:clip"]["median_step_s"])
        ratios["our_clip_over_open_clip_flops"] = (summaries["rils:clip"]["gflops_per_step"] /
                                                   summaries["open_clip:clip"]["gflops_per_step"])
    # the memory ratio of each fresh-process repetition, beside `intervals` for the time ratios
    per_process = {"rils_over_clip_peak_mem": [r / c for r, c in zip(cpu_peaks.get("rils:rils", []),
                                                                      cpu_peaks.get("rils:clip", [])) if c > 0]}
    return {"peak_tflops": peak, "preset": preset, "precision": precision, "precision_requested": requested,
            "precision_reason": why, "native_bf16": native_bf16(dev),
            "accum_steps": accum_steps, "grad_clip": grad_clip, "compile": compile_,
            "compile_mode": compile_mode if compile_ else None,
            "grad_checkpointing": grad_checkpointing, "masked_grad_checkpointing": masked_grad_checkpointing,
            "open_clip_compiled": compile_ and open_clip,
            "batch": batch, "steps": steps, "repeats": done, "stopped_because": stop_reason,
            "intervals": intervals, "memory_ratios_per_process": {k: v for k, v in per_process.items() if v},
            "device": str(dev), "machine": _machine(dev), "torch": torch.__version__, "commit": source_commit(),
            "results": summaries, "ratios": ratios, **({"profiles": profiles} if profiles else {})}


def format_table(report: dict) -> str:
    lines = [f"{report['preset']} {report['precision']} ({report.get('precision_reason', '')}) batch "
             f"{report['batch']} on {report['machine']}", "",
             f"| {'step':16s} | {'img/s':>8s} | {'step ms':>8s} | {'GFLOP/step':>10s} | {'TFLOP/s':>7s} | {'peak MB':>8s} |",
             "|" + "|".join("-" * n for n in (18, 10, 10, 12, 9, 10)) + "|"]
    for r in report["results"].values():
        lines.append(f"| {r['name']:16s} | {r['images_per_sec']:8.1f} | {r['median_step_s'] * 1e3:8.1f} | "
                     f"{r['gflops_per_step']:10.1f} | {r['achieved_tflops']:7.3f} | {r['peak_mem_mb']:8.0f} |")
    lines.append("")
    if report.get("peak_tflops"):
        lines.append("model FLOPs utilisation: " + ", ".join(
            f"{r['name']} {r['mfu']:.1%}" for r in report["results"].values()))
    intervals, per_process = report.get("intervals", {}), report.get("memory_ratios_per_process", {})
    for k, v in report["ratios"].items():
        ci, reps = intervals.get(k), per_process.get(k)
        lines.append(f"{k}: {v:.3f}" + (f"  (per-repetition median {ci['median']:.3f}, 95% interval "
                                         f"[{ci['lo']:.3f}, {ci['hi']:.3f}], {ci['repetitions']} repetitions)" if ci else "")
                     + (f"  (per process: {', '.join(f'{x:.3f}' for x in reps)})" if reps else ""))
    if report.get("stopped_because"):
        lines.append(f"stopped after {report['repeats']} repetitions: {report['stopped_because']}")
    return "\n".join(lines)
