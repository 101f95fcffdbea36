"""The pre-training loop: one screen from batch to optimiser step, then logs and checkpoints."""
from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from .. import create_method, create_model
from .. import distributed as D
from ..checkpoint import FORMAT, load_checkpoint, save_atomic
from .config import Config, dump_config
from .data import build_train_data, epoch_batches
from .optim import param_groups, warmup_cosine


def setup_distributed(cfg: Config):
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; gloo on CPU, NCCL on GPU."""
    use_cuda = cfg.train.device == "cuda" or (cfg.train.device == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


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


def find_resume(cfg: Config, ckpt_dir: Path, log) -> dict | None:
    """`resume=latest` takes the newest readable checkpoint: latest.pt, else the periodic ones."""
    if not cfg.resume:
        return None
    if cfg.resume != "latest":
        return load_checkpoint(cfg.resume)
    candidates = [ckpt_dir / "latest.pt"] + sorted(ckpt_dir.glob("step_*.pt"), reverse=True)
    for path in candidates:
        if path.is_file():
            try:
                ckpt = load_checkpoint(path)
                log(f"resuming from {path} (step {ckpt['step']})")
                return ckpt
            except ValueError as exc:
                log(f"warning: {exc}; trying an older checkpoint")
    log(f"resume=latest: no checkpoint in {ckpt_dir}; starting from scratch")
    return None


class MetricsLog:
    """metrics.jsonl (one object per logged step) and TensorBoard, written by rank 0 only."""

    def __init__(self, out: Path, resume_step: int | None, enabled: bool):
        self.enabled = enabled
        self.path = out / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            # drop what the interrupted run logged after its checkpoint: it is about to be redone
            keep = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            self.path.write_text("".join(k + "\n" for k in keep))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        from torch.utils.tensorboard import SummaryWriter
        self.tb = SummaryWriter(str(out / "tb"))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        for k, v in record.items():
            if isinstance(v, (int, float)) and k not in ("step",):
                self.tb.add_scalar(k, v, record["step"])
            elif isinstance(v, dict):
                for kk, vv in v.items():
                    self.tb.add_scalar(f"{k}/{kk}", vv, record["step"])

    def close(self):
        if self.tb is not None:
            self.tb.close()


def train(cfg: Config) -> Path:
    device = setup_distributed(cfg)
    rank, world = D.rank(), D.world_size()
    is_main = rank == 0
    log = (lambda msg: print(f"[rils] {msg}", file=sys.stderr, flush=True)) if is_main else (lambda msg: None)
    out = Path(cfg.output_dir)
    ckpt_dir = out / "checkpoints"
    if is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, out / "config.yaml")

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    model = create_model(cfg.model.preset, cfg.method, drop_path_rate=cfg.model.drop_path)
    method = create_method(cfg.method, model, cfg.loss)
    if cfg.model.grad_checkpointing:
        model.set_grad_checkpointing(True)
    if world > 1 and device.type == "cuda":
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    method.to(device).train()

    data = build_train_data(cfg)
    B, A = cfg.train.batch_size, cfg.train.accum_steps
    steps_per_epoch = data.micro_batches_per_epoch(B, world) // A
    if steps_per_epoch < 1:
        raise ValueError(f"data: {data.num_samples} samples do not fill one step of "
                         f"{B} x {world} ranks x {A} accumulation steps")
    total_steps = cfg.train.max_steps or cfg.train.epochs * steps_per_epoch
    global_batch = B * world * A
    lr = cfg.train.lr * global_batch / cfg.train.lr_base_batch          # linear scaling rule
    warmup = cfg.train.warmup_steps or round(cfg.train.warmup_epochs * steps_per_epoch)
    optimizer = torch.optim.AdamW(param_groups(method, cfg.train.weight_decay), lr=lr,
                                  betas=(cfg.train.beta1, cfg.train.beta2), eps=cfg.train.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, total_steps, lr, cfg.train.min_lr))

    start_step, skipped_total = 0, Counter()
    ckpt = find_resume(cfg, ckpt_dir, log)
    if ckpt is not None:
        method.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_step = ckpt["step"]
        skipped_total.update(ckpt.get("skipped", {}))
        set_rng_state(ckpt["rng"])
    metrics = MetricsLog(out, start_step if ckpt is not None else None, is_main)

    net = DDP(method, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else method
    step_fn = torch.compile(net) if cfg.train.compile else net
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.train.precision == "bf16")

    def save(step: int, periodic: bool) -> None:
        if not is_main:
            return
        state = {"format": FORMAT, "preset": model.preset.to_dict(), "method": cfg.method,
                 "method_options": cfg.loss.__dict__, "config": cfg.to_dict(), "step": step,
                 "epoch": step // steps_per_epoch, "state_dict": method.state_dict(),
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "skipped": dict(skipped_total), "rng": rng_state()}
        target = ckpt_dir / (f"step_{step:08d}.pt" if periodic else "latest.pt")
        save_atomic(state, target)
        if periodic:
            tmp = ckpt_dir / ".latest.pt.link"
            tmp.unlink(missing_ok=True)
            os.link(target, tmp)           # latest.pt without writing the bytes twice
            os.replace(tmp, ckpt_dir / "latest.pt")
            for old in sorted(ckpt_dir.glob("step_*.pt"))[:-cfg.train.keep_checkpoints or None]:
                old.unlink()

    stop = {"flag": False}
    previous_sigint = signal.signal(signal.SIGINT, lambda *_: stop.__setitem__("flag", True))

    log(f"{cfg.method} on {cfg.model.preset}: {total_steps} steps, {steps_per_epoch}/epoch, global batch "
        f"{global_batch} ({world} rank(s) x {B} x {A} accumulation), lr {lr:.3g}, {device.type}, {cfg.train.precision}")
    bar = tqdm(total=total_steps, initial=start_step, disable=not is_main, dynamic_ncols=True, desc=cfg.method,
               mininterval=0.1 if sys.stderr.isatty() else 10.0)  # a log file gets a line every 10 s
    step, batches, epoch = start_step, None, -1
    sums, n_sums, images, skipped_window = Counter(), 0, 0, Counter()
    t_last, nonfinite = time.perf_counter(), 0
    try:
        while step < total_steps:
            if step // steps_per_epoch != epoch or batches is None:
                epoch = step // steps_per_epoch
                batches = epoch_batches(data, cfg, epoch=epoch, rank=rank, world=world,
                                        start=(step % steps_per_epoch) * A, pin_memory=device.type == "cuda")
            optimizer.zero_grad(set_to_none=True)
            for micro in range(A):
                batch = next(batches)
                skipped_window.update(batch.pop("skipped"))
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                sync = micro == A - 1 or world == 1
                ctx = net.no_sync() if (world > 1 and not sync) else _null()
                with ctx, torch.autocast(**amp):
                    outputs = step_fn(batch)
                (outputs["loss"] / A).backward()
                for k, v in outputs.items():
                    sums[k] += float(v.detach())
                n_sums += 1
                images += batch["image"].shape[0] * world
            grad_norm = torch.nn.utils.clip_grad_norm_(method.parameters(), cfg.train.grad_clip or float("inf"))
            if torch.isfinite(grad_norm):
                optimizer.step()
                nonfinite = 0
            else:  # a non-finite gradient never reaches the weights
                nonfinite += 1
                log(f"step {step}: non-finite gradient norm, update skipped")
            scheduler.step()
            model.clamp_logit_scale()
            step += 1
            bar.update(1)

            if step % cfg.train.log_every == 0 or step == total_steps:
                now = time.perf_counter()
                means = {k: v / n_sums for k, v in sums.items()}
                if world > 1:
                    vec = D.all_reduce_sum(torch.tensor(list(means.values()), dtype=torch.float64, device=device)) / world
                    means = dict(zip(means, vec.cpu().tolist()))
                    skipped_window = _all_reduce_counter(skipped_window)
                skipped_total.update(skipped_window)
                record = {"step": step, "epoch": round(step / steps_per_epoch, 4),
                          "lr": scheduler.get_last_lr()[0], **means,
                          "grad_norm": float(grad_norm), "images_per_sec": images / (now - t_last),
                          "skipped": sum(skipped_total.values()), "skipped_by_reason": dict(skipped_total)}
                metrics.write(record)
                bar.set_postfix(loss=f"{means['loss']:.3f}", img_s=f"{record['images_per_sec']:.0f}")
                sums, n_sums, images, skipped_window, t_last = Counter(), 0, 0, Counter(), now
            if step % cfg.train.checkpoint_every == 0 and step < total_steps:
                save(step, periodic=True)
            if _any_rank(stop["flag"], world, device):
                save(step, periodic=False)
                log(f"interrupted: checkpoint saved at step {step}; continue with resume=latest")
                raise KeyboardInterrupt
        save(step, periodic=False)
        log(f"done: {step} steps; checkpoint {ckpt_dir / 'latest.pt'}")
    finally:
        bar.close()
        metrics.close()
        signal.signal(signal.SIGINT, previous_sigint)
    return ckpt_dir / "latest.pt"


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _any_rank(flag: bool, world: int, device) -> bool:
    """Ranks must stop at the same step, or the next collective would hang."""
    if world == 1:
        return flag
    t = torch.tensor(float(flag), device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def _all_reduce_counter(counter: Counter) -> Counter:
    """Sum skip counts over ranks; reasons differ per rank, so exchange them as objects."""
    gathered = [None] * D.world_size()
    dist.all_gather_object(gathered, dict(counter))
    total = Counter()
    for c in gathered:
        total.update(c)
    return total
