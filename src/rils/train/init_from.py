"""Starting a run from other weights (`init_from`) and freezing towers (`model.lock_image`,
`model.lock_text`, LiT-style).

`init_from` loads the tensors that a method's state dict and the source share, part by part
(visual.trunk, visual.head (θ), text, logit_scale, decoder, and the method-only heads such as
image_mlp or learned_prototypes); the optimiser, schedule and step start fresh. A part present on
both sides must match key for key and shape for shape, else a one-line ConfigError; so must the text
tower's activation (`model.quick_gelu`): the same weights under QuickGELU and under GELU are two
different functions, and a run that silently swapped one for the other would start from neither."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import load_checkpoint
from ..load import VisionOnlyWarning, _is_safetensors, load_model
from ..presets import preset_from_record
from .config import ConfigError


def part_of(key: str) -> str:
    """The top-level group a method state-dict key belongs to: 'visual.trunk', 'visual.head', 'text',
    'logit_scale', 'decoder' (under the method's `model.`), or the method-only head's name."""
    if key.startswith("model."):
        rest = key[len("model."):].split(".")
        return ".".join(rest[:2]) if rest[0] == "visual" else rest[0]
    return key.split(".")[0]


def source_state(spec: str) -> dict[str, torch.Tensor]:
    """The source's tensors under method state-dict names ('model.*' plus method-only heads).
    Our checkpoints keep their method heads; a timm export gives the trunk, an open_clip export
    trunk, θ, text tower and logit scale. Anything unreadable is a one-line ConfigError."""
    return _source(spec)[0]


def _source(spec: str) -> tuple[dict[str, torch.Tensor], bool]:
    """`source_state`, and whether the source's text tower (if it has one) runs QuickGELU, as its
    recorded preset says (a record older than the setting: GELU)."""
    path = spec[len("local-dir:"):] if spec.startswith("local-dir:") else spec
    p = Path(path)
    try:
        if spec.startswith("local-dir:") or p.is_dir() or (p.is_file() and _is_safetensors(p)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", VisionOnlyWarning)
                model = load_model(spec)
            return {f"model.{k}": v for k, v in model.state_dict().items()}, model.preset.quick_gelu
        ckpt = load_checkpoint(p)
        return dict(ckpt["state_dict"]), preset_from_record(ckpt["preset"]).quick_gelu
    except (ValueError, OSError, KeyError, TypeError) as exc:
        raise ConfigError(f"init_from: {exc}") from None


def _activation(quick_gelu: bool) -> str:
    return "QuickGELU" if quick_gelu else "GELU"


_ORDER = ("visual.trunk", "visual.head", "text", "logit_scale", "decoder")


def _parts(keys) -> list[str]:
    """The parts of `keys`, the model's in the order above, then the method-only heads."""
    found = list(dict.fromkeys(part_of(k) for k in keys))
    return sorted(found, key=lambda p: _ORDER.index(p) if p in _ORDER else len(_ORDER))


def init_from(method: nn.Module, spec: str) -> str:
    """Copy the parts `method` shares with `spec` into it; returns the one-line report."""
    source, source_quick_gelu = _source(spec)
    target = method.state_dict()
    target_parts, source_parts = _parts(target), _parts(source)
    shared = [p for p in target_parts if p in source_parts]
    quick_gelu = method.model.preset.quick_gelu
    if "text" in shared and source_quick_gelu != quick_gelu:
        raise ConfigError(f"init_from: {spec}'s text tower runs {_activation(source_quick_gelu)} and this run's "
                          f"{_activation(quick_gelu)} (model.quick_gelu={str(quick_gelu).lower()}): its weights would "
                          f"compute another function; set model.quick_gelu={str(source_quick_gelu).lower()} to start "
                          f"from them")
    for key, value in target.items():
        if part_of(key) not in shared:
            continue
        if key not in source:
            raise ConfigError(f"init_from: {spec} holds part {part_of(key)} but not its key {key}")
        if tuple(source[key].shape) != tuple(value.shape):
            raise ConfigError(f"init_from: shape mismatch at {key}: {tuple(source[key].shape)} in {spec}, "
                              f"{tuple(value.shape)} in this model")
    extra = [k for k in source if part_of(k) in shared and k not in target]
    if extra:
        raise ConfigError(f"init_from: {spec} has key {extra[0]}, which this model's {part_of(extra[0])} lacks")
    method.load_state_dict({k: source[k] for k in target if part_of(k) in shared}, strict=False)
    fresh = [p for p in target_parts if p not in shared]
    ignored = [p for p in source_parts if p not in target_parts]
    return (f"init_from {spec}: loaded {', '.join(shared) or 'nothing'}; newly initialised "
            f"{', '.join(fresh) or 'nothing'}; ignored {', '.join(ignored) or 'nothing'}")


def load_teacher(method: nn.Module, spec: str) -> str:
    """Fill a method's frozen `teacher` image tower (trunk and θ) from `spec` (`model.teacher`): any
    run of ours with an image projection, or an open_clip export; returns the one-line report."""
    source = source_state(spec)
    want = method.teacher.state_dict()
    prefix = "model.visual."
    missing = [k for k in want if prefix + k not in source]
    if missing:
        has_head = any(k.startswith(prefix + "head.") for k in source)
        why = "no image projection θ (a run without a text tower?)" if not has_head else f"no key {prefix + missing[0]}"
        raise ConfigError(f"model.teacher: {spec} has {why}; the teacher must be a CLIP-style run (clip, slip, rils, ...) "
                          f"of the same preset")
    for k, v in want.items():
        if tuple(source[prefix + k].shape) != tuple(v.shape):
            raise ConfigError(f"model.teacher: shape mismatch at visual.{k}: {tuple(source[prefix + k].shape)} in "
                              f"{spec}, {tuple(v.shape)} in this model (the teacher must have the same preset)")
    method.teacher.load_state_dict({k: source[prefix + k] for k in want})
    method.teacher.requires_grad_(False)
    return f"teacher {spec}: image trunk and θ loaded, frozen"


def lock_towers(model: nn.Module, lock_image: bool, unlocked_groups: int, lock_text: bool) -> list[str]:
    """Freeze (requires_grad False) the image tower (trunk and θ; the last `unlocked_groups` blocks
    and the final norm stay trainable) and/or the text tower (the logit scale stays trainable).
    Parameters frozen before (the fixed positions) stay frozen. Returns what was locked, for the log."""
    said = []
    if lock_image:
        trainable = {id(p) for p in model.visual.parameters() if p.requires_grad}
        model.visual.requires_grad_(False)
        trunk = model.visual.trunk
        if unlocked_groups:
            for mod in [*trunk.blocks[-unlocked_groups:], trunk.norm,
                        getattr(trunk, "fc_norm", None), getattr(trunk, "head", None)]:
                for p in (mod.parameters() if mod is not None else ()):
                    if id(p) in trainable:
                        p.requires_grad_(True)
        said.append("image tower" + (f" (last {unlocked_groups} block(s) and final norm trainable)"
                                     if unlocked_groups else ""))
    if lock_text and model.text is not None:
        model.text.requires_grad_(False)
        said.append("text tower")
    return said
