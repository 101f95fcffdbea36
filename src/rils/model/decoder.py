"""Vision decoder (Eq. 3): visible tokens plus [MASK] tokens -> a prediction for every patch."""
import torch
from timm.models.vision_transformer import Block
from torch import nn
from functools import partial

from .init import mae_init_
from .pos_embed import sincos_2d


class MaskedDecoder(nn.Module):
    def __init__(self, num_patches: int, grid_size: int, encoder_width: int, width: int, depth: int,
                 heads: int, out_dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.embed = nn.Linear(encoder_width, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(sincos_2d(width, grid_size), requires_grad=False)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.Sequential(*[Block(width, heads, mlp_ratio, qkv_bias=True, norm_layer=norm)
                                      for _ in range(depth)])
        self.norm = norm(width)
        self.pred = nn.Linear(width, out_dim)  # to the encoder width (RILS) or to p*p*3 pixels (MAE)
        mae_init_(self, tokens=(self.mask_token,))  # MAE's initialize_weights; mask token ~ N(0, 0.02)

    def forward(self, x: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """x: [B, 1+L, W_enc] encoded visible tokens (cls first). Returns [B, N, out_dim], patches only."""
        x = self.embed(x)
        B, N = ids_restore.shape
        masked = self.mask_token.to(x.dtype).expand(B, N - (x.shape[1] - 1), -1)
        patches = torch.cat([x[:, 1:], masked], dim=1)
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], patches], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.pred(x[:, 1:])
