"""RILS: masked visual reconstruction in the language semantic space (Eq. 1-10)."""
import torch

from .. import distributed as D
from .. import losses as L
from .base import PretrainMethod


class RILS(PretrainMethod):
    name = "rils"
    decoder_kind = "latent"

    def prototypes(self, all_text: torch.Tensor) -> torch.Tensor:
        """The z^T of Eq. 8: the global batch's text embeddings."""
        return all_text

    def forward(self, batch):
        visual = self.model.visual
        patches = visual.embed_patches(batch["image"])        # shared by I and Î
        f = visual.encode_patches(patches)                     # V-Enc(I), Eq. 1
        ids_keep, mask, ids_restore = self.masked_view(patches, batch)
        f_hat = visual.encode_patches(patches, ids_keep)       # V-Enc(Î), Eq. 1
        g = self.model.decoder(f_hat, ids_restore)             # V-Dec, Eq. 3

        image_emb = visual.project(visual.pool(f))             # θ(f̄), Eq. 4
        text_emb = self.model.encode_text(batch["text"])       # φ(h), Eq. 2 and 4
        contra, matched, all_text = self.contrastive(image_emb, text_emb)

        with torch.no_grad():
            target = visual.project(f[:, 1:])                  # θ(f^k), under sg (Eq. 9)
        pred = visual.project(g)                               # θ(g^k), Eq. 7
        recon = L.language_space_reconstruction_loss(target, pred, self.prototypes(all_text), mask, matched,
                                                     self.opt.tau_target, self.opt.tau_pred)
        if D.is_distributed():
            # Eq. 9 averages over the masked patches of C across the *global* batch; each rank holds
            # a different |C|, so rescale the local mean to make DDP's average the global one.
            n_local = (mask & matched.unsqueeze(1)).sum().float()
            n_global = D.all_reduce_sum(n_local).clamp(min=1)
            recon = recon * n_local * D.world_size() / n_global

        loss = self.opt.lambda_contra * contra + self.opt.lambda_recon * recon   # Eq. 10
        matched_frac = matched.float().mean()
        return {"loss": loss, "clip_loss": contra.detach(), "recon_loss": recon.detach(),
                "i2t_acc": matched_frac, "matched_frac": matched_frac, **self.extra_metrics()}
