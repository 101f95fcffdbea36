"""SimCLR on two augmented views, and the MLP head it shares with SLIP."""
import torch
from torch import nn

from .. import losses as L
from .base import PretrainMethod, pooled_term


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

    pooled = ("view1", "view2")

    def view_features(self, views: torch.Tensor) -> dict:
        """The head's outputs for both views. Its BatchNorms normalise over the micro-batch (both
        views together): with accumulation they see one micro-batch, not the accumulated batch."""
        B = views.shape[0]
        both = views.transpose(0, 1).flatten(0, 1)            # one encoder pass for both views
        emb = self.image_mlp(self.model.visual.pool(self.model.forward_features(both)))
        return {"view1": emb[:B], "view2": emb[B:]}

    def ssl_from(self, feats: dict, pool=None) -> torch.Tensor:
        z1, z2 = self.gather_pool(feats, ("view1", "view2"), pool)
        return pooled_term(L.simclr_loss(z1, z2, self.opt.ssl_temperature), pool)

    def ssl_term(self, views: torch.Tensor) -> torch.Tensor:
        return self.ssl_from(self.view_features(views))

    def features(self, batch):
        return self.view_features(batch["views"])

    def loss_from(self, batch, feats, pool=None):
        loss = self.ssl_from(feats, pool)
        return {"loss": loss, "ssl_loss": loss}
