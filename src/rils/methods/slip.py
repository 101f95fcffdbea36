"""SLIP: CLIP plus SimCLR on two further augmented views of each image."""
from .simclr import SimCLR


class SLIP(SimCLR):
    name = "slip"
    needs_text = True

    def forward(self, batch):
        image_emb = self.model.encode_image(batch["image"])
        contra, matched, _ = self.contrastive(image_emb, self.model.encode_text(batch["text"]))
        ssl = self.ssl_term(batch["views"])
        loss = self.opt.lambda_contra * contra + self.opt.ssl_scale * ssl
        return {"loss": loss, "clip_loss": contra.detach(), "ssl_loss": ssl.detach(),
                "i2t_acc": matched.float().mean(), **self.extra_metrics()}
