"""What `rils bench` times: one training step of a method as the engine runs it (`RilsStep`), the same
step of open_clip's own CLIP and ClipLoss at our preset's sizes (`OpenClipStep`), and a synthetic
batch for either (`_batch`). Each stepper also exposes its forward alone, for counting FLOPs."""
from __future__ import annotations

import torch

from ..factory import create_model
from ..methods import create_method
from ..methods.base import MethodOptions
from ..precision import autocast, grad_scaler
from ..presets import get_preset
from ..train.config import TrainConfig
from ..train.optim import adamw, param_groups
from ..train.step import compile_for_training, train_step


def _batch(preset, batch: int, device, views: bool, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    b = {"image": torch.randn(batch, 3, preset.image_size, preset.image_size, generator=g),
         "text": torch.randint(1, 49000, (batch, preset.context_length), generator=g)}
    b["text"][:, -1] = 49407  # end-of-text token: argmax pooling finds it
    if views:
        b["views"] = torch.randn(batch, 2, 3, preset.image_size, preset.image_size, generator=g)
    return {k: v.to(device) for k, v in b.items()}


class RilsStep:
    """The training step the engine runs (`rils.train.step.train_step`): autocast, accumulation
    over `accum_steps` micro-batches, clipping at the training default, the finiteness check, AdamW."""

    def __init__(self, method_name: str, preset_name: str, device, compile_: bool = False,
                 precision: str = "fp32", grad_clip: float = TrainConfig.grad_clip, accum_steps: int = 1,
                 grad_checkpointing: bool = False, masked_grad_checkpointing: bool = False,
                 compile_mode: str = "default"):
        model = create_model(preset_name, method=method_name)
        # as model.grad_checkpointing / model.masked_grad_checkpointing do in training
        model.set_grad_checkpointing(grad_checkpointing, masked=masked_grad_checkpointing)
        opts = MethodOptions(num_prototypes=1024)
        self.module = create_method(method_name, model, opts).to(device).train()
        self.preset = model.preset
        self.views = self.module.needs_views
        self.opt = adamw(param_groups(self.module, 0.05), lr=1e-4)   # what our engine uses
        self.fn = compile_for_training(self.module, torch.device(device), compile_mode) if compile_ else self.module
        self.device, self.precision = torch.device(device), precision
        self.grad_clip, self.accum_steps = grad_clip, accum_steps
        self.scaler = grad_scaler(self.device, precision)

    def forward(self, batch):
        with autocast(self.device, self.precision):
            return self.module(batch)

    def __call__(self, batch):
        n = batch["image"].shape[0]
        size = -(-n // self.accum_steps)
        micro = [{k: v[i:i + size] for k, v in batch.items()} for i in range(0, n, size)]
        train_step(self.module, self.module, self.opt, micro, device=self.device, precision=self.precision,
                   grad_clip=self.grad_clip, forward=self.fn, scaler=self.scaler)


class OpenClipStep:
    """open_clip's CLIP at our preset's sizes: its ViT (average pooling, as ours) and ClipLoss, with
    each tower's activation ours: GELU in the ViT (our trunk is timm's) and the preset's in the text
    tower (QuickGELU by default; it costs more than the fused GELU, so a mismatch would bias the ratio)."""

    def __init__(self, preset_name: str, device, precision: str = "fp32", grad_checkpointing: bool = False,
                 compile_: bool = False, compile_mode: str = "default"):
        import open_clip
        p = get_preset(preset_name)
        vision = dict(layers=p.depth, width=p.width, head_width=p.width // p.heads, patch_size=p.patch_size,
                      image_size=p.image_size, mlp_ratio=p.mlp_ratio, pool_type="avg")
        text = dict(context_length=p.context_length, vocab_size=p.vocab_size, width=p.text_width,
                    heads=p.text_heads, layers=p.text_layers)
        self.module = open_clip.CLIP(embed_dim=p.embed_dim, vision_cfg=vision, text_cfg=text).to(device).train()
        if p.quick_gelu:   # open_clip's quick_gelu would switch its ViT too: set the text tower's alone
            for block in self.module.transformer.resblocks:
                block.mlp.gelu = open_clip.transformer.QuickGELU()
        self.module.set_grad_checkpointing(grad_checkpointing)
        self.loss = open_clip.ClipLoss()
        self.preset = p
        self.views = False
        self.opt = torch.optim.AdamW(self.module.parameters(), lr=1e-4)  # what open_clip's trainer uses
        self.device, self.precision = torch.device(device), precision
        # as open_clip's trainer does with --torchcompile; FLOPs are counted on the eager module
        self.fn = compile_for_training(self.module, self.device, compile_mode) if compile_ else self.module

    def forward(self, batch, module=None):
        with autocast(self.device, self.precision):
            img, txt, scale = (self.module if module is None else module)(batch["image"], batch["text"])
            return self.loss(img, txt, scale)

    def __call__(self, batch):
        self.opt.zero_grad(set_to_none=True)
        self.forward(batch, self.fn).backward()
        self.opt.step()
