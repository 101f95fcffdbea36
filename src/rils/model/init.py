"""MAE's `initialize_weights`, which the official RILS code applies to its encoder and decoder."""
from __future__ import annotations

import torch
from torch import nn


def _linear_and_norm(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)        # "following official JAX ViT" (MAE)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        if m.weight is not None:
            nn.init.ones_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


@torch.no_grad()
def mae_init_(module: nn.Module, *, patch_conv: nn.Conv2d | None = None, tokens=()) -> None:
    """xavier_uniform for every nn.Linear weight (bias 0), LayerNorm weight 1 and bias 0; the patch
    embedding conv initialised like a Linear (xavier_uniform on its weight viewed as [out, -1]; its
    bias keeps its default, as in MAE); the `tokens` (cls, mask) ~ N(0, 0.02)."""
    module.apply(_linear_and_norm)
    if patch_conv is not None:
        w = patch_conv.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    for t in tokens:
        nn.init.normal_(t, std=0.02)
