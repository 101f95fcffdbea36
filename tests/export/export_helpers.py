"""Helpers for the export / viz / patchseg tests (imported by their conftest and tests)."""
from __future__ import annotations

import torch

import rils


def perturbed(preset: str = "vit_nano8_32", method: str = "rils", seed: int = 0, **preset_overrides):
    """A model whose weights are all non-trivial (a zero-initialised bias cannot hide a mapping
    mistake); positions stay the fixed sin-cos table, as in training."""
    torch.manual_seed(seed)
    model = rils.create_model(preset, method=method, **preset_overrides)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "visual.trunk.pos_embed":
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def images(n: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def max_diff(a, b) -> float:
    return float((a.float() - b.float()).abs().max())
