"""What every pre-training method shares: one interface, batch in, dict of losses out."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import losses as L
from ..model.masking import mask_noise, random_masking


@dataclass
class MethodOptions:
    """Loss hyper-parameters; defaults are the paper's (Sec. 3.3) where it gives them."""
    mask_ratio: float = 0.75       # MAE and RILS masking
    lambda_contra: float = 1.0     # λ1 (Eq. 10)
    lambda_recon: float = 0.5      # λ2 (Eq. 10)
    tau_target: float = 0.04       # τ1 (Eq. 8)
    tau_pred: float = 0.1          # τ2 (Eq. 8)
    lambda_pixel: float = 1.0      # MAE+CLIP: the naive sum weighs both terms 1
    norm_pix_loss: bool = True     # MAE's per-patch normalised pixel target
    ssl_scale: float = 1.0         # SLIP: weight of the SimCLR term
    ssl_temperature: float = 0.1   # SimCLR τ
    ssl_mlp_dim: int = 4096        # SLIP's SimCLR head: 3-layer MLP, 4096 hidden, 256 out
    ssl_emb_dim: int = 256         # output width of that head
    num_prototypes: int = 4096     # Table 10 ablation: learnable prototypes in place of z^T


class PretrainMethod(nn.Module):
    """Owns the model (and any method-only heads); `forward(batch)` returns {'loss': ..., parts...}.

    A batch is a dict: 'image' [B, 3, H, W], 'text' [B, L] tokens, optionally 'views' [B, 2, 3, H, W]
    (two augmented views, SLIP/SimCLR) and 'seed' [B] int64 per-sample seeds for the masks.
    """
    # What a method is, declared once here and read by the factory (which parts to build), config
    # validation (the smallest batch) and the optimiser (what takes no weight decay).
    name = ""
    needs_text = True               # builds the text tower, φ and the logit scale σ
    decoder_kind: str | None = None  # "latent" (RILS), "pixel" (MAE) or None: no decoder
    needs_views = False             # the batch carries two extra augmented views (SLIP/SimCLR)
    min_batch = 2                   # contrastive methods need a negative in the batch

    @classmethod
    def model_parts(cls) -> dict:
        """The DualEncoder parts this method trains; building only those keeps DDP free of unused
        parameters and makes a checkpoint say what the method actually learned."""
        return dict(text=cls.needs_text, decoder=cls.decoder_kind)

    def __init__(self, model: nn.Module, options: MethodOptions | None = None):
        super().__init__()
        self.model = model
        self.opt = options or MethodOptions()

    def masked_view(self, patches: torch.Tensor, batch: dict):
        """Random masking (Sec. 3.1) driven by per-sample seeds when the batch has them."""
        B, N, _ = patches.shape
        noise = mask_noise(B, N, patches.device, batch.get("seed"))
        return random_masking(noise, self.opt.mask_ratio)

    def contrastive(self, image_emb: torch.Tensor, text_emb: torch.Tensor):
        """L_Contra (Eq. 5-6) plus the set C and the in-batch image-to-text accuracy."""
        logits_i, logits_t, labels, all_text = L.contrastive_logits(
            image_emb, text_emb, self.model.logit_scale_exp())
        loss = L.contrastive_loss_from_logits(logits_i, logits_t, labels)
        matched = logits_i.argmax(dim=1) == labels          # the set C (Eq. 9)
        return loss, matched, all_text

    def no_weight_decay(self) -> set[str]:
        """Names of parameters that take no weight decay besides 1-D ones (timm/open_clip convention)."""
        return {f"model.{n}" for n in self.model.no_weight_decay()}

    def extra_metrics(self) -> dict:
        if self.model.logit_scale is None:
            return {}
        return {"logit_scale": self.model.logit_scale_exp().detach()}
