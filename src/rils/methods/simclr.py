"""SimCLR on two augmented views, and the MLP head it shares with SLIP."""
import torch
from torch import nn

from .. import losses as L
from .base import PretrainMethod


def ssl_head(in_dim: int, mlp_dim: int, out_dim: int) -> nn.Sequential:
    """SLIP's SimCLR projection head: Linear-BN-ReLU, Linear-BN-ReLU, Linear (made SyncBatchNorm under DDP on GPU)."""
    return nn.Sequential(
        nn.Linear(in_dim, mlp_dim), nn.BatchNorm1d(mlp_dim), nn.ReLU(inplace=True),
        nn.Linear(mlp_dim, mlp_dim), nn.BatchNorm1d(mlp_dim), nn.ReLU(inplace=True),
        nn.Linear(mlp_dim, out_dim))


class SimCLR(PretrainMethod):
    name = "simclr"
    needs_text = False
    needs_views = True

    def __init__(self, model, options=None):
        super().__init__(model, options)
        self.image_mlp = ssl_head(model.preset.width, self.opt.ssl_mlp_dim, self.opt.ssl_emb_dim)

    def ssl_term(self, views: torch.Tensor) -> torch.Tensor:
        B = views.shape[0]
        both = views.transpose(0, 1).flatten(0, 1)            # one encoder pass for both views
        emb = self.image_mlp(self.model.visual.pool(self.model.forward_features(both)))
        return L.simclr_loss(emb[:B], emb[B:], self.opt.ssl_temperature)

    def forward(self, batch):
        loss = self.ssl_term(batch["views"])
        return {"loss": loss, "ssl_loss": loss.detach()}
