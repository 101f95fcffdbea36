"""The loss hyper-parameters every method reads (`MethodOptions`, the `loss.*` config section and what
a checkpoint records as `method_options`). Kept apart from base.py, without torch, so that the config
and `rils pretrain --help` can list the `loss.*` keys without importing torch."""
from __future__ import annotations

from dataclasses import dataclass


CONTRASTIVE_GATHERS = ("full", "local")   # MethodOptions.contrastive_gather


@dataclass
class MethodOptions:
    """Loss hyper-parameters; defaults are the paper's (Sec. 3.3) where it gives them."""
    mask_ratio: float = 0.75       # MAE and RILS masking
    lambda_contra: float = 1.0     # λ1 (Eq. 10)
    lambda_recon: float = 0.5      # λ2 (Eq. 10)
    tau_target: float = 0.04       # τ1 (Eq. 8)
    tau_pred: float = 0.1          # τ2 (Eq. 8)
    lambda_pixel: float = 1.0      # MAE+CLIP: the naive sum weighs both terms 1
    norm_pix_loss: bool = True     # MAE's per-patch normalised pixel target
    ssl_scale: float = 1.0         # SLIP: weight of the SimCLR term
    ssl_temperature: float = 0.1   # SimCLR τ
    ssl_mlp_dim: int = 4096        # SLIP's SimCLR head: 3-layer MLP, 4096 hidden, 256 out
    ssl_emb_dim: int = 256         # output width of that head
    num_prototypes: int = 4096     # Table 10 ablation: learnable prototypes in place of z^T
    detach_prototypes: bool = True  # RILS: z^T in Eq. 8 under stop-gradient, as the official code's plain all_gather; false lets L_recon train the text tower
    contrastive_gather: str = "full"  # L_Contra across ranks: full = its exact gradient (2 ranks x b = 1 rank x 2b); local = the authors' (SLIP's all_gather_batch): no gathered row has gradient, so each rank's images learn from image-to-text logits only, its texts from text-to-image; depends on the world size
