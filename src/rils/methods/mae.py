"""MAE: reconstruct the masked patches' normalised pixels from the visible ones."""
from .. import losses as L
from .base import PretrainMethod


class MAE(PretrainMethod):
    name = "mae"
    needs_text = False
    decoder_kind = "pixel"
    min_batch = 1

    def forward(self, batch):
        images = batch["image"]
        patches = self.model.visual.embed_patches(images)
        ids_keep, mask, ids_restore = self.masked_view(patches, batch)
        pred = self.model.decoder(self.model.visual.encode_patches(patches, ids_keep), ids_restore)
        loss = L.mae_pixel_loss(images, pred, mask, self.model.preset.patch_size, self.opt.norm_pix_loss)
        return {"loss": loss, "pixel_loss": loss.detach()}
