"""Helpers for the evaluation tests: a tiny open_clip model (random weights, seeded), a tiny
rils-like model with a timm trunk, and small image folders. All CPU-sized: seconds, not minutes."""
from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image
from torch import nn

OPEN_CLIP_CFG = dict(embed_dim=32,
                     vision_cfg=dict(layers=1, width=64, patch_size=8, image_size=32, head_width=32),
                     text_cfg=dict(layers=1, width=64, heads=2, context_length=77, vocab_size=49408))


def make_open_clip(seed: int = 0):
    import open_clip

    torch.manual_seed(seed)
    return open_clip.CLIP(**OPEN_CLIP_CFG).eval()


def write_local_dir(path, model) -> None:
    """An open_clip model folder: what `--checkpoint local-dir:PATH` reads."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": OPEN_CLIP_CFG,
        "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}))
    torch.save(model.state_dict(), path / "open_clip_pytorch_model.bin")


class TinyRilsLike(nn.Module):
    """What evaluation needs from our dual encoder: a timm trunk, forward_features and the facts."""

    timm_model_name = "vit_tiny_patch16_224"
    timm_kwargs = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0,
                       global_pool="avg", fc_norm=False)
    image_size, image_mean, image_std = 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    def __init__(self):
        import timm

        super().__init__()
        self.visual = nn.Module()
        self.visual.trunk = timm.create_model(self.timm_model_name, pretrained=False, **self.timm_kwargs)
        self.proj = nn.Linear(32, 16, bias=False)
        self.calls = 0  # forward passes, so tests can see whether the cache was used

    def forward_features(self, images):
        self.calls += 1
        return self.visual.trunk.forward_features(images)

    def encode_image(self, images, normalize=False):
        x = self.proj(self.forward_features(images)[:, 1:].mean(1))
        return nn.functional.normalize(x, dim=-1) if normalize else x


def make_image_folder(root, classes=("cat", "dog"), per_class=3, size=16, seed=0):
    """root/<class>/<i>.png; class k's images are filled with a distinct grey level."""
    rng = np.random.default_rng(seed)
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.integers(0, 10, (size, size, 3), dtype=np.uint8)
            arr = np.full((size, size, 3), 40 + 80 * k, np.uint8) + noise
            Image.fromarray(arr).save(root / c / f"{i}.png")
    return root


def write_checkpoint(path, method: str = "clip", preset: str = "vit_nano8_32"):
    """A rils checkpoint of a freshly built `method` model (the fields `rils.load_model` reads)."""
    import rils
    from rils.checkpoint import FORMAT, save_atomic

    model = rils.create_model(preset, method=method)
    save_atomic({"format": FORMAT, "preset": model.preset.to_dict(), "method": method,
                 "state_dict": rils.create_method(method, model).state_dict()}, path)
    return path
