"""RILS: masked visual reconstruction in the language semantic space (Eq. 1-10)."""
import torch

from .. import distributed as D
from .. import losses as L
from ..model.masking import masked_ids, take_patches
from .base import ContrastiveWithMaskedBranch


class RILS(ContrastiveWithMaskedBranch):
    name = "rils"
    decoder_kind = "latent"

    def prototypes(self, all_text: torch.Tensor) -> torch.Tensor:
        """The z^T of Eq. 8: the global batch's text embeddings, detached by default (the official
        code gathers them with a plain all_gather, so L_recon does not train the text tower)."""
        return all_text.detach() if self.opt.detach_prototypes else all_text

    def split_backward(self) -> bool:
        """L_Recon's gradient reaches the masked pass, the decoder and θ, and the shared patch
        embedding only through its parameters (targets f and prototypes z^T are under stop-gradient,
        Eq. 9): the step backpropagates L_Contra first, which frees the intact pass and the text
        tower, then builds the masked branch. Not with prototypes that train the text tower."""
        return self.opt.detach_prototypes

    pooled = ("image", "text", "masked")

    def features(self, batch):
        visual = self.model.visual
        patches = visual.embed_patches(batch["image"])        # shared by I and Î
        f = visual.encode_patches(patches)                     # V-Enc(I), Eq. 1
        ids_keep, mask, ids_restore = self.masked_view(patches, batch)
        return {"image": visual.project(visual.pool(f)),      # θ(f̄), Eq. 4
                "text": self.model.encode_text(batch["text"]),  # φ(h), Eq. 2 and 4
                "masked": mask.sum(dim=1),                     # |M| of each image, for Eq. 9's normaliser
                "patches": patches, "f": f, "ids_keep": ids_keep, "mask": mask, "ids_restore": ids_restore}

    def contrastive_part(self, feats, pool=None):
        """L_Contra (Eq. 5-6) and what L_Recon takes from it and from the intact pass: the set C, the
        texts z^T for the prototypes (Eq. 8), the targets θ(f^k) at k ∈ M under stop-gradient (Eq. 9)."""
        image_emb, text_emb, masked = self.gather_pool(feats, self.pooled, pool)
        contra, matched, all_text = self.contrastive(image_emb, text_emb, pool)
        # Eq. 9 reads the masked patches only (k ∈ M), so the decoder predicts just those.
        at = masked_ids(feats["ids_restore"], feats["ids_keep"].shape[1])
        with torch.no_grad():
            target = self.model.visual.project(take_patches(feats["f"][:, 1:], at))   # θ(f^k), under sg (Eq. 9)
        carry = {"matched": matched, "own": matched if pool is None else pool.own(matched),   # C in this micro-batch
                 "all_text": all_text, "target": target, "at": at,
                 "ids_keep": feats["ids_keep"], "ids_restore": feats["ids_restore"], "mask": feats["mask"]}
        if D.is_distributed() or pool is not None:
            carry["n_global"] = D.all_reduce_sum((matched.float() * masked.float()).sum()).clamp(min=1)
        return contra, carry

    def branch_part(self, batch, patches, carry, pool=None):
        """L_Recon (Eq. 7-9) on the masked view of `patches`, given `contrastive_part`'s carry."""
        visual, at = self.model.visual, carry["at"]
        f_hat = visual.encode_patches(patches, carry["ids_keep"])   # V-Enc(Î), Eq. 1
        g = self.model.decoder(f_hat, carry["ids_restore"], at=at)  # V-Dec, Eq. 3, at k ∈ M
        pred = visual.project(g)                                    # θ(g^k), Eq. 7
        every = torch.ones_like(at, dtype=torch.bool)               # every patch of `at` is in M
        prototypes = self.prototypes(carry["all_text"])
        recon = L.language_space_reconstruction_loss(carry["target"], pred, prototypes, every, carry["own"],
                                                     self.opt.tau_target, self.opt.tau_pred)
        if "n_global" in carry:
            # Eq. 9 averages over the masked patches of C across the *global* batch (all ranks, all
            # micro-batches of an accumulated step); each micro-batch holds a different |C|, so
            # rescale the local mean to make DDP's average (and the step's mean) the global one.
            n_own = (carry["mask"] & carry["own"].unsqueeze(1)).sum().float()
            recon = recon * n_own * (D.world_size() * (1 if pool is None else pool.n)) / carry["n_global"]
        return recon

    def outputs(self, contra, recon, matched):
        loss = self.opt.lambda_contra * contra + self.opt.lambda_recon * recon   # Eq. 10
        matched_frac = matched.float().mean()
        return {"loss": loss, "clip_loss": contra, "recon_loss": recon,
                "i2t_acc": matched_frac, "matched_frac": matched_frac, **self.extra_metrics()}
