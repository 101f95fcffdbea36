"""SLIP: CLIP plus SimCLR on two further augmented views of each image."""
from .simclr import SimCLR


class SLIP(SimCLR):
    name = "slip"
    needs_text = True
    pooled = ("image", "text", "view1", "view2")

    def features(self, batch):
        return {"image": self.model.encode_image(batch["image"]), "text": self.model.encode_text(batch["text"]),
                **self.view_features(batch["views"])}

    def loss_from(self, batch, feats, pool=None):
        contra, matched, _ = self.contrastive(*self.gather_pool(feats, ("image", "text"), pool), pool)
        ssl = self.ssl_from(feats, pool)
        loss = self.opt.lambda_contra * contra + self.opt.ssl_scale * ssl
        return {"loss": loss, "clip_loss": contra, "ssl_loss": ssl,
                "i2t_acc": matched.float().mean(), **self.extra_metrics()}
