"""MAE: reconstruct the masked patches' normalised pixels from the visible ones."""
import torch

from .. import losses as L
from ..model.masking import masked_ids
from .base import PretrainMethod, pooled_share


class MAE(PretrainMethod):
    name = "mae"
    needs_text = False
    decoder_kind = "pixel"
    min_batch = 1
    # No cross-sample term: only the count of masked patches is pooled, so that the pixel loss of an
    # accumulated step is the mean over all its masked patches even when micro-batches differ in size.
    pooled = ("masked",)

    def features(self, batch):
        patches = self.model.visual.embed_patches(batch["image"])
        ids_keep, mask, ids_restore = self.masked_view(patches, batch)
        return {"masked": mask.sum(dim=1), "patches": patches, "ids_keep": ids_keep, "mask": mask,
                "ids_restore": ids_restore}

    def loss_from(self, batch, feats, pool=None):
        mask = feats["mask"]
        at = masked_ids(feats["ids_restore"], feats["ids_keep"].shape[1])   # the loss reads masked patches only
        pred = self.model.decoder(self.model.visual.encode_patches(feats["patches"], feats["ids_keep"]),
                                  feats["ids_restore"], at=at)
        loss = L.mae_pixel_loss(batch["image"], pred, torch.ones_like(at, dtype=torch.bool),
                                self.model.preset.patch_size, self.opt.norm_pix_loss, at=at)
        if pool is not None:
            loss = pooled_share(loss, mask.sum(), pool.cat("masked", feats["masked"]).sum(), pool)
        return {"loss": loss, "pixel_loss": loss}
