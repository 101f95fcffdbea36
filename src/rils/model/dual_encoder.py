"""The dual encoder: vision encoder (+θ), optional decoder, optional text tower (+φ) and logit scale."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..presets import IMAGE_MEAN, IMAGE_STD, Preset
from .decoder import MaskedDecoder
from .text import build_text_tower
from .vision import VisionEncoder

LOGIT_SCALE_INIT = math.log(1 / 0.07)
LOGIT_SCALE_MAX = 100.0


class DualEncoder(nn.Module):
    def __init__(self, preset: Preset, text: bool = True, decoder: str | None = "latent",
                 projection: bool | None = None, drop_path_rate: float = 0.0):
        super().__init__()
        self.preset = preset
        projection = text if projection is None else projection
        self.visual = VisionEncoder(preset, with_projection=projection, drop_path_rate=drop_path_rate)
        self.text = build_text_tower(preset) if text else None
        # Learnable temperature σ (Eq. 5), stored as log-scale like CLIP; exp() clamped at 100.
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT)) if text else None
        self.decoder = None
        if decoder is not None:
            out_dim = preset.width if decoder == "latent" else preset.patch_size ** 2 * 3
            self.decoder = MaskedDecoder(preset.num_patches, preset.grid_size, preset.width,
                                         preset.decoder_width, preset.decoder_depth,
                                         preset.decoder_heads or preset.heads, out_dim, preset.mlp_ratio)
        self.decoder_target = decoder

    # --- facts other tools need (evaluation transforms, timm and open_clip exports) ---
    image_mean, image_std = IMAGE_MEAN, IMAGE_STD
    # Why encode_image / encode_text are missing, for their errors; rils.load gives a timm export
    # its own reason (the file holds the trunk only, whatever the run trained).
    missing_parts_reason = "it was pre-trained without text"

    @property
    def image_size(self) -> int:
        return self.preset.image_size

    @property
    def context_length(self) -> int:
        return self.preset.context_length

    @property
    def timm_model_name(self) -> str:
        return self.preset.timm_model_name

    @property
    def timm_kwargs(self) -> dict:
        return self.preset.timm_kwargs()

    # --- the encoders ---
    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 1+N, W]: all tokens after the final norm, as timm's `forward_features`."""
        return self.visual.forward_features(images)

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """z^I before normalisation (Eq. 4): θ(mean of the intact image's patch tokens)."""
        if not hasattr(self.visual.head, "proj"):
            raise RuntimeError(f"this model has no image projection θ ({self.missing_parts_reason})")
        x = self.visual.project(self.visual.pool(self.forward_features(images)))
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """z^T before normalisation (Eq. 4): φ(h), h the feature at the end-of-text token (Eq. 2)."""
        if self.text is None:
            raise RuntimeError(f"this model has no text tower ({self.missing_parts_reason})")
        x = self.text(tokens)
        return F.normalize(x, dim=-1) if normalize else x

    def no_weight_decay(self) -> set[str]:
        """Parameters that take no weight decay, SLIP's rule (`p.ndim < 2 or 'bias' in n or 'ln' in
        n or 'bn' in n`): biases, norms and the logit scale. Position and token embeddings and the
        cls and mask tokens are decayed, as in SLIP and the official RILS code (the fixed sin-cos
        positions are frozen and never reach the optimiser)."""
        return {n for n, p in self.named_parameters()
                if p.ndim < 2 or n.endswith(".bias") or ".norm" in n or ".ln_" in n or "norm." in n}

    def logit_scale_exp(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=LOGIT_SCALE_MAX)

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """Called after each optimiser step, as CLIP does, so the stored value stays in range."""
        if self.logit_scale is not None:
            self.logit_scale.clamp_(0, math.log(LOGIT_SCALE_MAX))

    def set_grad_checkpointing(self, enable: bool = True, masked: bool = False) -> None:
        """Activation checkpointing of every tower's blocks: the vision trunk, the text tower and the
        decoder (each keeps its blocks' inputs only and recomputes the rest in the backward pass).
        `masked` sets it for a masked-image method's own branch alone (`enable` implies it): the
        masked pass through the trunk and the decoder. That branch's backward runs first, so the
        decoder's recomputed activations meet all the others at the start of the backward pass and
        checkpointing the decoder alone saves little; the masked pass's blocks are recomputed one
        at a time after it, when the decoder's are gone."""
        masked = enable or masked
        self.visual.grad_checkpointing = enable
        self.visual.masked_grad_checkpointing = masked
        if self.decoder is not None:
            self.decoder.grad_checkpointing = masked
        if self.text is not None:
            self.text.set_grad_checkpointing(enable)
