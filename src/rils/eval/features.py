"""Frozen-feature extraction with an on-disk cache.

Features are computed once per (model weights, dataset images, transform, feature kind, precision)
and stored as `<cache_dir>/<sha256>.pt`. The model part of the key is a content hash: of the
checkpoint file's bytes when evaluating a file, of the state_dict tensors for a model in memory, so
a changed checkpoint never reuses stale features.

Feature kinds:
  "embed"  - `encode_image(images)`, the joint-space embedding (not normalised).
  "pooled" - the mean of the patch tokens after the final norm, cls excluded:
             `forward_features(images)[:, num_prefix_tokens:].mean(1)`. This is RILS's global image
             feature (Sec. 3.2) before the projection θ, and what MAE's global-pool probe uses. A
             model without `forward_features` (e.g. open_clip's) falls back to "embed"; the
             returned kind says which one was used.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm import tqdm

from ..precision import autocast, resolve_precision
from .datasets import UnreadableImage
from .models import fingerprint_model, has_patch_tokens, num_prefix_tokens

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """$RILS_CACHE/features when RILS_CACHE is set, else ~/.cache/rils/features."""
    root = os.environ.get("RILS_CACHE")
    return Path(root) / "features" if root else Path.home() / ".cache" / "rils" / "features"


def transform_id(transform) -> str:
    # repr() of a torchvision pipeline lists its steps and their arguments; function addresses
    # ("at 0x7f...") differ between processes and would defeat the cache, so they are dropped.
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(transform))


def model_device(model: torch.nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


@contextmanager
def eval_mode(model: torch.nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _encode(model, images: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "pooled":
        tokens = model.forward_features(images)
        return tokens[:, num_prefix_tokens(model):].mean(dim=1)
    return model.encode_image(images)


def image_features(model, dataset, transform, *, kind: str = "embed", batch_size: int = 64,
                   device=None, precision: str = "auto", num_workers: int = 0, use_cache: bool = True,
                   cache_dir: str | os.PathLike | None = None, model_id: str | None = None,
                   progress: bool = True) -> tuple[torch.Tensor, str]:
    """Features [N, D] (float32, CPU) of every image of `dataset`, in order, and the kind used.

    `model_id` identifies the weights (e.g. `fingerprint_file(checkpoint)`); when None and the
    cache is on, the state_dict is hashed. `precision`: "auto", "bf16" or "fp32" (see rils.precision).
    """
    if kind not in ("embed", "pooled"):
        raise ValueError(f"feature kind must be 'embed' or 'pooled', not {kind!r}")
    if kind == "pooled" and not has_patch_tokens(model):
        kind = "embed"
    device = torch.device(device) if device is not None else model_device(model)
    precision = resolve_precision(precision, device)[0]
    path = None
    if use_cache:
        # "amp" (bf16 autocast or not) is the key's name for the precision since version 1.
        key = {"version": CACHE_VERSION, "model": model_id or fingerprint_model(model),
               "data": dataset.cache_id, "transform": transform_id(transform), "kind": kind,
               "amp": precision == "bf16"}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        path = Path(cache_dir or default_cache_dir()) / f"{digest}.pt"
        if path.is_file():
            return torch.load(path, map_location="cpu", weights_only=True)["features"], kind

    loader = torch.utils.data.DataLoader(dataset.with_transform(transform), batch_size=batch_size,
                                         shuffle=False, num_workers=num_workers,
                                         pin_memory=device.type == "cuda")
    chunks = []
    bar = tqdm(loader, desc=f"features {dataset.name} ({dataset.split})", unit="batch",
               disable=not progress, leave=False)
    with eval_mode(model), torch.inference_mode(), autocast(device, precision):
        try:
            for images, _ in bar:
                chunks.append(_encode(model, images.to(device, non_blocking=True), kind).float().cpu())
        except UnreadableImage as exc:   # one line, not the loader worker's traceback
            raise ValueError(exc.reason()) from None
    features = torch.cat(chunks)

    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"features": features, "key": json.dumps(key)}, tmp)
        os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    return features, kind


def text_features(model, tokenizer, texts: list[str], *, batch_size: int = 256, device=None,
                  precision: str = "auto", progress: bool = True) -> torch.Tensor:
    """`encode_text` of `texts` in batches, [len(texts), D] float32 on CPU (not normalised)."""
    device = torch.device(device) if device is not None else model_device(model)
    out = []
    starts = range(0, len(texts), batch_size)
    with eval_mode(model), torch.inference_mode(), autocast(device, precision):
        for s in tqdm(starts, desc="text features", unit="batch", disable=not progress, leave=False):
            tokens = tokenizer(texts[s:s + batch_size]).to(device)
            out.append(model.encode_text(tokens).float().cpu())
    return torch.cat(out)
