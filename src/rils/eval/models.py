"""Models for evaluation: turn a `--checkpoint` value into (model, tokenizer, transform, content
hash), and the facts evaluation reads from a model (device, τ1, patch tokens).

  PATH                         a rils checkpoint or export, via `rils.load.load_model(PATH)`
  open_clip:MODEL[@PRETRAINED] an open_clip architecture; PRETRAINED is a tag or a weights file
                               (without it the weights are random: useful for smoke tests only)
  local-dir:PATH               an open_clip model folder (open_clip_config.json + weights)

The hash keys the feature cache: the bytes of the checkpoint file (or folder) when there is one,
otherwise the state_dict.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..factory import get_tokenizer
from ..load import load_model, run_checkpoint
from ..methods.base import MethodOptions
from ..precision import resolve_device


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Callable | None
    transform: Callable
    model_id: str
    spec: str


# ------------------------------------------------------------------------------------ identity

def fingerprint_file(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, or of every file under a folder (relative path + bytes)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def fingerprint_model(model: torch.nn.Module) -> str:
    """sha256 over the state_dict (names, dtypes, shapes and values) of a model in memory."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ------------------------------------------------------------------------------------- loading

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
    if not Path(path).exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    path = str(run_checkpoint(path))   # `--checkpoint runs/NAME`: that run's latest checkpoint
    model = load_model(path).to(device).eval()
    tokenizer = get_tokenizer(model.context_length) if getattr(model, "text", True) is not None else None
    transform = eval_transform(model.image_size, model.image_mean, model.image_std)
    return LoadedModel(model, tokenizer, transform, fingerprint_file(path), path)


def load_for_eval(spec: str | os.PathLike, device="cpu") -> LoadedModel:
    spec = str(spec)
    device = torch.device(device)
    if spec.startswith(("open_clip:", "local-dir:")):
        return _load_open_clip(spec, device)
    return _load_rils(spec, device)


# --------------------------------------------------------------------------- facts of a model

def default_device() -> str:
    """Where evaluation runs when no device is given: `rils.precision.resolve_device("auto")`."""
    return str(resolve_device("auto"))


def default_tau(model) -> float:
    """τ1 of Eq. 8 the model was trained with (`loss.tau_target`, recorded in the checkpoint and
    read into `model.method_options` by `rils.load.load_model`), else the loss default."""
    options = getattr(model, "method_options", None) or {}
    return float(options.get("tau_target", MethodOptions.tau_target))


def has_patch_tokens(model) -> bool:
    """Whether the model gives its patch tokens (`forward_features`: rils models, timm trunks)."""
    return callable(getattr(model, "forward_features", None))


def num_prefix_tokens(model) -> int:
    """Tokens before the patch tokens (cls, registers) of `model` or of its `visual.trunk`."""
    for owner in (model, getattr(getattr(model, "visual", None), "trunk", None)):
        n = getattr(owner, "num_prefix_tokens", None)
        if isinstance(n, int):
            return n
    return 1  # a cls token, as in our ViT and MAE's


def patch_tokens_projected(model, images: torch.Tensor) -> torch.Tensor:
    """[B, N, D]: θ(f^k) for every patch of the intact images (final norm applied, prefix tokens dropped).

    Works for our dual encoder, open_clip's TimmModel tower (`visual.trunk`, `visual.head.proj`) and
    open_clip's own VisionTransformer (its patch tokens after `ln_post`, times `visual.proj`).
    """
    visual = getattr(model, "visual", None)
    if has_patch_tokens(model) and callable(getattr(visual, "project", None)):
        if not hasattr(getattr(visual, "head", None), "proj"):
            why = getattr(model, "missing_parts_reason", "it was pre-trained without text")   # a timm export says so
            raise ValueError(f"this model has no image projection θ ({why}): it has no language space")
        tokens = model.forward_features(images)
        return visual.project(tokens[:, num_prefix_tokens(visual.trunk):])
    trunk = getattr(visual, "trunk", None)
    if trunk is not None and hasattr(getattr(visual, "head", None), "proj"):     # open_clip TimmModel
        return visual.head.proj(trunk.forward_features(images)[:, num_prefix_tokens(trunk):])
    if visual is not None and hasattr(visual, "output_tokens") and getattr(visual, "proj", None) is not None \
            and getattr(visual, "attn_pool", None) is None:                          # open_clip ViT
        before = visual.output_tokens
        visual.output_tokens = True
        try:
            _, tokens = visual(images)
        finally:
            visual.output_tokens = before
        return tokens @ visual.proj
    raise ValueError("per-patch distributions need the patch tokens and the image projection (a rils "
                     "model, or an open_clip ViT / timm tower)")
