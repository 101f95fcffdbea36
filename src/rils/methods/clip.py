"""CLIP: image-text contrastive learning alone (Eq. 4-6)."""
from .base import PretrainMethod


class CLIP(PretrainMethod):
    name = "clip"
    pooled = ("image", "text")

    def features(self, batch):
        return {"image": self.model.encode_image(batch["image"]), "text": self.model.encode_text(batch["text"])}

    def loss_from(self, batch, feats, pool=None):
        loss, matched, _ = self.contrastive(*self.gather_pool(feats, ("image", "text"), pool), pool)
        return {"loss": self.opt.lambda_contra * loss, "clip_loss": loss,
                "i2t_acc": matched.float().mean(), **self.extra_metrics()}
