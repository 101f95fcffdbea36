"""Vision encoder: a plain timm VisionTransformer trunk driven part by part for masked encoding (Eq. 1)."""
from __future__ import annotations

import timm
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..presets import Preset
from .attention import adopt
from .init import mae_init_
from .masking import take_patches
from .pos_embed import sincos_2d


class VisionEncoder(nn.Module):
    """`trunk` is a timm ViT (cls token, fixed sin-cos positions); `head.proj` is θ (Eq. 4, 7).

    Names follow open_clip's TimmModel (`trunk`, `head.proj`) so the tower maps onto it one to one.
    """

    def __init__(self, preset: Preset, with_projection: bool = True, drop_path_rate: float = 0.0):
        super().__init__()
        self.trunk = timm.create_model(preset.timm_model_name, pretrained=False,
                                       drop_path_rate=drop_path_rate, **preset.timm_kwargs())
        adopt(self.trunk)   # attention through rils.model.attention (a faster bf16 backward on CPUs)
        # MAE's initialize_weights, as the official RILS encoder: xavier Linears, unit LayerNorms,
        # the patch conv as a Linear, cls ~ N(0, 0.02) (timm's own init differs).
        mae_init_(self.trunk, patch_conv=self.trunk.patch_embed.proj, tokens=(self.trunk.cls_token,))
        # Fixed 2-D sin-cos position embedding, as in MAE; kept as a (frozen) parameter so the
        # state dict stays that of a plain timm ViT.
        self.trunk.pos_embed.data.copy_(sincos_2d(preset.width, preset.grid_size))
        self.trunk.pos_embed.requires_grad_(False)
        self.head = nn.Module()
        if with_projection:
            self.head.proj = nn.Linear(preset.width, preset.embed_dim, bias=False)
            # The official code's image_projection: N(0, width^-0.5).
            nn.init.normal_(self.head.proj.weight, std=preset.width ** -0.5)
        self.grad_checkpointing = False          # every pass through the trunk
        self.masked_grad_checkpointing = False   # the masked pass only (DualEncoder.set_grad_checkpointing)

    @property
    def num_patches(self) -> int:
        return self.trunk.patch_embed.num_patches

    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, N, W] patch embeddings with positions added, computed once per step
        and shared by the intact and the masked pass (their results are identical)."""
        return self.trunk.patch_embed(images) + self.trunk.pos_embed[:, 1:]

    def encode_patches(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encode embedded patches (all, or the visible `ids_keep`); returns [B, 1+L, W] after the final norm."""
        if ids_keep is not None:
            x = take_patches(x, ids_keep)
        cls = (self.trunk.cls_token + self.trunk.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        x = self.trunk.norm_pre(self.trunk.pos_drop(x))
        if self.training and (self.grad_checkpointing or (ids_keep is not None and self.masked_grad_checkpointing)):
            for blk in self.trunk.blocks:
                x = checkpoint(blk, x, use_reentrant=False)
        else:
            x = self.trunk.blocks(x)
        return self.trunk.norm(x)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_patches(self.embed_patches(images))

    @staticmethod
    def pool(tokens: torch.Tensor) -> torch.Tensor:
        """f̄ (Sec. 3.2): mean of the patch tokens, cls excluded."""
        return tokens[:, 1:].mean(dim=1)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """θ(·) (Eq. 4 and 7)."""
        return self.head.proj(x)
