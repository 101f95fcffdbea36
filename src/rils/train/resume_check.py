"""What a resumed run may change of the configuration it was started with.

A resumed run continues the checkpoint's optimiser and schedule, so a key that defines the run
(method, model, batch and accumulation, world size, lr and its schedule, optimiser, seed, data,
loss) cannot change silently: the run would say one thing and do another. Such a change is refused
unless the key is listed in `resume_override=[...]`; then it is applied for real (the engine
rebuilds the lr schedule and the optimiser's hyper-parameters from the new configuration) and
recorded in `config_history.yaml`. Keys that do not change what is computed (logging, checkpoint
cadence, the run's length, data loading) change with a log line. `config.yaml` keeps the
configuration the run started with.
"""
from __future__ import annotations

import time
from pathlib import Path

import yaml

from ..presets import BEFORE_THE_FIELD

# Keys that may change on resume without an override: where things are written and how often,
# how the data is loaded, how long the run goes on, and the numerics of the same computation.
HARMLESS = ("logging.", "output_dir", "overwrite", "init_from", "train.max_steps",
            "train.checkpoint_every", "train.keep_checkpoints", "train.log_every", "train.max_bad_steps",
            "train.device", "train.precision", "train.compile", "train.compile_mode",
            "data.workers", "data.shuffle_buffer", "model.grad_checkpointing",
            "model.masked_grad_checkpointing",
            # the teacher's weights are in the checkpoint: a resume needs no teacher path
            "model.teacher")
_HOW_TO_RESUME = ("resume", "resume_override")   # say how this start happens, not what the run is
# Keys added after runs were made whose default is not what those runs did (the preset fields set as
# model.* keys, such as model.quick_gelu): a checkpoint whose config lacks one ran with the value here,
# so a resume compares against it instead of silently taking the new default.
BEFORE_THE_KEY = {f"model.{k}": v for k, v in BEFORE_THE_FIELD.items()}
WORLD_SIZE = "world_size"   # not a config key: the checkpoint records it beside the config


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _harmless(key: str) -> bool:
    return any(key == h or (h.endswith(".") and key.startswith(h)) for h in HARMLESS)


def config_changes(old: dict, new: dict) -> dict[str, tuple]:
    """{key: (checkpoint's value, new value)} for every leaf key both hold that differs (a key of
    BEFORE_THE_KEY that the checkpoint lacks holds the value it had in effect)."""
    old, new = {**BEFORE_THE_KEY, **_flat(old)}, _flat(new)
    return {k: (old[k], v) for k, v in new.items() if k in old and old[k] != v and k not in _HOW_TO_RESUME}


def check_resume(old_config: dict | None, new_config: dict, *, old_world: int | None, world: int,
                 overrides: list[str]) -> tuple[dict, dict]:
    """(defining changes allowed by `overrides`, harmless changes), or ConfigError naming each
    defining key that changed without an override. Checkpoints without a recorded world size
    (older ones) skip that comparison."""
    from .config import ConfigError

    if old_config is None:
        return {}, {}
    changes = config_changes(old_config, new_config)
    if old_world is not None and old_world != world:
        changes[WORLD_SIZE] = (old_world, world)
    harmless = {k: v for k, v in changes.items() if _harmless(k)}
    defining = {k: v for k, v in changes.items() if k not in harmless}
    refused = {k: v for k, v in defining.items() if k not in overrides}
    if refused:
        named = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
        keys = ",".join(refused)
        raise ConfigError(f"resume: the checkpoint's run was started with other settings ({named}); "
                          f"resume with the same ones, or apply them with resume_override=[{keys}]")
    return defining, harmless


def describe(changes: dict) -> str:
    return ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items())


def append_history(path: Path, step: int, overridden: dict, harmless: dict) -> None:
    """One entry per resume that changed something: the step, the time, each change and whether it
    was an override. The file is a YAML list, appended to."""
    entry = {"resumed_at_step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
             "overridden": {k: {"from": a, "to": b} for k, (a, b) in overridden.items()},
             "changed": {k: {"from": a, "to": b} for k, (a, b) in harmless.items()}}
    with open(path, "a") as fh:
        fh.write(yaml.safe_dump([entry], sort_keys=False))
