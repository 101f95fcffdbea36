"""`rils bench`: train-step throughput, step time, peak memory and FLOPs per method, measured side by
side with open_clip's own CLIP model and ClipLoss at the same sizes and precision.

Timings are medians over several steps after warm-up; methods are interleaved repetition by
repetition so a noisy neighbour slows all of them alike and the printed ratios stay meaningful.
"""
from __future__ import annotations

import gc
import os
import platform
import resource
import statistics
import subprocess
import time
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from .factory import create_model
from .methods import create_method
from .methods.base import MethodOptions
from .precision import autocast, grad_scaler, native_bf16, resolve_device, resolve_precision
from .presets import get_preset
from .train.config import TrainConfig
from .train.optim import adamw, param_groups
from .train.step import compile_for_training, train_step


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


def _batch(preset, batch: int, device, views: bool, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    b = {"image": torch.randn(batch, 3, preset.image_size, preset.image_size, generator=g),
         "text": torch.randint(1, 49000, (batch, preset.context_length), generator=g)}
    b["text"][:, -1] = 49407  # end-of-text token: argmax pooling finds it
    if views:
        b["views"] = torch.randn(batch, 2, 3, preset.image_size, preset.image_size, generator=g)
    return {k: v.to(device) for k, v in b.items()}


class RilsStep:
    """The training step the engine runs (`rils.train.step.train_step`): autocast, accumulation
    over `accum_steps` micro-batches, clipping at the training default, the finiteness check, AdamW."""

    def __init__(self, method_name: str, preset_name: str, device, compile_: bool = False,
                 precision: str = "fp32", grad_clip: float = TrainConfig.grad_clip, accum_steps: int = 1,
                 grad_checkpointing: bool = False, masked_grad_checkpointing: bool = False,
                 compile_mode: str = "default"):
        model = create_model(preset_name, method=method_name)
        # as model.grad_checkpointing / model.masked_grad_checkpointing do in training
        model.set_grad_checkpointing(grad_checkpointing, masked=masked_grad_checkpointing)
        opts = MethodOptions(num_prototypes=1024)
        self.module = create_method(method_name, model, opts).to(device).train()
        self.preset = model.preset
        self.views = self.module.needs_views
        self.opt = adamw(param_groups(self.module, 0.05), lr=1e-4)   # what our engine uses
        self.fn = compile_for_training(self.module, torch.device(device), compile_mode) if compile_ else self.module
        self.device, self.precision = torch.device(device), precision
        self.grad_clip, self.accum_steps = grad_clip, accum_steps
        self.scaler = grad_scaler(self.device, precision)

    def forward(self, batch):
        with autocast(self.device, self.precision):
            return self.module(batch)

    def __call__(self, batch):
        n = batch["image"].shape[0]
        size = -(-n // self.accum_steps)
        micro = [{k: v[i:i + size] for k, v in batch.items()} for i in range(0, n, size)]
        train_step(self.module, self.module, self.opt, micro, device=self.device, precision=self.precision,
                   grad_clip=self.grad_clip, forward=self.fn, scaler=self.scaler)


class OpenClipStep:
    """open_clip's CLIP at our preset's sizes: its ViT (average pooling, as ours) and ClipLoss, with
    each tower's activation ours: GELU in the ViT (our trunk is timm's) and the preset's in the text
    tower (QuickGELU by default; it costs more than the fused GELU, so a mismatch would bias the ratio)."""

    def __init__(self, preset_name: str, device, precision: str = "fp32", grad_checkpointing: bool = False,
                 compile_: bool = False, compile_mode: str = "default"):
        import open_clip
        p = get_preset(preset_name)
        vision = dict(layers=p.depth, width=p.width, head_width=p.width // p.heads, patch_size=p.patch_size,
                      image_size=p.image_size, mlp_ratio=p.mlp_ratio, pool_type="avg")
        text = dict(context_length=p.context_length, vocab_size=p.vocab_size, width=p.text_width,
                    heads=p.text_heads, layers=p.text_layers)
        self.module = open_clip.CLIP(embed_dim=p.embed_dim, vision_cfg=vision, text_cfg=text).to(device).train()
        if p.quick_gelu:   # open_clip's quick_gelu would switch its ViT too: set the text tower's alone
            for block in self.module.transformer.resblocks:
                block.mlp.gelu = open_clip.transformer.QuickGELU()
        self.module.set_grad_checkpointing(grad_checkpointing)
        self.loss = open_clip.ClipLoss()
        self.preset = p
        self.views = False
        self.opt = torch.optim.AdamW(self.module.parameters(), lr=1e-4)  # what open_clip's trainer uses
        self.device, self.precision = torch.device(device), precision
        # as open_clip's trainer does with --torchcompile; FLOPs are counted on the eager module
        self.fn = compile_for_training(self.module, self.device, compile_mode) if compile_ else self.module

    def forward(self, batch, module=None):
        with autocast(self.device, self.precision):
            img, txt, scale = (self.module if module is None else module)(batch["image"], batch["text"])
            return self.loss(img, txt, scale)

    def __call__(self, batch):
        self.opt.zero_grad(set_to_none=True)
        self.forward(batch, self.fn).backward()
        self.opt.step()


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


# The step-time ratios a bench reports: (name, numerator, denominator).
RATIOS = (("rils_over_clip_step_time", "rils:rils", "rils:clip"),
          ("our_clip_over_open_clip_step_time", "rils:clip", "open_clip:clip"))


def ratio_interval(times_a: list[list[float]], times_b: list[list[float]], *, resamples: int = 2000,
                   seed: int = 0) -> dict:
    """Median and bootstrap 95 % interval of the step-time ratio a/b. Each repetition r timed a and b
    back to back (interleaved), so its ratio of medians is one paired observation; the interval
    resamples repetitions, which carries the machine's drift between repetitions into the spread."""
    per_rep = [statistics.median(a) / statistics.median(b) for a, b in zip(times_a, times_b)]
    g = torch.Generator().manual_seed(seed)
    obs = torch.tensor(per_rep, dtype=torch.float64)
    idx = torch.randint(len(per_rep), (resamples, len(per_rep)), generator=g)
    boot = obs[idx].median(dim=1).values
    lo, hi = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return {"median": statistics.median(per_rep), "lo": lo, "hi": hi, "half_width": (hi - lo) / 2,
            "repetitions": len(per_rep), "per_repetition": per_rep}


def verdict(interval: dict, goal: float) -> str:
    """"met" when the whole interval is at or under the goal, "missed" when all of it is above, else
    "undecided": a ratio whose interval straddles a goal is not reported as met."""
    return "met" if interval["hi"] <= goal else "missed" if interval["lo"] > goal else "undecided"


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


def source_commit() -> str | None:
    """The git commit of the source tree this package runs from ("+dirty" with uncommitted changes
    to the package's own files), or None outside a git checkout: a kept result names its code."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=here, capture_output=True, text=True, timeout=10)  # noqa: E731
        head = run("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return None
        dirty = run("status", "--porcelain", "--untracked-files=no", "--", ".").stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _machine(dev) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    bf16 = "bf16 native" if native_bf16(dev) else "bf16 emulated"
    return f"{cpu}, {torch.get_num_threads()} threads, {cpu_isa()} ({bf16})"


def cpu_isa() -> str:
    """The instruction set PyTorch's CPU kernels dispatch to (AVX512, AVX2, ...): what
    ATEN_CPU_CAPABILITY caps, so a capped run names the capped set."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        return platform.machine()


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


def bench_data(preset: str = "vit_ti8_64", n: int = 512, method: str = "rils") -> dict:
    """Images/s of one data worker: demo rendering, and JPEG decode, each with the training
    transform and tokenisation, to hold against the model's step rate (x data.workers)."""
    import io

    from .data.demo import DemoShapes
    from .data.samples import SampleMaker
    from .data.transforms import simclr_view_transform, train_transform
    from .methods import METHODS
    from .model.text import get_tokenizer

    p = get_preset(preset)
    views = METHODS[method].needs_views
    maker = SampleMaker(train_transform(p.image_size), get_tokenizer(p.context_length),
                        simclr_view_transform(p.image_size) if views else None)
    demo = DemoShapes("train", num_samples=n, image_size=p.image_size)
    raw = [demo[i] for i in range(n)]
    jpegs = []
    for item in raw:
        buf = io.BytesIO()
        item["image"].resize((2 * p.image_size, 2 * p.image_size)).save(buf, format="JPEG", quality=90)
        jpegs.append(buf.getvalue())
    out = {"preset": preset, "method": method, "samples": n, "machine": _machine(torch.device("cpu"))}
    t = time.perf_counter()
    for i in range(n):
        item = demo[i]
        maker(item["image"], item["caption"], i)
    out["demo_render_transform_per_sec"] = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(n):
        maker(jpegs[i], raw[i]["caption"], i)
    out["jpeg_decode_transform_per_sec"] = n / (time.perf_counter() - t)
    return out


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
