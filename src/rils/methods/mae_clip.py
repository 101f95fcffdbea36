"""MAE+CLIP: the naive combination the paper compares with (Fig. 2): L_Contra + L_MAE."""
import torch

from .. import losses as L
from ..model.masking import masked_ids
from .base import ContrastiveWithMaskedBranch, pooled_share


class MAECLIP(ContrastiveWithMaskedBranch):
    name = "mae_clip"
    decoder_kind = "pixel"
    pooled = ("image", "text", "masked")

    def features(self, batch):
        visual = self.model.visual
        patches = visual.embed_patches(batch["image"])         # shared by both passes
        intact = visual.encode_patches(patches)
        ids_keep, mask, ids_restore = self.masked_view(patches, batch)
        return {"image": visual.project(visual.pool(intact)), "text": self.model.encode_text(batch["text"]),
                "masked": mask.sum(dim=1), "patches": patches, "ids_keep": ids_keep, "mask": mask,
                "ids_restore": ids_restore}

    def contrastive_part(self, feats, pool=None):
        contra, matched, _ = self.contrastive(*self.gather_pool(feats, ("image", "text"), pool), pool)
        carry = {"matched": matched, "ids_keep": feats["ids_keep"], "ids_restore": feats["ids_restore"],
                 "mask": feats["mask"]}
        if pool is not None:
            carry["pooled_masked"] = pool.cat("masked", feats["masked"]).sum()
        return contra, carry

    def branch_part(self, batch, patches, carry, pool=None):
        """L_MAE on the masked view of `patches` (its targets are pixels: no path back into the intact pass)."""
        visual = self.model.visual
        at = masked_ids(carry["ids_restore"], carry["ids_keep"].shape[1])   # the loss reads masked patches only
        pred = self.model.decoder(visual.encode_patches(patches, carry["ids_keep"]), carry["ids_restore"], at=at)
        pixel = L.mae_pixel_loss(batch["image"], pred, torch.ones_like(at, dtype=torch.bool),
                                 self.model.preset.patch_size, self.opt.norm_pix_loss, at=at)
        if pool is not None:
            pixel = pooled_share(pixel, carry["mask"].sum(), carry["pooled_masked"], pool)
        return pixel

    def outputs(self, contra, pixel, matched):
        loss = self.opt.lambda_contra * contra + self.opt.lambda_pixel * pixel
        return {"loss": loss, "clip_loss": contra, "pixel_loss": pixel,
                "i2t_acc": matched.float().mean(), **self.extra_metrics()}
