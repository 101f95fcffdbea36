"""Text encoder (Eq. 2): open_clip's CLIP text Transformer (causal mask, EOT pooling) and BPE tokenizer.

The tower is open_clip's own, with two changes in how it is run, both exact under the causal mask:
Eq. 2 reads a single position, the end-of-text token, so the last block computes only that
position's output (its query attends to every key and value, as before), for about an eighth of the
last block's work and activations; and on a CPU, uncompiled, the padding after the batch's longest
caption is not run at all (`used_length`). The result equals the full forward gathered at the EOT token.
Parameters and state-dict names are open_clip's, so exports load as before.
"""
import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIPTextCfg, _build_text_tower
from open_clip.transformer import ResidualAttentionBlock, TextTransformer
from torch.utils.checkpoint import checkpoint

from ..presets import Preset
from .attention import adopt, attention
from .masking import take_patches


def text_cfg(preset: Preset) -> dict:
    """The open_clip `text_cfg` of a preset; also what an open_clip export writes. The activation is
    not in it: open_clip takes it as the model's `quick_gelu` (`preset.quick_gelu`)."""
    return dict(context_length=preset.context_length, vocab_size=preset.vocab_size,
                width=preset.text_width, heads=preset.text_heads, layers=preset.text_layers)


def build_text_tower(preset: Preset):
    # its nn.MultiheadAttention layers go through rils.model.attention (same parameters and names)
    tower = adopt(_build_text_tower(preset.embed_dim, CLIPTextCfg(**text_cfg(preset)), quick_gelu=preset.quick_gelu))
    tower.__class__ = EotTextTransformer   # adds no state: same parameters, names and initial values
    return tower


def get_tokenizer(context_length: int = 77):
    """CLIP BPE tokenizer (vocabulary 49,408), shipped with open_clip; works offline."""
    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length)


class EotTextTransformer(TextTransformer):
    """open_clip's `TextTransformer` whose last block runs at the end-of-text token only (Eq. 2).
    Configurations this does not cover (a class token, token outputs, other pooling, no causal mask,
    pad masks, custom blocks) take open_clip's forward unchanged."""

    def _eot_only(self) -> bool:
        blocks = self.transformer.resblocks
        return (self.pool_type == "argmax" and self.cls_emb is None and not self.output_tokens
                and self.attn_mask is not None and not self.use_pad_mask and self.transformer.batch_first
                and len(blocks) > 0 and type(blocks[-1]) is ResidualAttentionBlock
                and not hasattr(blocks[-1], "ln_1_kv") and blocks[-1].attn._qkv_same_embed_dim
                and blocks[-1].attn.bias_k is None and not blocks[-1].attn.add_zero_attn)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        if not self._eot_only():
            return super().forward(text)
        eot = text.argmax(dim=-1)   # the EOT token has the largest id (open_clip's 'argmax' pooling)
        text = text[:, :used_length(eot, text.shape[1])]
        x, attn_mask = self._embeds(text)
        attn_mask = attn_mask[:text.shape[1], :text.shape[1]]
        blocks = self.transformer.resblocks
        keep_inputs_only = self.transformer.grad_checkpointing and torch.is_grad_enabled()
        for block in blocks[:-1]:
            x = checkpoint(block, x, None, None, attn_mask, use_reentrant=False) if keep_inputs_only \
                else block(x, attn_mask=attn_mask)
        last = (blocks[-1], x, eot, attn_mask)
        h = checkpoint(block_output_at, *last, use_reentrant=False) if keep_inputs_only else block_output_at(*last)
        pooled = self.ln_final(h)    # a per-token norm: ln_final(x)[eot] = ln_final(x[eot])
        if self.text_projection is None:
            return pooled
        if isinstance(self.text_projection, torch.nn.Linear):
            return self.text_projection(pooled)
        return pooled @ self.text_projection


def used_length(eot: torch.Tensor, length: int) -> int:
    """How many leading positions the tower must run for EOT positions `eot` [B]: under the causal mask
    no position past the batch's last EOT token reaches an EOT output, so padding beyond it is dropped
    (captions are mostly far shorter than the 77-token context). Finding that maximum is a read on the
    host: free on a CPU, but a synchronisation on an accelerator and a data-dependent shape under
    torch.compile, so there the whole context runs, as before."""
    if eot.device.type != "cpu" or eot.numel() == 0 or torch.compiler.is_compiling():
        return length
    return int(eot.max()) + 1


def block_output_at(block: ResidualAttentionBlock, x: torch.Tensor, at: torch.Tensor,
                    attn_mask: torch.Tensor) -> torch.Tensor:
    """open_clip's `ResidualAttentionBlock` on x [B, S, W] under the additive mask [S, S], computed only
    at position at[b] of each row: returns block(x, attn_mask)[arange(B), at], [B, W]."""
    attn = block.attn
    B, S, W = x.shape
    heads, d = attn.num_heads, attn.head_dim
    at = at.unsqueeze(1)                                                     # [B, 1]: one position per row
    h = block.ln_1(x)
    w, b = attn.in_proj_weight, attn.in_proj_bias
    q = F.linear(take_patches(h, at), w[:W], None if b is None else b[:W])   # one query per row
    kv = F.linear(h, w[W:], None if b is None else b[W:])                   # every key and value
    q = q.view(B, 1, heads, d).transpose(1, 2)
    k, v = kv.view(B, S, 2, heads, d).permute(2, 0, 3, 1, 4).unbind(0)
    mask = attn_mask[at].to(h.dtype).view(B, 1, 1, S)                        # the query's row of the mask
    o = attention(q, k, v, attn_mask=mask, dropout_p=attn.dropout if attn.training else 0.0)
    y = take_patches(x, at) + block.ls_1(attn.out_proj(o.transpose(1, 2).reshape(B, 1, W)))
    return (y + block.ls_2(block.mlp(block.ln_2(y)))).squeeze(1)
