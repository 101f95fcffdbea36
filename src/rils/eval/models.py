"""Turn a `--checkpoint` value into (model, tokenizer, transform, content hash).

  PATH                         a rils checkpoint, via `rils.load_model(PATH)`
  open_clip:MODEL[@PRETRAINED] an open_clip architecture; PRETRAINED is a tag or a weights file
                               (without it the weights are random: useful for smoke tests only)
  local-dir:PATH               an open_clip model folder (open_clip_config.json + weights)

The hash keys the feature cache: the bytes of the checkpoint file (or folder) when there is one,
otherwise the state_dict.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .features import fingerprint_file, fingerprint_model


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Callable | None
    transform: Callable
    model_id: str
    spec: str


def eval_transform(image_size: int, mean, std):
    """Resize the short side (bicubic), centre crop, normalise: open_clip's inference transform."""
    from open_clip.transform import image_transform

    return image_transform(image_size, is_train=False, mean=tuple(mean), std=tuple(std))


def _load_open_clip(spec: str, device) -> LoadedModel:
    import open_clip

    if spec.startswith("local-dir:"):
        name, pretrained, weights = spec, None, Path(spec[len("local-dir:"):])
    else:
        name, _, pretrained = spec[len("open_clip:"):].partition("@")
        pretrained = pretrained or None
        weights = Path(pretrained) if pretrained and Path(pretrained).exists() else None
    if not name:
        raise ValueError(f"--checkpoint {spec!r} names no model")
    if spec.startswith("local-dir:") and not weights.is_dir():
        raise FileNotFoundError(f"open_clip model folder not found: {weights}")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
    except RuntimeError as e:  # unknown architecture or weights: the user's input, not a crash
        reason = str(e).split(" Available")[0]  # open_clip appends every known name
        raise ValueError(f"open_clip cannot build {spec!r}: {reason}") from None
    model.eval()
    model_id = fingerprint_file(weights) if weights is not None else fingerprint_model(model)
    return LoadedModel(model, open_clip.get_tokenizer(name), preprocess, model_id, spec)


def _load_rils(path: str, device) -> LoadedModel:
    import rils  # the dual encoder's loader and tokenizer live at the package top level

    if not Path(path).exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    model = rils.load_model(path).to(device).eval()
    tokenizer = rils.get_tokenizer(model.context_length) if getattr(model, "text", True) is not None else None
    transform = eval_transform(model.image_size, model.image_mean, model.image_std)
    return LoadedModel(model, tokenizer, transform, fingerprint_file(path), path)


def load_for_eval(spec: str | os.PathLike, device="cpu") -> LoadedModel:
    spec = str(spec)
    device = torch.device(device)
    if spec.startswith(("open_clip:", "local-dir:")):
        return _load_open_clip(spec, device)
    return _load_rils(spec, device)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
