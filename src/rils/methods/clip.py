"""CLIP: image-text contrastive learning alone (Eq. 4-6)."""
from .base import PretrainMethod


class CLIP(PretrainMethod):
    name = "clip"

    def forward(self, batch):
        image_emb = self.model.encode_image(batch["image"])
        text_emb = self.model.encode_text(batch["text"])
        loss, matched, _ = self.contrastive(image_emb, text_emb)
        return {"loss": self.opt.lambda_contra * loss, "clip_loss": loss.detach(),
                "i2t_acc": matched.float().mean(), **self.extra_metrics()}
