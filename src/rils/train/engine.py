"""The pre-training loop: one screen from batch to optimiser step, then logs and checkpoints."""
from __future__ import annotations

import os
import random
import signal
import sys
import time
import warnings
from collections import Counter
from contextlib import ExitStack, closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from .. import distributed as D
from ..factory import create_model
from ..methods import create_method
from ..precision import EmulatedBf16Warning, configure_matmul, grad_scaler, resolve_device, resolve_precision
from ..checkpoint import FORMAT, save_checkpoint
from ..data.loader import DataFault, note_position
from .config import Config, ConfigError
from .resume import Resumed, find_resume, resumed_position, rng_state, set_rng_state, stream_layout
from .resume_check import WORLD_SIZE, check_resume, describe
from .data import TrainData, build_train_data, epoch_batches
from .init_from import init_from, load_teacher, lock_towers
from .metrics import MetricsLog, wandb_login_problem
from .optim import adamw, param_groups, warmup_cosine
from .progress import Progress, estimate_step_flops
from .run_folder import FolderLock, Made, claim_output_dir, remove_made, write_run_folder
from .step import StepResult, compile_for_training, data_parallel, log_record, train_step


class RunAborted(SystemExit):
    """The run cannot go on (non-finite steps in a row, a checkpoint that cannot be written, data
    that ran dry). A SystemExit, so `python -m rils` / `rils` print the one-line message and exit
    with status 1 without a traceback; `message` is the text without the "rils: error: " prefix."""

    def __init__(self, message: str):
        self.message = " ".join(str(message).split())
        super().__init__(f"rils: error: {self.message}")


class RunTerminated(SystemExit):
    """SIGTERM (a scheduler's preemption, `kill`, torchrun passing its own on), raised once the
    checkpoint is saved. Exit status 143 = 128 + SIGTERM, what a shell reports for a process that
    SIGTERM ended, so job scripts read it as before; it is a SystemExit for the reason RunAborted is."""

    def __init__(self):
        super().__init__(128 + signal.SIGTERM)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)   # both save a checkpoint at the end of the step they arrive in


def train(cfg: Config) -> Path:
    """Pre-train as `cfg` says; returns the path of the final checkpoint (latest.pt).

    Raises ConfigError (the CLI: exit 2) for a run folder that cannot be made, is in use by another
    run (rank 0 holds an OS lock on it while it runs) or already holds a run (without `resume` or
    `overwrite`), data that cannot be opened or is too small for a step, a bad `resume=PATH` or
    `init_from`, or `logging.wandb=true` with neither a W&B API key nor offline mode;
    RunAborted (exit 1, one line) when `train.max_bad_steps` steps in a row have a
    non-finite loss or gradient, when a checkpoint cannot be written, or when the data stream runs
    dry; KeyboardInterrupt after saving on Ctrl-C, RunTerminated (exit 143) after saving on SIGTERM.

    Bad input leaves no half-made run folder behind: what this start made before the refusal (the
    folder, `checkpoints/`, `config.yaml`) is removed again, and a config.yaml it overwrote (of a run
    stopped before its first step) gets its bytes back; nothing else that was there is touched."""
    made: Made = []
    try:
        with ExitStack() as held:   # closed before remove_made: the lock's file goes before its folder
            env = start(cfg)
            resumed = prepare_run_folder(env, made, held)
            run = build(env)
            restore(run, resumed)
            run.metrics = MetricsLog(env.out, run.step if resumed.ckpt is not None else None, env.is_main,
                                     cfg.logging, cfg.to_dict())
            made.clear()   # the run has begun: the folder is its own now, and a Ctrl-C from here on saves it
            ready_to_step(run, resumed)
            return loop(run)
    except (ConfigError, KeyboardInterrupt):   # Ctrl-C while the data is counted is no run either
        remove_made(made)
        raise


# The phases of a start, in order.

@dataclass
class Setup:
    """This process's place in the job and how it computes: what every phase reads."""
    cfg: Config
    device: torch.device
    rank: int
    world: int
    precision: str
    why: str                     # why that precision: logged, and the first line of config.yaml
    log: Callable[[str], None]   # "[rils] ..." on stderr from rank 0; the other ranks say nothing

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def out(self) -> Path:
        return Path(self.cfg.output_dir)

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"


def start(cfg: Config) -> Setup:
    device = setup_distributed(cfg)
    rank = D.rank()
    log = (lambda msg: print(f"[rils] {msg}", file=sys.stderr, flush=True)) if rank == 0 else (lambda msg: None)
    with warnings.catch_warnings():   # the reason below says it; a warning would say it twice
        warnings.simplefilter("ignore", EmulatedBf16Warning)
        precision, why = resolve_precision(cfg.train.precision, device)
    return Setup(cfg, device, rank, D.world_size(), precision, why, log)


def prepare_run_folder(env: Setup, made: Made, held: ExitStack) -> Resumed:
    """Take the run folder (rank 0 locks it until `held` closes; no rank starts over an earlier run)
    and find the checkpoint a resume continues; rank 0 then writes checkpoints/ and config.yaml."""
    cfg = env.cfg
    # Before anything is made: wandb.init would fail only once the folder exists (every rank checks,
    # so they all stop alike, as for the checks below).
    if cfg.logging.wandb and (problem := wandb_login_problem()):
        raise ConfigError(problem)
    lock = held.enter_context(lock_run_folder(env, made))
    claim_output_dir(cfg, env.out, lock, env.log, made)
    resumed = open_resume(env)
    if env.is_main:
        write_run_folder(cfg, env.out, resumed, made=made, header=f"train.precision={cfg.train.precision} "
                         f"ran as {env.precision} ({env.why}) on {env.device}")
    return resumed


def lock_run_folder(env: Setup, made: Made):
    """Rank 0 locks the run folder (making it) before anything is written there and before any rank
    looks for an earlier run in it, so two starts cannot both find it free. Its refusal reaches every
    rank (a collective under DDP), and they all stop alike; the other ranks hold no lock."""
    lock, refusal = None, None
    if env.is_main:
        try:
            lock = FolderLock.take(env.out, made, env.log)
        except ConfigError as exc:
            refusal = str(exc)
    if (refusal := _from_main(refusal)) is not None:
        raise ConfigError(refusal)
    return lock if lock is not None else nullcontext()


def open_resume(env: Setup) -> Resumed:
    found = find_resume(env.cfg, env.ckpt_dir, env.log)
    if found is None:
        return Resumed()
    ckpt, path = found
    overridden, changed = check_resume(ckpt.get("config"), env.cfg.to_dict(), old_world=ckpt.get(WORLD_SIZE),
                                       world=env.world, overrides=env.cfg.resume_override)
    return Resumed(ckpt, path, overridden, changed)


@dataclass
class Plan:
    """The run's shape, fixed at its start."""
    batch_size: int       # per rank and micro-batch
    accum: int            # micro-batches per step
    steps_per_epoch: int
    total_steps: int
    global_batch: int
    lr: float             # the peak, scaled with the global batch
    warmup: int           # steps


def build(env: Setup) -> Run:
    """Seeds, the model and method, the data, the optimiser and its schedule; logs what will run."""
    cfg = env.cfg
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    model, method, locked = build_method(env)
    data = open_data(cfg, env.world)
    plan = plan_run(cfg, data, env.world)
    optimizer = adamw(param_groups(method, cfg.train.weight_decay), lr=plan.lr,
                      betas=(cfg.train.beta1, cfg.train.beta2), eps=cfg.train.eps)
    schedule = warmup_cosine(plan.warmup, plan.total_steps, plan.lr, cfg.train.min_lr, cfg.train.warmup_start_lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    log_start(env, plan)
    configure_matmul(env.device, env.precision)
    return Run(env, plan, model, method, optimizer, scheduler, grad_scaler(env.device, env.precision),  # fp16 only
               locked, Stream(data))


def build_method(env: Setup):
    """(model, method, the towers locked) on the device, in training mode."""
    cfg = env.cfg
    model = create_model(cfg.model.preset, cfg.method, drop_path_rate=cfg.model.drop_path,
                         quick_gelu=cfg.model.quick_gelu)
    method = create_method(cfg.method, model, cfg.loss)
    if cfg.model.grad_checkpointing or cfg.model.masked_grad_checkpointing:
        model.set_grad_checkpointing(cfg.model.grad_checkpointing, masked=True)
    locked = lock_towers(model, cfg.model.lock_image, cfg.model.lock_image_unlocked_groups, cfg.model.lock_text)
    if env.world > 1 and env.device.type == "cuda":
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    method.to(env.device).train()
    return model, method, locked


def open_data(cfg: Config, world: int) -> TrainData:
    try:
        return build_train_data(cfg, world)
    except (ValueError, OSError) as exc:   # no shards, a missing CSV column, an empty folder, ...
        msg = str(exc)
        raise ConfigError(msg if msg.startswith("data") else f"data.path: {msg}") from None


def plan_run(cfg: Config, data: TrainData, world: int) -> Plan:
    B, A = cfg.train.batch_size, cfg.train.accum_steps
    steps_per_epoch = data.micro_batches_per_epoch(B, world) // A
    if steps_per_epoch < 1:
        raise ConfigError(f"data: {data.num_samples} samples do not fill one step of "
                          f"{B} x {world} ranks x {A} accumulation steps")
    global_batch = B * world * A
    return Plan(batch_size=B, accum=A, steps_per_epoch=steps_per_epoch, global_batch=global_batch,
                total_steps=cfg.train.max_steps or cfg.train.epochs * steps_per_epoch,
                lr=cfg.train.lr * global_batch / cfg.train.lr_base_batch,          # linear scaling rule
                warmup=cfg.train.warmup_steps or round(cfg.train.warmup_epochs * steps_per_epoch))


def log_start(env: Setup, plan: Plan) -> None:
    cfg = env.cfg
    env.log(f"{cfg.method} on {cfg.model.preset}, {env.device}, precision {env.precision} ({env.why}): "
            f"{plan.total_steps} steps, {plan.steps_per_epoch}/epoch, global batch {plan.global_batch} "
            f"({env.world} rank(s) x {plan.batch_size} x {plan.accum} accumulation), lr {plan.lr:.3g}")
    if env.precision == "bf16" and "emulated" in env.why:
        env.log("warning: bf16 is emulated on this CPU: expect ~50x slower matmuls; use train.precision=auto")
    for warning in schedule_warnings(lr=plan.lr, warmup=plan.warmup, total_steps=plan.total_steps,
                                     global_batch=plan.global_batch, train_cfg=cfg.train):
        env.log(warning)


def restore(run: Run, resumed: Resumed) -> None:
    """A resumed run continues its checkpoint; a fresh one may start from `init_from`'s weights and
    load its method's teacher."""
    cfg, log = run.env.cfg, run.env.log
    if resumed.ckpt is not None:
        continue_from(run, resumed)
        if cfg.init_from:
            log(f"init_from={cfg.init_from} ignored: resuming from {resumed.path} (step {run.step}) wins")
    elif cfg.init_from:   # every rank loads the same weights; optimiser, schedule and step start fresh
        log(init_from(run.method, cfg.init_from))
    if resumed.ckpt is None and type(run.method).needs_teacher:   # a resumed run has its teacher in the checkpoint
        log(load_teacher(run.method, cfg.model.teacher))
    if run.locked:
        log(f"locked (frozen, no optimiser state): {', '.join(run.locked)}")


def continue_from(run: Run, resumed: Resumed) -> None:
    """The checkpoint's weights, optimiser state, step, counters and random state."""
    ckpt, lr, log = resumed.ckpt, run.plan.lr, run.env.log
    optimizer, scheduler = run.optimizer, run.scheduler
    run.method.load_state_dict(ckpt["state_dict"])
    fresh = [{k: g[k] for k in ("weight_decay", "betas", "eps")} for g in optimizer.param_groups]
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    # The schedule and the optimiser's hyper-parameters are the configuration's, not the
    # checkpoint's: identical when nothing changed, and a resume_override applied for real.
    for group, hyper in zip(optimizer.param_groups, fresh):
        group.update(hyper, initial_lr=lr)
    scheduler.base_lrs = [lr] * len(optimizer.param_groups)
    for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["lr"] = lr * factor(scheduler.last_epoch)
    if resumed.overridden:
        log(f"resume_override: applied {describe(resumed.overridden)} (recorded in config_history.yaml)")
    if resumed.changed:
        log(f"resume: {describe(resumed.changed)}")
    if run.scaler is not None and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    run.step = ckpt["step"]
    run.skips.total.update(ckpt.get("skipped", {}))
    run.skips.epoch.update(ckpt.get("epoch_skipped", {}))
    run.skips.shown = Counter(run.skips.total)
    run.skips.steps = int(ckpt.get("skipped_steps", 0))
    set_rng_state(ckpt["rng"])
    run.last_saved = (resumed.path, run.step)


def ready_to_step(run: Run, resumed: Resumed) -> None:
    """DDP around the method, the compiled forward, and where a resumed shard stream stands."""
    env, cfg = run.env, run.env.cfg
    run.net = data_parallel(run.method, env.device) if env.world > 1 else run.method
    run.forward = compile_for_training(run.net, env.device, cfg.train.compile_mode) if cfg.train.compile else run.net
    run.stream.resume_position = resumed_position(resumed.ckpt, cfg, run.stream.data.kind, env.rank, env.world,
                                                  run.step, run.plan.steps_per_epoch, env.log)


# What the loop carries from step to step.

@dataclass
class Skips:
    """Unreadable samples skipped (in the run, in this epoch, and in the window not yet summed over
    the ranks) and steps whose update was dropped; a checkpoint carries all but the window."""
    total: Counter = field(default_factory=Counter)
    epoch: Counter = field(default_factory=Counter)
    window: Counter = field(default_factory=Counter)
    shown: Counter = field(default_factory=Counter)   # the counts the console last printed
    steps: int = 0

    def fold(self, world: int) -> None:
        """Sum this window's skipped samples over ranks into the run and epoch counters (collective)."""
        window = _all_reduce_counter(self.window) if world > 1 else self.window
        self.total.update(window)
        self.epoch.update(window)
        self.window = Counter()


@dataclass
class Stream:
    """This rank's data: one loader per epoch, and (shards) where its stream stands."""
    data: TrainData
    epoch: int = -1
    batches: Iterator | None = None
    position: dict = field(default_factory=dict)   # shards: where this rank's stream stands in the epoch
    resume_position: dict | None = None            # the checkpoint's, for the first loader only


@dataclass
class Window:
    """The steps since the last log line: their outputs summed, micro-batches, images, and its start."""
    sums: Counter = field(default_factory=Counter)
    micro_batches: int = 0
    images: int = 0
    since: float = field(default_factory=time.perf_counter)


@dataclass
class Run:
    """The parts a step trains and where the run stands: what the loop's functions read and advance."""
    env: Setup
    plan: Plan
    model: torch.nn.Module
    method: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: object | None
    locked: list[str]
    stream: Stream
    net: torch.nn.Module | None = None         # the method, in DDP under torchrun
    forward: Callable | None = None            # net, compiled with train.compile
    metrics: MetricsLog | None = None
    step: int = 0
    skips: Skips = field(default_factory=Skips)
    window: Window = field(default_factory=Window)
    bad_streak: int = 0                        # non-finite steps in a row
    grad_norm: float = float("nan")            # of the last step read
    pending: tuple[int, StepResult] | None = None   # a step whose outcome is not read yet
    last_saved: tuple[Path, int] | None = None      # the newest checkpoint known good, for error messages


def loop(run: Run) -> Path:
    """Train to the last step, then save. SIGINT and SIGTERM stop the run at the end of the step they
    arrive in, with a checkpoint; every rank stops at the same step."""
    env, plan = run.env, run.plan
    with stop_signals() as received, closing(run.metrics), progress_bar(run) as (bar, progress):
        run.window = Window()
        while run.step < plan.total_steps:
            result = step_on(run, next_micro_batches(run), received)
            interrupted, terminated = stop_flags(result, received, env.world)
            advance(run, result, bar, progress)
            log_now, save_now = log_due(run), save_due(run)
            abort_at = read_outcomes(run, result, at_once=log_now or save_now or interrupted or terminated)
            if log_now and abort_at in (None, run.step):   # a streak seen a step late stops without a line
                log_window(run, bar)
            if abort_at is not None:
                raise streak_abort(run, abort_at)
            if save_now and run.bad_streak == 0:   # not in a streak of bad steps: it may be the start of a divergence
                save(run, periodic=True)
            if interrupted or terminated:   # every rank: the flags were OR-ed over the ranks
                stop(run, terminated)
        save(run, periodic=False)
        env.log(f"done: {run.step} steps; checkpoint {env.ckpt_dir / 'latest.pt'}")
    return env.ckpt_dir / "latest.pt"


@contextmanager
def stop_signals():
    """The SIGINT / SIGTERM this rank receives, acted on at the end of the step they arrive in."""
    received = set()
    previous = {s: signal.signal(s, lambda signum, _: received.add(signum)) for s in STOP_SIGNALS}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def progress_bar(run: Run):
    """The tqdm bar (rank 0) and the run-time estimate after the first steps."""
    env, plan = run.env, run.plan
    progress = Progress(env.log, start_step=run.step, total_steps=plan.total_steps, device=env.device,
                        precision=env.precision,
                        flops_per_step=estimate_step_flops(run.method, plan.batch_size * plan.accum))
    bar = tqdm(total=plan.total_steps, initial=run.step, disable=not env.is_main, dynamic_ncols=True,
               desc=env.cfg.method, mininterval=0.1 if sys.stderr.isatty() else 10.0)  # a log file gets a line every 10 s
    try:
        yield bar, progress
    finally:
        bar.close()


def next_micro_batches(run: Run) -> list[dict]:
    """This rank's train.accum_steps batches for the next step, on the device."""
    env, stream = run.env, run.stream
    if run.step // run.plan.steps_per_epoch != stream.epoch or stream.batches is None:
        open_epoch(run)
    micro_batches = []
    for _ in range(run.plan.accum):
        try:
            batch = next(stream.batches)
        except StopIteration:
            raise RunAborted(f"data: the stream of {env.cfg.data.path or env.cfg.data.source} ran dry in epoch "
                             f"{stream.epoch} (no readable sample left for rank {env.rank})") from None
        except DataFault as exc:   # raised in a loader worker: one line, not its traceback
            raise RunAborted(exc.reason()) from None
        run.skips.window.update(batch.pop("skipped"))
        note_position(stream.position, batch)
        micro_batches.append({k: v.to(env.device, non_blocking=True) for k, v in batch.items()})
    return micro_batches


def open_epoch(run: Run) -> None:
    """The loader of the epoch the run is in, from the micro-batch it stands at; the first after a
    resume starts at the checkpoint's stream position."""
    env, stream, plan = run.env, run.stream, run.plan
    stream.epoch = run.step // plan.steps_per_epoch
    resumed, stream.resume_position = stream.resume_position, None
    stream.position = dict(resumed, roles=dict(resumed.get("roles", {}))) if resumed else {}
    stream.batches = epoch_batches(stream.data, env.cfg, epoch=stream.epoch, rank=env.rank, world=env.world,
                                   start=(run.step % plan.steps_per_epoch) * plan.accum,
                                   pin_memory=env.device.type == "cuda", position=resumed, track=stream.position)


def step_on(run: Run, micro_batches: list[dict], received: set) -> StepResult:
    """One optimiser step on these micro-batches (rils.train.step.train_step)."""
    env, cfg = run.env, run.env.cfg
    return train_step(run.net, run.method, run.optimizer, micro_batches, device=env.device, precision=env.precision,
                      grad_clip=cfg.train.grad_clip, scheduler=run.scheduler, forward=run.forward,
                      # read when the step's collective is built, after its backward passes:
                      # read before the step, a signal during it waited for the next one
                      extra_flags=lambda: [s in received for s in STOP_SIGNALS],
                      accum_negatives=cfg.train.accum_negatives, scaler=run.scaler)


def stop_flags(result: StepResult, received: set, world: int) -> tuple[bool, bool]:
    """(interrupted, terminated), the same on every rank."""
    interrupted, terminated = result.flags
    if world == 1:   # no rank to agree with: a signal during the update itself counts too
        interrupted = interrupted or signal.SIGINT in received
        terminated = terminated or signal.SIGTERM in received
    return interrupted, terminated


def advance(run: Run, result: StepResult, bar, progress: Progress) -> None:
    """Count the step and its images; the bar and the run-time estimate hear of it."""
    run.window.images += result.images
    run.step += 1
    bar.update(1)
    progress.step(run.step)


def log_due(run: Run) -> bool:
    step, cfg = run.step, run.env.cfg
    return step % cfg.train.log_every == 0 or step == run.plan.total_steps or step % run.plan.steps_per_epoch == 0


def save_due(run: Run) -> bool:
    return run.step % run.env.cfg.train.checkpoint_every == 0 and run.step < run.plan.total_steps


def read_outcomes(run: Run, result: StepResult, at_once: bool) -> int | None:
    """Count the outcomes now due; the step at which bad steps in a row reached train.max_bad_steps, or None.

    The previous step's outcome is read now that this step is queued behind it (on a GPU the read
    then costs no idle time); this step's own is read at once only where a log line, a checkpoint or
    a stop needs it. A streak of bad steps is thus seen at most one step late."""
    max_bad = run.env.cfg.train.max_bad_steps
    due = [run.pending] if run.pending is not None else []
    run.pending = (run.step, result)
    if at_once:
        due, run.pending = due + [run.pending], None
    for at, done in due:
        sums, run.grad_norm, skipped = done.read()
        if skipped:
            run.skips.steps += 1
            run.bad_streak += 1
            run.env.log(f"step {at}: non-finite loss or gradient norm; update skipped "
                        f"({run.bad_streak} in a row, train.max_bad_steps={max_bad})")
        else:
            run.bad_streak = 0
            run.window.sums.update(sums)
            run.window.micro_batches += run.plan.accum
        if run.bad_streak >= max_bad:
            return at
    return None


def log_window(run: Run, bar) -> None:
    """One metrics.jsonl record of the steps since the last (means over ranks; also TensorBoard and
    W&B); the console hears of skipped samples when their counts change."""
    env, window, skips = run.env, run.window, run.skips
    now = time.perf_counter()
    means = {k: v / window.micro_batches for k, v in window.sums.items()} if window.micro_batches else {}
    if env.world > 1 and means:
        vec = D.all_reduce_sum(torch.tensor(list(means.values()), dtype=torch.float64, device=env.device)) / env.world
        means = dict(zip(means, vec.cpu().tolist()))
    skips.fold(env.world)
    record = log_record(step=run.step, steps_per_epoch=run.plan.steps_per_epoch, global_batch=run.plan.global_batch,
                        lr=run.scheduler.get_last_lr()[0], means=means, grad_norm=float(run.grad_norm),
                        images_per_sec=window.images / (now - window.since), skipped_total=skips.total,
                        skipped_steps=skips.steps, epoch_skipped=skips.epoch)
    run.metrics.write(record, env.log)
    if skips.total != skips.shown:   # the console hears of skips too, when they change
        env.log(f"step {run.step}: {_skip_summary(skips.total)}")
        skips.shown = Counter(skips.total)
    bar.set_postfix(loss=f"{means.get('loss', float('nan')):.3f}", img_s=f"{record['images_per_sec']:.0f}")
    run.window = Window(since=now)
    if run.step % run.plan.steps_per_epoch == 0:
        skips.epoch.clear()


def streak_abort(run: Run, at: int) -> RunAborted:
    kept = (f"the last good checkpoint is {run.last_saved[0]} (step {run.last_saved[1]})" if run.last_saved
            else "no checkpoint was written")
    return RunAborted(f"{run.bad_streak} consecutive steps with a non-finite loss or gradient "
                      f"(train.max_bad_steps={run.env.cfg.train.max_bad_steps}), the last at step {at}; "
                      f"stopped without saving; {kept}")


def stop(run: Run, terminated: bool) -> None:
    """Save, say so, and leave: RunTerminated (exit 143) for SIGTERM, KeyboardInterrupt for SIGINT."""
    save(run, periodic=False)
    run.env.log(f"{'terminated (SIGTERM)' if terminated else 'interrupted'}: checkpoint saved at step "
                f"{run.step}; continue with resume=latest")
    raise RunTerminated() if terminated else KeyboardInterrupt


def save(run: Run, periodic: bool) -> None:
    """Every rank calls it at the same step; rank 0 writes. A failed write stops every rank."""
    env = run.env
    run.skips.fold(env.world)
    positions = _gather(run.stream.position) if run.stream.data.kind == "shards" else None   # collective
    error = None
    if env.is_main:
        payload = checkpoint_payload(run, positions)
        try:
            path = save_checkpoint(payload, env.ckpt_dir, run.step, periodic, env.cfg.train.keep_checkpoints)
            run.last_saved = (path, run.step)
        except OSError as exc:
            error = exc.strerror or str(exc)
    if D.any_rank_flags([error is not None], env.device)[0]:
        kept = (f"the previous checkpoint {run.last_saved[0]} (step {run.last_saved[1]}) is intact"
                if run.last_saved else "no earlier checkpoint")
        raise RunAborted(f"{error}; {kept}; free space or fix the folder, then rerun with resume=latest"
                         if error else "rank 0 could not write a checkpoint; stopping")


def checkpoint_payload(run: Run, positions: list | None) -> dict:
    env, cfg, step = run.env, run.env.cfg, run.step
    payload = {"format": FORMAT, "preset": run.model.preset.to_dict(), "method": cfg.method,
               "method_options": cfg.loss.__dict__, "config": cfg.to_dict(), WORLD_SIZE: env.world, "step": step,
               "precision": env.precision,
               "epoch": step // run.plan.steps_per_epoch, "state_dict": run.method.state_dict(),
               "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
               "scaler": run.scaler.state_dict() if run.scaler is not None else None,
               "skipped": dict(run.skips.total), "epoch_skipped": dict(run.skips.epoch),
               "skipped_steps": run.skips.steps, "rng": rng_state()}
    if positions is not None:
        payload["data_position"] = {**stream_layout(cfg, env.world), "step": step, "ranks": positions}
    return payload


# Ranks and their collectives; one-line messages.

def setup_distributed(cfg: Config):
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; gloo on CPU, NCCL on GPU."""
    use_cuda = resolve_device(cfg.train.device).type == "cuda"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        store = _restart_safe_store(world)
        if store is None:
            dist.init_process_group(backend=backend)
        else:
            dist.init_process_group(backend=backend, store=store, rank=int(os.environ["RANK"]), world_size=world)
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _restart_safe_store(world: int):
    """The agent's store, under a prefix of this attempt, when torchrun shares one store across restarts.

    torchrun (c10d rendezvous, the default) keeps one TCPStore for the whole job and its workers
    use it without a per-attempt prefix, so after `--max-restarts` relaunches the group, the new
    workers read the keys the dead ones left (process-group barrier counts, gloo peer addresses) and
    hang or fail to connect. Older torch prefixed by the restart count; we do the same. None (plain
    env:// init) outside torchrun or when the store is not shared (TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1).
    Multi-node caveat: the restart count is per agent; torchrun raises it on every node when the
    workers fail (what a lost peer causes), not when a node only re-joins."""
    env = os.environ
    if env.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or "TORCHELASTIC_RESTART_COUNT" not in env:
        return None
    from torch.distributed.constants import default_pg_timeout
    store = dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), world, is_master=False,
                          timeout=default_pg_timeout)
    return dist.PrefixStore(f"/rils/attempt_{env['TORCHELASTIC_RESTART_COUNT']}", store)


def _gather(obj) -> list:
    """`obj` of every rank, in rank order (a collective under DDP)."""
    if D.world_size() == 1:
        return [obj]
    gathered = [None] * D.world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def _from_main(obj):
    """Rank 0's `obj` on every rank (a collective under DDP)."""
    if D.world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def schedule_warnings(*, lr: float, warmup: int, total_steps: int, global_batch: int, train_cfg) -> list[str]:
    """One-line warnings for a schedule that cannot learn: the paper recipe (lr 5e-4 at batch 4096,
    one epoch of warm-up) run for a few dozen steps at batch 32 scales lr to 3.9e-6 and never leaves
    its warm-up, and learns nothing while looking healthy. Each names the key that fixes it."""
    out = []
    if warmup >= total_steps:
        out.append(f"warning: the warm-up ({warmup} steps) does not end before the run ({total_steps} steps) does, so "
                   f"the lr never reaches its peak; set train.warmup_steps={max(1, total_steps // 10)} (10% of the run)")
    if lr < 1e-5:
        out.append(f"warning: lr {lr:.2g} (train.lr {train_cfg.lr:g} x global batch {global_batch} / "
                   f"train.lr_base_batch {train_cfg.lr_base_batch}) is too small to learn much; set "
                   f"train.lr_base_batch={global_batch} to train at train.lr {train_cfg.lr:g}, or raise train.lr")
    return out


def _skip_summary(skipped: Counter) -> str:
    """'skipped 12 unreadable samples so far: bad_image 10, empty_caption 2' (the metrics.jsonl keys)."""
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"skipped {sum(skipped.values())} unreadable samples so far: {reasons}"


def _all_reduce_counter(counter: Counter) -> Counter:
    """Sum skip counts over ranks; reasons differ per rank, so exchange them as objects."""
    gathered = [None] * D.world_size()
    dist.all_gather_object(gathered, dict(counter))
    total = Counter()
    for c in gathered:
        total.update(c)
    return total
