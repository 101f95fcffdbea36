"""MAE+CLIP: the naive combination the paper compares with (Fig. 2): L_Contra + L_MAE."""
from .. import losses as L
from .base import PretrainMethod


class MAECLIP(PretrainMethod):
    name = "mae_clip"
    decoder_kind = "pixel"

    def forward(self, batch):
        images = batch["image"]
        visual = self.model.visual
        patches = visual.embed_patches(images)                 # shared by both passes
        intact = visual.encode_patches(patches)
        ids_keep, mask, ids_restore = self.masked_view(patches, batch)
        pred = self.model.decoder(visual.encode_patches(patches, ids_keep), ids_restore)
        pixel = L.mae_pixel_loss(images, pred, mask, self.model.preset.patch_size, self.opt.norm_pix_loss)
        contra, matched, _ = self.contrastive(visual.project(visual.pool(intact)),
                                              self.model.encode_text(batch["text"]))
        loss = self.opt.lambda_contra * contra + self.opt.lambda_pixel * pixel
        return {"loss": loss, "clip_loss": contra.detach(), "pixel_loss": pixel.detach(),
                "i2t_acc": matched.float().mean(), **self.extra_metrics()}
