"""The pre-training loop: one screen from batch to optimiser step, then logs and checkpoints."""
from __future__ import annotations

import os
import random
import signal
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from .. import distributed as D
from ..factory import create_model
from ..methods import create_method
from ..precision import EmulatedBf16Warning, configure_matmul, grad_scaler, resolve_device, resolve_precision
from ..checkpoint import FORMAT, load_checkpoint, remove_stale_temporaries, save_checkpoint, sidecar_path
from ..data.loader import DataFault, note_position
from .config import Config, ConfigError, dump_config
from .resume_check import WORLD_SIZE, append_history, check_resume, describe
from .data import build_train_data, epoch_batches
from .init_from import init_from, load_teacher, lock_towers
from .metrics import MetricsLog, _json_record, wandb_login_problem
from .optim import adamw, param_groups, warmup_cosine
from .progress import Progress, estimate_step_flops
from .step import compile_for_training, data_parallel, log_record, train_step


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


def existing_run_step(out: Path) -> int | None:
    """The step an earlier run in `out` reached, or None if `out` holds no run. A run is a checkpoint
    or a non-empty metrics.jsonl; an empty folder, or one with only config.yaml (a run stopped before
    its first step), is free to use."""
    ckpt_dir, metrics = out / "checkpoints", out / "metrics.jsonl"
    try:
        steps = [int(p.name[5:13]) for p in ckpt_dir.glob("step_*.pt") if p.name[5:13].isdigit()]
        latest = (ckpt_dir / "latest.pt").is_file()
        logged = metrics.is_file() and metrics.stat().st_size > 0
        if logged:
            steps += [rec["step"] for ln in metrics.read_text(encoding="utf-8", errors="replace").splitlines()
                      if (rec := _json_record(ln)) is not None]
    except OSError:
        return None     # unreadable: the mkdir / config.yaml write that follows will say why
    if latest:
        try:   # mmap: the step without reading the tensors
            steps.append(int(torch.load(ckpt_dir / "latest.pt", mmap=True, weights_only=True)["step"]))
        except Exception:
            pass
    if not (steps or latest or logged):
        return None
    return int(max(steps, default=0))


def claim_output_dir(cfg: Config, out: Path, is_main: bool, log) -> None:
    """Never start over an earlier run by accident: without `resume` it would truncate metrics.jsonl
    and overwrite latest.pt. `overwrite=true` moves the old run aside (rank 0); it never deletes.
    Every rank checks (read-only), so they all stop with the same ConfigError."""
    if cfg.overwrite and cfg.resume:
        raise ConfigError(f"overwrite=true starts over and resume={cfg.resume} continues; set only one")
    if cfg.resume:
        return
    step = existing_run_step(out)
    if step is None:
        return
    if not cfg.overwrite:
        raise ConfigError(f"{out} already holds a run at step {step}: pass resume=latest to continue "
                          f"or overwrite=true to start over")
    if is_main:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = out.with_name(f"{out.name}.old-{stamp}")
        n = 1
        while aside.exists() or aside.is_symlink():
            aside, n = out.with_name(f"{out.name}.old-{stamp}-{n}"), n + 1
        try:
            out.rename(aside)
        except OSError as exc:
            raise ConfigError(f"overwrite: cannot move {out} aside to {aside}: {exc.strerror or exc}") from None
        log(f"overwrite=true: moved the earlier run (step {step}) from {out} to {aside}")


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


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def find_resume(cfg: Config, ckpt_dir: Path, log) -> tuple[dict, Path] | None:
    """`resume=latest` takes the newest good checkpoint: latest.pt, else the periodic ones, newest
    first; a checkpoint that fails its sha256 check or cannot be read is passed over with a warning.
    An explicit `resume=PATH` that is bad is a configuration error (exit status 2)."""
    if not cfg.resume:
        return None
    if cfg.resume != "latest":
        try:
            ckpt = load_checkpoint(cfg.resume)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"resume: {exc}") from None
        log(f"resuming from {cfg.resume} (step {ckpt['step']})")
        return ckpt, Path(cfg.resume)
    candidates = [ckpt_dir / "latest.pt"] + sorted(ckpt_dir.glob("step_*.pt"), reverse=True)
    for path in candidates:
        if path.is_file():
            try:
                ckpt = load_checkpoint(path)
                verified = "" if sidecar_path(path).is_file() else "; no .sha256 sidecar, not verified"
                log(f"resuming from {path} (step {ckpt['step']}{verified})")
                return ckpt, path
            except (ValueError, OSError) as exc:
                log(f"warning: {exc}; trying an older checkpoint")
    log(f"resume=latest: no usable checkpoint in {ckpt_dir}; starting from scratch")
    return None


def _stream_layout(cfg: Config, world: int) -> dict:
    """What a recorded shard-stream position means something for: the same shards, order and split."""
    return {"world": world, "workers": cfg.data.workers, "shuffle_buffer": cfg.data.shuffle_buffer,
            "resampled": cfg.data.resampled, "path": cfg.data.path, "seed": cfg.seed,
            "batch_size": cfg.train.batch_size}


def resumed_position(ckpt, cfg: Config, kind: str, rank: int, world: int, start_step: int, steps_per_epoch: int,
                     log) -> dict | None:
    """This rank's shard-stream position in the checkpoint, when a run resumes mid-epoch with the same
    data layout: the loader then starts each worker there without reading the used samples. None
    otherwise (an older checkpoint, another world size or worker count): the used batches are read again."""
    if ckpt is None or kind != "shards" or start_step % steps_per_epoch == 0:
        return None
    recorded = ckpt.get("data_position") or {}
    layout = _stream_layout(cfg, world)
    if recorded.get("step") != start_step or any(recorded.get(k) != v for k, v in layout.items()):
        log("resume: the checkpoint holds no data position for this data layout; reading the batches "
            "this epoch has used again")
        return None
    return recorded["ranks"][rank]


def _gather(obj) -> list:
    """`obj` of every rank, in rank order (a collective under DDP)."""
    if D.world_size() == 1:
        return [obj]
    gathered = [None] * D.world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def train(cfg: Config) -> Path:
    """Pre-train as `cfg` says; returns the path of the final checkpoint (latest.pt).

    Raises ConfigError (the CLI: exit 2) for a run folder that cannot be made or already holds a run
    (without `resume` or `overwrite`), data that cannot be opened or is too small for a step, a bad
    `resume=PATH` or `init_from`, or `logging.wandb=true` with neither a W&B API key nor offline mode;
    RunAborted (exit 1, one line) when `train.max_bad_steps` steps in a row have a
    non-finite loss or gradient, when a checkpoint cannot be written, or when the data stream runs
    dry; KeyboardInterrupt after saving on Ctrl-C, RunTerminated (exit 143) after saving on SIGTERM.

    Bad input leaves no half-made run folder behind: what this start made before the refusal (the
    folder, `checkpoints/`, `config.yaml`) is removed again, and a config.yaml it overwrote (of a run
    stopped before its first step) gets its bytes back; nothing else that was there is touched."""
    made: list[tuple[Path, bytes | None]] = []
    try:
        return _train(cfg, made)
    except (ConfigError, KeyboardInterrupt):   # Ctrl-C while the data is counted is no run either
        remove_made(made)
        raise


def remove_made(made: list[tuple[Path, bytes | None]]) -> None:
    """Take back what a refused start made, in order, each (path, the bytes it held before or None):
    files it overwrote get their bytes back, files it created go, then folders it created, and only if
    they are empty (rmdir, never a recursive delete), so nothing of an earlier run can go."""
    for path, before in made:
        try:
            if before is not None:
                path.write_bytes(before)
            elif path.is_dir():
                path.rmdir()
            else:
                path.unlink()
        except OSError:
            pass


def _file_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes() if path.is_file() else None
    except OSError:
        return None


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


def _train(cfg: Config, made: list[tuple[Path, bytes | None]]) -> Path:
    device = setup_distributed(cfg)
    rank, world = D.rank(), D.world_size()
    is_main = rank == 0
    log = (lambda msg: print(f"[rils] {msg}", file=sys.stderr, flush=True)) if is_main else (lambda msg: None)
    with warnings.catch_warnings():   # the reason below says it; a warning would say it twice
        warnings.simplefilter("ignore", EmulatedBf16Warning)
        precision, why = resolve_precision(cfg.train.precision, device)
    out = Path(cfg.output_dir)
    ckpt_dir = out / "checkpoints"
    # Before anything is made: wandb.init would fail only once the folder exists (every rank checks,
    # so they all stop alike, as for the checks below).
    if cfg.logging.wandb and (problem := wandb_login_problem()):
        raise ConfigError(problem)
    claim_output_dir(cfg, out, is_main, log)
    found = find_resume(cfg, ckpt_dir, log)
    ckpt = found[0] if found else None
    overridden, changed = check_resume(ckpt.get("config") if ckpt else None, cfg.to_dict(),
                                       old_world=ckpt.get(WORLD_SIZE) if ckpt else None, world=world,
                                       overrides=cfg.resume_override)
    if is_main:
        try:
            # What this start makes, deepest first, for train() to take back if bad input (data,
            # init_from, the teacher) is found before the first step; an existing folder is never listed.
            made += [(p, None) for p in (ckpt_dir, out, *out.parents) if not p.exists() and not p.is_symlink()]
            config_file = out / "config.yaml"
            if ckpt is None and not config_file.exists() and not config_file.is_symlink():
                made.insert(0, (config_file, None))
            elif ckpt is None and (before := _file_bytes(config_file)) is not None:   # unreadable: left alone
                made.insert(0, (config_file, before))
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            if ckpt is None:   # config.yaml is the run's original: a resume never rewrites it
                dump_config(cfg, out / "config.yaml", header=f"train.precision={cfg.train.precision} ran as "
                                                                  f"{precision} ({why}) on {device}")
            elif overridden or changed:
                append_history(out / "config_history.yaml", ckpt["step"], overridden, changed)
        except OSError as exc:
            raise ConfigError(f"output_dir: cannot write the run folder {out}: "
                              f"{exc.strerror or exc} ({exc.filename or out})") from None
        remove_stale_temporaries(ckpt_dir)

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    model = create_model(cfg.model.preset, cfg.method, drop_path_rate=cfg.model.drop_path,
                         quick_gelu=cfg.model.quick_gelu)
    method = create_method(cfg.method, model, cfg.loss)
    if cfg.model.grad_checkpointing or cfg.model.masked_grad_checkpointing:
        model.set_grad_checkpointing(cfg.model.grad_checkpointing, masked=True)
    locked = lock_towers(model, cfg.model.lock_image, cfg.model.lock_image_unlocked_groups, cfg.model.lock_text)
    if world > 1 and device.type == "cuda":
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    method.to(device).train()

    try:
        data = build_train_data(cfg, world)
    except (ValueError, OSError) as exc:   # no shards, a missing CSV column, an empty folder, ...
        msg = str(exc)
        raise ConfigError(msg if msg.startswith("data") else f"data.path: {msg}") from None
    B, A = cfg.train.batch_size, cfg.train.accum_steps
    steps_per_epoch = data.micro_batches_per_epoch(B, world) // A
    if steps_per_epoch < 1:
        raise ConfigError(f"data: {data.num_samples} samples do not fill one step of "
                          f"{B} x {world} ranks x {A} accumulation steps")
    total_steps = cfg.train.max_steps or cfg.train.epochs * steps_per_epoch
    global_batch = B * world * A
    lr = cfg.train.lr * global_batch / cfg.train.lr_base_batch          # linear scaling rule
    warmup = cfg.train.warmup_steps or round(cfg.train.warmup_epochs * steps_per_epoch)
    optimizer = adamw(param_groups(method, cfg.train.weight_decay), lr=lr,
                      betas=(cfg.train.beta1, cfg.train.beta2), eps=cfg.train.eps)
    schedule = warmup_cosine(warmup, total_steps, lr, cfg.train.min_lr, cfg.train.warmup_start_lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    log(f"{cfg.method} on {cfg.model.preset}, {device}, precision {precision} ({why}): {total_steps} steps, "
        f"{steps_per_epoch}/epoch, global batch {global_batch} ({world} rank(s) x {B} x {A} accumulation), lr {lr:.3g}")
    if precision == "bf16" and "emulated" in why:
        log("warning: bf16 is emulated on this CPU: expect ~50x slower matmuls; use train.precision=auto")
    for warning in schedule_warnings(lr=lr, warmup=warmup, total_steps=total_steps, global_batch=global_batch,
                                     train_cfg=cfg.train):
        log(warning)
    # Counters that a checkpoint carries: skipped samples (run and current epoch), skipped steps.
    start_step, skipped_total, epoch_skipped, skipped_steps = 0, Counter(), Counter(), 0
    last_saved = None   # (path, step) of the newest checkpoint known good, for error messages
    configure_matmul(device, precision)
    scaler = grad_scaler(device, precision)     # fp16 only
    if ckpt is not None:
        method.load_state_dict(ckpt["state_dict"])
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
        if overridden:
            log(f"resume_override: applied {describe(overridden)} (recorded in config_history.yaml)")
        if changed:
            log(f"resume: {describe(changed)}")
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_step = ckpt["step"]
        skipped_total.update(ckpt.get("skipped", {}))
        epoch_skipped.update(ckpt.get("epoch_skipped", {}))
        skipped_steps = int(ckpt.get("skipped_steps", 0))
        set_rng_state(ckpt["rng"])
        last_saved = (found[1], start_step)
        if cfg.init_from:
            log(f"init_from={cfg.init_from} ignored: resuming from {found[1]} (step {start_step}) wins")
    elif cfg.init_from:   # every rank loads the same weights; optimiser, schedule and step start fresh
        log(init_from(method, cfg.init_from))
    if ckpt is None and type(method).needs_teacher:   # a resumed run has its teacher in the checkpoint
        log(load_teacher(method, cfg.model.teacher))
    if locked:
        log(f"locked (frozen, no optimiser state): {', '.join(locked)}")
    metrics = MetricsLog(out, start_step if ckpt is not None else None, is_main, cfg.logging, cfg.to_dict())
    made.clear()   # the run has begun: the folder is its own now, and a Ctrl-C from here on saves it

    net = data_parallel(method, device) if world > 1 else method
    forward = compile_for_training(net, device, cfg.train.compile_mode) if cfg.train.compile else net

    state = {"window": Counter(),   # unreadable samples met since the counters were last folded
             "shown": Counter(skipped_total),   # the skip counts the console last printed
             "position": {},   # shards: where this rank's stream stands in the current epoch
             "resume_position": resumed_position(ckpt, cfg, data.kind, rank, world, start_step, steps_per_epoch, log)}

    def fold_skips() -> None:
        """Sum this window's skipped samples over ranks into the run and epoch counters (collective)."""
        window = _all_reduce_counter(state["window"]) if world > 1 else state["window"]
        skipped_total.update(window)
        epoch_skipped.update(window)
        state["window"] = Counter()

    def save(step: int, periodic: bool) -> None:
        """Every rank calls it at the same step; rank 0 writes. A failed write stops every rank."""
        nonlocal last_saved
        fold_skips()
        positions = _gather(state["position"]) if data.kind == "shards" else None   # collective
        error = None
        if is_main:
            payload = {"format": FORMAT, "preset": model.preset.to_dict(), "method": cfg.method,
                       "method_options": cfg.loss.__dict__, "config": cfg.to_dict(), WORLD_SIZE: world, "step": step,
                       "precision": precision,
                       "epoch": step // steps_per_epoch, "state_dict": method.state_dict(),
                       "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                       "scaler": scaler.state_dict() if scaler is not None else None,
                       "skipped": dict(skipped_total), "epoch_skipped": dict(epoch_skipped),
                       "skipped_steps": skipped_steps, "rng": rng_state()}
            if positions is not None:
                payload["data_position"] = {**_stream_layout(cfg, world), "step": step, "ranks": positions}
            try:
                path = save_checkpoint(payload, ckpt_dir, step, periodic, cfg.train.keep_checkpoints)
                last_saved = (path, step)
            except OSError as exc:
                error = exc.strerror or str(exc)
        if D.any_rank_flags([error is not None], device)[0]:
            kept = (f"the previous checkpoint {last_saved[0]} (step {last_saved[1]}) is intact"
                    if last_saved else "no earlier checkpoint")
            raise RunAborted(f"{error}; {kept}; free space or fix the folder, then rerun with resume=latest"
                             if error else "rank 0 could not write a checkpoint; stopping")

    received = set()   # SIGINT / SIGTERM seen by this rank; acted on at the end of the step it arrives in
    previous_handlers = {s: signal.signal(s, lambda signum, _: received.add(signum)) for s in STOP_SIGNALS}

    progress = Progress(log, start_step=start_step, total_steps=total_steps, device=device, precision=precision,
                        flops_per_step=estimate_step_flops(method, B * A))
    bar = tqdm(total=total_steps, initial=start_step, disable=not is_main, dynamic_ncols=True, desc=cfg.method,
               mininterval=0.1 if sys.stderr.isatty() else 10.0)  # a log file gets a line every 10 s
    step, batches, epoch = start_step, None, -1
    sums, n_sums, images = Counter(), 0, 0
    t_last, bad_streak, grad_norm, pending = time.perf_counter(), 0, float("nan"), None
    try:
        while step < total_steps:
            if step // steps_per_epoch != epoch or batches is None:
                epoch = step // steps_per_epoch
                resumed = state.pop("resume_position", None)
                state["position"] = dict(resumed, roles=dict(resumed.get("roles", {}))) if resumed else {}
                batches = epoch_batches(data, cfg, epoch=epoch, rank=rank, world=world,
                                        start=(step % steps_per_epoch) * A, pin_memory=device.type == "cuda",
                                        position=resumed, track=state["position"])
            micro_batches = []
            for _ in range(A):
                try:
                    batch = next(batches)
                except StopIteration:
                    raise RunAborted(f"data: the stream of {cfg.data.path or cfg.data.source} ran dry in epoch "
                                     f"{epoch} (no readable sample left for rank {rank})") from None
                except DataFault as exc:   # raised in a loader worker: one line, not its traceback
                    raise RunAborted(exc.reason()) from None
                state["window"].update(batch.pop("skipped"))
                note_position(state["position"], batch)
                micro_batches.append({k: v.to(device, non_blocking=True) for k, v in batch.items()})
            result = train_step(net, method, optimizer, micro_batches, device=device, precision=precision,
                                grad_clip=cfg.train.grad_clip, scheduler=scheduler, forward=forward,
                                # read when the step's collective is built, after its backward passes:
                                # read before the step, a signal during it waited for the next one
                                extra_flags=lambda: [s in received for s in STOP_SIGNALS],
                                accum_negatives=cfg.train.accum_negatives, scaler=scaler)
            interrupted, terminated = result.flags
            if world == 1:   # no rank to agree with: a signal during the update itself counts too
                interrupted = interrupted or signal.SIGINT in received
                terminated = terminated or signal.SIGTERM in received
            stop_now = interrupted or terminated
            images += result.images
            step += 1
            bar.update(1)
            progress.step(step)
            epoch_end = step % steps_per_epoch == 0
            log_now = step % cfg.train.log_every == 0 or step == total_steps or epoch_end
            save_now = step % cfg.train.checkpoint_every == 0 and step < total_steps
            # The previous step's outcome is read now that this step is queued behind it (on a GPU the
            # read then costs no idle time); this step's own is read at once only where a log line, a
            # checkpoint or a stop needs it. A streak of bad steps is thus seen at most one step late.
            due = [pending] if pending is not None else []
            pending = (step, result)
            if log_now or save_now or stop_now:
                due, pending = due + [pending], None
            abort_at = None
            for at, done in due:
                sums_, grad_norm, skipped = done.read()
                if skipped:
                    skipped_steps += 1
                    bad_streak += 1
                    log(f"step {at}: non-finite loss or gradient norm; update skipped "
                        f"({bad_streak} in a row, train.max_bad_steps={cfg.train.max_bad_steps})")
                else:
                    bad_streak = 0
                    sums.update(sums_)
                    n_sums += A
                if bad_streak >= cfg.train.max_bad_steps:
                    abort_at = at
                    break
            if log_now and abort_at in (None, step):   # a streak seen a step late stops without a line
                now = time.perf_counter()
                means = {k: v / n_sums for k, v in sums.items()} if n_sums else {}
                if world > 1 and means:
                    vec = D.all_reduce_sum(torch.tensor(list(means.values()), dtype=torch.float64, device=device)) / world
                    means = dict(zip(means, vec.cpu().tolist()))
                fold_skips()
                record = log_record(step=step, steps_per_epoch=steps_per_epoch, global_batch=global_batch,
                                    lr=scheduler.get_last_lr()[0], means=means, grad_norm=float(grad_norm),
                                    images_per_sec=images / (now - t_last), skipped_total=skipped_total,
                                    skipped_steps=skipped_steps, epoch_skipped=epoch_skipped)
                metrics.write(record, log)
                if skipped_total != state["shown"]:   # the console hears of skips too, when they change
                    log(f"step {step}: {_skip_summary(skipped_total)}")
                    state["shown"] = Counter(skipped_total)
                bar.set_postfix(loss=f"{means.get('loss', float('nan')):.3f}", img_s=f"{record['images_per_sec']:.0f}")
                sums, n_sums, images, t_last = Counter(), 0, 0, now
                if epoch_end:
                    epoch_skipped.clear()
            if abort_at is not None:
                kept = (f"the last good checkpoint is {last_saved[0]} (step {last_saved[1]})" if last_saved
                        else "no checkpoint was written")
                raise RunAborted(f"{bad_streak} consecutive steps with a non-finite loss or gradient "
                                 f"(train.max_bad_steps={cfg.train.max_bad_steps}), the last at step {abort_at}; "
                                 f"stopped without saving; {kept}")
            if save_now and bad_streak == 0:
                save(step, periodic=True)   # not in a streak of bad steps: it may be the start of a divergence
            if stop_now:   # every rank: the flags were OR-ed over the ranks
                save(step, periodic=False)
                log(f"{'terminated (SIGTERM)' if terminated else 'interrupted'}: checkpoint saved at step "
                    f"{step}; continue with resume=latest")
                raise RunTerminated() if terminated else KeyboardInterrupt
        save(step, periodic=False)
        log(f"done: {step} steps; checkpoint {ckpt_dir / 'latest.pt'}")
    finally:
        bar.close()
        metrics.close()
        for s, handler in previous_handlers.items():
            signal.signal(s, handler)
    return ckpt_dir / "latest.pt"


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
