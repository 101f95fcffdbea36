"""CLIP→MIM (paper Table 9, Sec. 5.1): masked image modelling whose targets are a frozen, pre-trained
CLIP image tower's features (MVP, MILAN, BEiT v2 [34, 44, 63]).

We implement MILAN's form: the teacher sees the whole image; its patch tokens, projected by its θ
into the image-text space, are the targets; the student sees the visible 25 % (MAE's encoder and
latent decoder), and a linear head maps the decoder's output at each masked position into that
space; the loss is 1 - cosine similarity there. The student starts from scratch, as in MILAN and
MVP. The teacher is `model.teacher` (a CLIP-style run's checkpoint or export), frozen: no gradient,
no optimiser state; it is saved in the checkpoints, so a resumed run does not need it again.
"""
import torch
from torch import nn

from .. import losses as L
from ..model.masking import masked_ids, take_patches
from ..model.vision import VisionEncoder
from .base import pooled_share
from .mae import MAE


class CLIPTargetMIM(MAE):
    """MAE's masking and encoder-decoder (its `features`), with the teacher's features as targets."""
    name = "clip_target_mim"
    decoder_kind = "latent"
    needs_teacher = True

    def __init__(self, model, options=None):
        super().__init__(model, options)
        preset = model.preset
        self.teacher = VisionEncoder(preset, with_projection=True).requires_grad_(False)
        self.target_head = nn.Linear(preset.width, preset.embed_dim)   # decoder width -> teacher's θ space
        nn.init.xavier_uniform_(self.target_head.weight)
        nn.init.zeros_(self.target_head.bias)

    def loss_from(self, batch, feats, pool=None):
        visual, mask = self.model.visual, feats["mask"]
        at = masked_ids(feats["ids_restore"], feats["ids_keep"].shape[1])   # the loss reads masked patches only
        with torch.no_grad():
            teacher_tokens = self.teacher.forward_features(batch["image"])
            target = self.teacher.project(teacher_tokens[:, 1:])          # [B, N, D]
            target = take_patches(target, at)
        g = self.model.decoder(visual.encode_patches(feats["patches"], feats["ids_keep"]), feats["ids_restore"], at=at)
        loss = L.masked_feature_loss(target, self.target_head(g), torch.ones_like(at, dtype=torch.bool))
        if pool is not None:
            loss = pooled_share(loss, mask.sum(), pool.cat("masked", feats["masked"]).sum(), pool)
        return {"loss": loss, "feature_loss": loss}
