"""Scaled dot-product attention for every tower, through one function.

`attention()` is `F.scaled_dot_product_attention`, except where PyTorch's own kernel is slow: on a
CPU, in bf16 (or fp16), when gradients are needed and PyTorch would pick its CPU flash kernel. That
kernel's *backward* in bf16 takes 3-6x as long as the same kernel in fp32 at the short sequences of
our presets (17-77 tokens), and a quarter to a third of a whole bf16 training step went into it
(operator profile of `rils bench --profile --preset vit_ti8_64 --precision bf16`). There the forward
is PyTorch's bf16 flash kernel, unchanged (same output, same saved tensors), and the backward is the
same kernel run in fp32 on upcast copies, one layer at a time: faster, and at least as accurate as
the bf16 backward. Everywhere else (GPUs, fp32, inference, dropout, masks the fast path does not
take) it is the plain call, so results there are unchanged.

`adopt(module)` points the attention layers of a timm ViT and of open_clip's text tower at it,
in place, keeping their parameters and state-dict names (exports load into timm and open_clip as
before).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention as TimmAttention
from torch import nn

_REDUCED = (torch.bfloat16, torch.float16)
_FLASH = 1   # sdp::SDPBackend::flash_attention, what torch._fused_sdp_choice answers


def _has_cpu_flash_kernels() -> bool:
    """PyTorch's CPU flash forward and backward ops (torch >= 2.2); older versions take the plain call."""
    try:
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
        return hasattr(torch, "_fused_sdp_choice")
    except (AttributeError, RuntimeError):
        return False


_CPU_FLASH = _has_cpu_flash_kernels()


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
              dropout_p: float = 0.0, is_causal: bool = False) -> torch.Tensor:
    """softmax(q kᵀ / √d + mask) v for q, k, v [B, H, L, d], as `F.scaled_dot_product_attention`."""
    if _fp32_backward_pays(q, k, v, attn_mask, dropout_p, is_causal):
        return _FlashAttentionFp32Backward.apply(q, k, v, attn_mask, is_causal)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal)


def _fp32_backward_pays(q, k, v, attn_mask, dropout_p, is_causal) -> bool:
    if not _CPU_FLASH or q.device.type != "cpu" or q.dtype not in _REDUCED or not (q.dtype == k.dtype == v.dtype):
        return False
    if not torch.is_grad_enabled() or not (q.requires_grad or k.requires_grad or v.requires_grad):
        return False
    if dropout_p != 0.0 or q.dim() != 4 or q.shape[-1] != v.shape[-1]:
        return False
    if attn_mask is not None and (attn_mask.requires_grad or attn_mask.dim() not in (2, 4)
                                  or attn_mask.dtype not in (q.dtype, torch.float32)):
        return False
    # Only where PyTorch itself would run its CPU flash kernel (eagerly, this honours `sdpa_kernel` too).
    if torch.compiler.is_compiling():
        return _cpu_flash_rule(q, k, v)
    return torch._fused_sdp_choice(q, k, v, attn_mask, dropout_p, is_causal) == _FLASH


def _cpu_flash_rule(q, k, v) -> bool:
    """PyTorch's CPU choice of its flash kernel, with its default kernel settings, for inputs that
    passed `_fp32_backward_pays`'s other checks, written out for torch.compile: the private choice
    (and the kernel settings) come back as plain Python values, which dynamo cannot put in a graph, so
    it would split the graph at every attention layer. Compiled, an `sdpa_kernel` choice therefore
    does not reach this path. tests/test_attention.py checks the rule against the private choice."""
    return (q.stride(-1) == k.stride(-1) == v.stride(-1) == 1
            and q.shape[:2] == k.shape[:2] == v.shape[:2] and min(q.shape[-2], k.shape[-2]) > 0)


class _FlashAttentionFp32Backward(torch.autograd.Function):
    """PyTorch's CPU flash attention: forward in the inputs' precision, backward in fp32."""

    @staticmethod
    def forward(ctx, q, k, v, attn_mask, is_causal):
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, is_causal, attn_mask=attn_mask)
        ctx.save_for_backward(q, k, v, out, lse, attn_mask)
        ctx.is_causal = is_causal
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse, attn_mask = ctx.saved_tensors
        # lse is already fp32 (the kernel accumulates in fp32); `out` is the rounded output, as the
        # bf16 backward reads it too.
        gq, gk, gv = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            grad_out.float(), q.float(), k.float(), v.float(), out.float(), lse, 0.0, ctx.is_causal,
            attn_mask=None if attn_mask is None else attn_mask.float())
        return gq.to(q.dtype), gk.to(k.dtype), gv.to(v.dtype), None, None


class ViTAttention(TimmAttention):
    """timm's ViT attention layer (same parameters, same names) with its core through `attention()`."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False):
        if getattr(self, "gate", None) is not None or not self.fused_attn:
            return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        x = attention(q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop.p if self.training else 0.0,
                      is_causal=is_causal)
        x = self.norm(x.transpose(1, 2).reshape(B, N, self.num_heads * self.head_dim))
        return self.proj_drop(self.proj(x))


class SelfAttention(nn.MultiheadAttention):
    """`nn.MultiheadAttention` (same parameters, same names) whose self-attention without weights,
    the call open_clip's text blocks make, goes through `attention()`; any other call is the parent's."""

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        plain = (query is key and key is value and self.batch_first and self._qkv_same_embed_dim
                 and not need_weights and key_padding_mask is None and self.bias_k is None
                 and not self.add_zero_attn and not is_causal and query.dim() == 3
                 # a boolean mask means "masked" here and "kept" in F.scaled_dot_product_attention
                 and (attn_mask is None or (attn_mask.dim() == 2 and attn_mask.is_floating_point())))
        if not plain:
            return super().forward(query, key, value, key_padding_mask=key_padding_mask,
                                   need_weights=need_weights, attn_mask=attn_mask,
                                   average_attn_weights=average_attn_weights, is_causal=is_causal)
        B, L, E = query.shape
        qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(B, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        o = attention(q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(o.transpose(1, 2).reshape(B, L, E)), None


_ADOPTED = {TimmAttention: ViTAttention, nn.MultiheadAttention: SelfAttention}


def adopt(module: nn.Module) -> nn.Module:
    """Point every timm ViT attention and `nn.MultiheadAttention` inside `module` at `attention()`.

    The layers change class in place to a subclass that adds no state: parameters, initial values
    (no random numbers are drawn) and state-dict names stay those of timm and open_clip."""
    for m in module.modules():
        new = _ADOPTED.get(type(m))
        if new is not None:
            m.__class__ = new
    return module
