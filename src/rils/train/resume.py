"""Where a resumed run starts: the newest good checkpoint, the random state it saved, and where each
rank's shard stream stood."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_checkpoint, sidecar_path
from .config import Config, ConfigError


@dataclass
class Resumed:
    """The checkpoint a run continues (None: it starts fresh) and what its configuration changed."""
    ckpt: dict | None = None
    path: Path | None = None
    overridden: dict = field(default_factory=dict)   # defining keys applied through resume_override
    changed: dict = field(default_factory=dict)      # keys that change nothing computed


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


def stream_layout(cfg: Config, world: int) -> dict:
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
    layout = stream_layout(cfg, world)
    if recorded.get("step") != start_step or any(recorded.get(k) != v for k, v in layout.items()):
        log("resume: the checkpoint holds no data position for this data layout; reading the batches "
            "this epoch has used again")
        return None
    return recorded["ranks"][rank]
