"""Vision decoder (Eq. 3): visible tokens plus [MASK] tokens -> a prediction for every patch, or
only for the patches a loss reads (the masked ones)."""
from functools import partial

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import adopt, attention
from .init import mae_init_
from .masking import take_patches
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
        adopt(self.blocks)
        self.norm = norm(width)
        self.pred = nn.Linear(width, out_dim)  # to the encoder width (RILS) or to p*p*3 pixels (MAE)
        mae_init_(self, tokens=(self.mask_token,))  # MAE's initialize_weights; mask token ~ N(0, 0.02)
        self.grad_checkpointing = False             # set by DualEncoder.set_grad_checkpointing

    def _block(self, fn, *args):
        """One block, under activation checkpointing when it is on: only its input is kept, and its
        forward runs again in the backward pass."""
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def forward(self, x: torch.Tensor, ids_restore: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, 1+L, W_enc] encoded visible tokens (cls first). Returns [B, N, out_dim], patches only;
        with `at` ([B, Q] patch indices, e.g. `masking.masked_ids`), [B, Q, out_dim], the predictions at
        those patches. The last block then computes only those outputs: every position is still
        attended to, so they equal the full output gathered at `at`, for about three quarters of the
        last block's activations and work at a mask ratio of 0.75 (the losses read masked patches only)."""
        x = self.embed(x)
        B, N = ids_restore.shape
        masked = self.mask_token.to(x.dtype).expand(B, N - (x.shape[1] - 1), -1)
        patches = torch.cat([x[:, 1:], masked], dim=1)
        patches = take_patches(patches, ids_restore)
        x = torch.cat([x[:, :1], patches], dim=1) + self.pos_embed
        for block in self.blocks if at is None else self.blocks[:-1]:
            x = self._block(block, x)
        if at is None:
            return self.pred(self.norm(x)[:, 1:])
        return self.pred(self.norm(self._block(block_outputs_at, self.blocks[-1], x, at + 1)))   # +1: cls first


def block_outputs_at(block: Block, x: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """timm's `Block` on the sequence x [B, S, W], computed only for the positions `at` [B, Q]: their
    queries attend to every position's keys and values, so the result is block(x) gathered at `at`."""
    attn = block.attn
    if attn.gate is not None:
        raise ValueError("block_outputs_at: gated attention is not supported")
    B, S, W = x.shape
    d, heads = attn.head_dim, attn.num_heads
    h = block.norm1(x)
    w, b = attn.qkv.weight, attn.qkv.bias
    q = F.linear(take_patches(h, at), w[:heads * d], None if b is None else b[:heads * d])
    kv = F.linear(h, w[heads * d:], None if b is None else b[heads * d:])
    q = attn.q_norm(q.view(B, -1, heads, d).transpose(1, 2))
    k, v = kv.view(B, S, 2, heads, d).permute(2, 0, 3, 1, 4).unbind(0)
    o = attention(q, attn.k_norm(k), v, dropout_p=attn.attn_drop.p if attn.training else 0.0)
    o = attn.proj_drop(attn.proj(attn.norm(o.transpose(1, 2).reshape(B, -1, heads * d))))
    y = take_patches(x, at) + block.drop_path1(block.ls1(o))
    return y + block.drop_path2(block.ls2(block.mlp(block.norm2(y))))
