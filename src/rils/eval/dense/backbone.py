"""The pre-trained trunk as a plain timm ViT at the fine-tuning resolution.

Dense fine-tuning runs at another size than pre-training (ADE20K: 512 px; a 224-px ViT-B/16 then
has a 32×32 grid instead of 14×14): the absolute position embedding is resampled (bicubic, timm's
`resample_abs_pos_embed`, as MAE's `interpolate_pos_embed` and BEiT's segmentation code do); every
other weight is the pre-trained one. Fine-tuning trains the positions like any weight, as MAE
does, even where pre-training kept them fixed (sin-cos).
"""
from __future__ import annotations

from torch import nn


def trunk_of(model) -> tuple[nn.Module, str, dict]:
    """(trunk, timm name, timm kwargs) of a rils model, or a one-line error for anything else."""
    name, kwargs = getattr(model, "timm_model_name", None), getattr(model, "timm_kwargs", None)
    trunk = getattr(getattr(model, "visual", None), "trunk", None)
    if not isinstance(name, str) or not isinstance(kwargs, dict) or trunk is None:
        raise ValueError("dense fine-tuning needs a rils model (a checkpoint, or a timm or open_clip "
                         "export of one); this model has no `visual.trunk` with timm settings")
    return trunk, name, dict(kwargs)


def check_size(image_size: int, patch_size: int) -> None:
    if image_size < patch_size or image_size % patch_size:
        raise ValueError(f"--size {image_size} must be a positive multiple of the patch size {patch_size}")


def resampled_state(trunk: nn.Module, grid: int) -> dict:
    """`trunk`'s state dict with its position embedding resampled to a `grid`×`grid` patch grid."""
    from timm.layers import resample_abs_pos_embed

    state = {k: v.detach().clone() for k, v in trunk.state_dict().items()}
    prefix = getattr(trunk, "num_prefix_tokens", 1)
    state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"].float(), new_size=(grid, grid),
                                                num_prefix_tokens=prefix).to(state["pos_embed"].dtype)
    return state


def vit_trunk(model, image_size: int, drop_path_rate: float = 0.1) -> nn.Module:
    """A timm VisionTransformer holding `model`'s trunk weights, built for `image_size` inputs."""
    import timm

    trunk, name, kwargs = trunk_of(model)
    patch = int(kwargs.get("patch_size", 16))
    check_size(image_size, patch)
    kwargs.update(img_size=image_size, drop_path_rate=drop_path_rate, num_classes=0)
    net = timm.create_model(name, pretrained=False, **kwargs)
    net.load_state_dict(resampled_state(trunk, image_size // patch), strict=True)
    for p in net.parameters():
        p.requires_grad_(True)
    return net


def block_indices(depth: int) -> list[int]:
    """0-based indices of the blocks whose outputs feed the 4-level pyramid: blocks depth/3,
    depth/2, 2·depth/3 and depth (1-based), i.e. BEiT's and MMSeg's MAE `out_indices` [3, 5, 7, 11]
    for ViT-B and [7, 11, 15, 23] for ViT-L. Shallow test trunks repeat blocks rather than fail."""
    fractions = ((1, 3), (1, 2), (2, 3), (1, 1))
    return [max(0, -(-depth * a // b) - 1) for a, b in fractions]
