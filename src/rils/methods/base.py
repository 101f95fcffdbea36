"""What every pre-training method shares: one interface, batch in, dict of losses out."""
from __future__ import annotations

import torch
from torch import nn

from .. import losses as L
from ..model.masking import mask_noise, random_masking
from .options import CONTRASTIVE_GATHERS, MethodOptions


class Pool:
    """The features of every micro-batch of an accumulated step on this rank (gradient accumulation
    with the whole accumulated batch as negatives, `train.accum_negatives`).

    `cached[key]` holds one detached tensor per micro-batch, computed without gradients before the
    step; while micro-batch `index` is recomputed with gradients, `cat(key, fresh)` is the rank's
    whole accumulated batch with that micro-batch's rows replaced by the fresh ones, and `own(x)`
    picks that micro-batch's rows out of such a pooled tensor. Pooled tensors enter the losses
    exactly where one micro-batch's would, so the all-gather across ranks happens on them."""

    def __init__(self, cached: dict[str, list[torch.Tensor]], index: int):
        self.cached, self.index = cached, index
        self.sizes = [t.shape[0] for t in next(iter(cached.values()))]
        self.n = len(self.sizes)

    def cat(self, key: str, fresh: torch.Tensor) -> torch.Tensor:
        parts = self.cached[key]
        return torch.cat([*parts[:self.index], fresh, *parts[self.index + 1:]])

    def own(self, pooled: torch.Tensor) -> torch.Tensor:
        start = sum(self.sizes[:self.index])
        return pooled[start:start + self.sizes[self.index]]


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient multiplied by `s`."""

    @staticmethod
    def forward(ctx, x, s):
        ctx.s = s
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.s, None


def scale_grad(x: torch.Tensor, s: float) -> torch.Tensor:
    return x if s == 1 else _ScaleGrad.apply(x, s)


def pooled_term(x: torch.Tensor, pool: Pool | None) -> torch.Tensor:
    """A loss term computed on the whole accumulated batch: same value, gradient x n. train_step
    divides every micro-batch's loss by n, and only the fresh rows carry a gradient, so the n
    backward passes add up to the gradient of the term on one big batch."""
    return x if pool is None else scale_grad(x, pool.n)


def pooled_share(x: torch.Tensor, own_count, pooled_count, pool: Pool | None) -> torch.Tensor:
    """A per-sample term (mean over this micro-batch's `own_count` items) rescaled to n x its share of
    the mean over the accumulated batch's `pooled_count` items: the n micro-batches' values then
    average to that mean and their gradients (each divided by n) add up to its gradient."""
    if pool is None:
        return x
    return x * (own_count * pool.n / pooled_count.clamp(min=1))


class PretrainMethod(nn.Module):
    """Owns the model (and any method-only heads); `forward(batch)` returns {'loss': ..., parts...}.

    A batch is a dict: 'image' [B, 3, H, W], 'text' [B, L] tokens, optionally 'views' [B, 2, 3, H, W]
    (two augmented views, SLIP/SimCLR) and 'seed' [B] int64 per-sample seeds for the masks.
    """
    # What a method is, declared once here and read by the factory (which parts to build), config
    # validation (the smallest batch) and the optimiser (what takes no weight decay).
    name = ""
    needs_text = True               # builds the text tower, φ and the logit scale σ
    decoder_kind: str | None = None  # "latent" (RILS), "pixel" (MAE) or None: no decoder
    needs_views = False             # the batch carries two extra augmented views (SLIP/SimCLR)
    min_batch = 2                   # contrastive methods need a negative in the batch
    needs_teacher = False           # holds a frozen `teacher` image tower, loaded from `model.teacher`
    # Two-phase interface (gradient accumulation with the whole accumulated batch as negatives):
    # `features(batch)` runs the per-sample part of the forward and returns a dict that holds, under
    # the keys in `pooled`, the per-sample tensors [B, ...] that enter cross-sample terms (embeddings,
    # counts of masked patches); `loss_from(batch, feats, pool)` computes the losses from them, with
    # `pool` None (one batch) or a `Pool` (those tensors for the whole accumulated batch).
    pooled: tuple[str, ...] = ()

    @classmethod
    def model_parts(cls) -> dict:
        """The DualEncoder parts this method trains; building only those keeps DDP free of unused
        parameters and makes a checkpoint say what the method actually learned."""
        return dict(text=cls.needs_text, decoder=cls.decoder_kind)

    def __init__(self, model: nn.Module, options: MethodOptions | None = None):
        super().__init__()
        self.model = model
        self.opt = options or MethodOptions()
        if self.opt.contrastive_gather not in CONTRASTIVE_GATHERS:   # the config checks it; the Python API too
            raise ValueError(f"contrastive_gather must be {' or '.join(CONTRASTIVE_GATHERS)}, "
                             f"got {self.opt.contrastive_gather!r}")

    def masked_view(self, patches: torch.Tensor, batch: dict):
        """Random masking (Sec. 3.1) driven by per-sample seeds when the batch has them."""
        B, N, _ = patches.shape
        noise = mask_noise(B, N, patches.device, batch.get("seed"))
        return random_masking(noise, self.opt.mask_ratio)

    def features(self, batch: dict) -> dict:
        raise NotImplementedError(f"{type(self).__name__} has no two-phase interface; it defines forward()")

    def loss_from(self, batch: dict, feats: dict, pool: Pool | None = None) -> dict:
        raise NotImplementedError(f"{type(self).__name__} has no two-phase interface; it defines forward()")

    def forward(self, batch: dict, pool: Pool | None = None, part: int = 0, carry: dict | None = None):
        # Outputs: "loss", then the parts to log, returned as they are (not detached: the step
        # detaches them when it logs). Under torch.compile (torch 2.14), returning `1.0 * x` beside
        # `x.detach()` loses the loss's gradient.
        # `part` 1 and 2: the split backward (`split_backward`; `ContrastiveWithMaskedBranch` writes
        # both parts): part 1 returns (its loss, carry), part 2 takes that carry and returns the
        # outputs, with "loss" the whole loss whose gradient is part 2's alone.
        if part == 1:
            return self.first_part(batch, pool)
        if part == 2:
            return self.second_part(batch, carry, pool)
        return self.loss_from(batch, self.features(batch), pool)

    def split_backward(self) -> bool:
        """Whether the step runs this method as two forward calls, each followed by its backward pass
        (`train.step.train_step`): a loss that is a term over the shared features plus a term over a
        branch of the method's own whose gradient does not reach back into those features, except
        through parameters. The first backward pass frees the shared activations before the branch
        is built, so the step's peak memory is the larger of the two parts, not their sum."""
        return False

    @classmethod
    def two_phase(cls) -> bool:
        """Whether the method implements features/loss_from (a method that defines only forward()
        accumulates plainly: each micro-batch alone)."""
        return cls.forward is PretrainMethod.forward and cls.loss_from is not PretrainMethod.loss_from

    @staticmethod
    def gather_pool(feats: dict, keys, pool: Pool | None) -> list[torch.Tensor]:
        """`feats[key]` for each key: this micro-batch's, or the accumulated batch's with them inside."""
        return [feats[k] if pool is None else pool.cat(k, feats[k]) for k in keys]

    def contrastive(self, image_emb: torch.Tensor, text_emb: torch.Tensor, pool: Pool | None = None):
        """L_Contra (Eq. 5-6) plus the set C and the in-batch image-to-text accuracy. With a `pool`,
        the embeddings are the accumulated batch's: the loss is `pooled_term`-scaled and the logit
        scale, used by every micro-batch of the step, gets 1/n of its gradient from each."""
        scale = self.model.logit_scale_exp()
        if pool is not None:
            scale = scale_grad(scale, 1.0 / pool.n)
        logits_i, logits_t, labels, all_text = L.contrastive_logits(
            image_emb, text_emb, scale, gather_grad=self.opt.contrastive_gather == "full")
        loss = pooled_term(L.contrastive_loss_from_logits(logits_i, logits_t, labels), pool)
        matched = logits_i.argmax(dim=1) == labels          # the set C (Eq. 9)
        return loss, matched, all_text

    def no_weight_decay(self) -> set[str]:
        """Names of parameters that take no weight decay besides 1-D ones (timm/open_clip convention)."""
        return {f"model.{n}" for n in self.model.no_weight_decay()}

    def extra_metrics(self) -> dict:
        if self.model.logit_scale is None:
            return {}
        return {"logit_scale": self.model.logit_scale_exp().detach()}


class ContrastiveWithMaskedBranch(PretrainMethod):
    """A loss λ1 L_Contra (Eq. 5-6, over the intact pass and the text tower) plus a term over a masked
    branch of the method's own (RILS's L_Recon, MAE+CLIP's L_MAE) whose gradient reaches the shared
    patch embedding only through parameters: it runs as a split backward. A subclass writes
    `contrastive_part(feats, pool)` -> (L_Contra, carry: what the branch needs, with "matched"),
    `branch_part(batch, patches, carry, pool)` -> the branch's term, and `outputs(contra, term,
    matched)` -> the outputs dict."""

    def split_backward(self) -> bool:
        return True

    def loss_from(self, batch, feats, pool=None):
        contra, carry = self.contrastive_part(feats, pool)
        return self.outputs(contra, self.branch_part(batch, feats["patches"], carry, pool), carry["matched"])

    def first_part(self, batch, pool=None):
        contra, carry = self.contrastive_part(self.features(batch), pool)
        carry = {k: v.detach() for k, v in carry.items()}
        carry["contra"] = contra.detach()
        return self.opt.lambda_contra * contra, carry

    def second_part(self, batch, carry, pool=None):
        # The patches are embedded again (one patch projection): part 1's graph is gone. The loss
        # holds L_Contra detached, so its gradient is the branch's alone.
        term = self.branch_part(batch, self.model.visual.embed_patches(batch["image"]), carry, pool)
        return self.outputs(carry["contra"], term, carry["matched"])
