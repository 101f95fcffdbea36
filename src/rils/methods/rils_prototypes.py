"""Table 10's "high-level vision space" ablation: K learnable prototypes replace z^T in Eq. 8."""
import torch
from torch import nn

from .rils import RILS


class RILSPrototypes(RILS):
    name = "rils_prototypes"

    def __init__(self, model, options=None):
        super().__init__(model, options)
        self.learned_prototypes = nn.Parameter(torch.empty(self.opt.num_prototypes, model.preset.embed_dim))
        nn.init.normal_(self.learned_prototypes, std=0.02)

    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | {"learned_prototypes"}

    def split_backward(self) -> bool:
        return True   # the prototypes are parameters: L_Recon never reaches the text tower

    def prototypes(self, all_text):
        return self.learned_prototypes
