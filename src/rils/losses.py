"""Pre-training losses as pure functions, usable outside our trainer (e.g. in an open_clip fork).

Equation numbers refer to Yang et al., "Masked Visual Reconstruction in Language Semantic Space",
CVPR 2023. The loss heads run in fp32 even under bf16 autocast: with τ1 = 0.04 or a logit scale of
100, bf16's 8-bit mantissa would round logits by up to 0.5 and blur the softmax targets.

When torch.distributed is initialised (and `gather=True`), the contrastive terms compare the local
rows with the embeddings of the global batch; `rils.distributed.gather_with_grad` carries the
gradient back to every rank, so DDP training equals one-device training on the whole batch
(`contrastive_logits(gather_grad=False)` is the authors' one-sided alternative).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from . import distributed as D
from .precision import full_precision


def fp32(fn):
    """Run a loss head in fp32: autocast would otherwise cast its matmuls back to bf16."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with full_precision():
            return fn(*args, **kwargs)
    return wrapper


@fp32
def contrastive_logits(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale, gather: bool = True,
                       gather_grad: bool = True):
    """Logits of the local images against all texts and of the local texts against all images.

    Returns (logits_per_image [B, B_global], logits_per_text [B, B_global], labels [B], all_text [B_global, D]);
    `labels[i]` is the column of sample i's own pair; `all_text` are the normalised z^T of the global batch.
    `gather_grad=False` gathers as the authors' trainer (SLIP's `all_gather_batch`): across ranks no
    gathered row carries gradient, this rank's included, so the local images learn only through
    logits_per_image and the local texts only through logits_per_text (one process: the full gradient).
    """
    z_img = F.normalize(image_emb.float(), dim=-1)   # z^I (Eq. 4)
    z_txt = F.normalize(text_emb.float(), dim=-1)    # z^T (Eq. 4)
    gather = gather and D.is_distributed()
    gathered = D.gather_with_grad if gather_grad else D.gather_without_grad
    all_img = gathered(z_img) if gather else z_img
    all_txt = gathered(z_txt) if gather else z_txt
    offset = D.rank() * z_img.shape[0] if gather else 0
    labels = torch.arange(z_img.shape[0], device=z_img.device) + offset
    logits_per_image = logit_scale * z_img @ all_txt.T   # <z^I_i, z^T_j> / σ (Eq. 5)
    logits_per_text = logit_scale * z_txt @ all_img.T
    return logits_per_image, logits_per_text, labels, all_txt


def contrastive_loss_from_logits(logits_per_image, logits_per_text, labels) -> torch.Tensor:
    """L_Contra = (L_I2T + L_T2I) / 2 (Eq. 5-6)."""
    return 0.5 * (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels))


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale, gather: bool = True) -> torch.Tensor:
    """Symmetric InfoNCE (Eq. 5-6). Embeddings unnormalised; `logit_scale` is the multiplier 1/σ."""
    logits_i, logits_t, labels, _ = contrastive_logits(image_emb, text_emb, logit_scale, gather)
    return contrastive_loss_from_logits(logits_i, logits_t, labels)


@fp32
def language_space_reconstruction_loss(target_patches: torch.Tensor, pred_patches: torch.Tensor,
                                       text_emb: torch.Tensor, mask: torch.Tensor, matched: torch.Tensor,
                                       tau_target: float = 0.04, tau_pred: float = 0.1) -> torch.Tensor:
    """L_Recon (Eq. 7-9): masked reconstruction in the language semantic space.

    target_patches, pred_patches: [B, N, D], θ(f) and θ(g), unnormalised.
    text_emb: [M, D], the prototypes z^T (the global batch's texts), unnormalised.
    mask: [B, N] bool, True where a patch was masked (the set M).
    matched: [B] bool, images whose own caption wins image-to-text matching (the set C).

    Returns the mean over the masked patches of matched images of KL(p ‖ q). KL(p ‖ q) differs from
    the paper's -Σ sg[p] log q by the entropy of p, a constant under stop-gradient: same gradient,
    and a value that reaches 0 at a perfect reconstruction. When C is empty it returns 0 (with a graph).
    Every patch is scored and all but the masked patches of images in C are zeroed, not indexed out:
    selecting by boolean index (or testing whether any are left) makes the host wait for the device
    mid-step, and a GPU's queue then runs dry for the rest of the forward and the whole backward.
    """
    selected = mask & matched.unsqueeze(1)                        # i ∈ C, k ∈ M (Eq. 9)
    z = F.normalize(text_emb.float(), dim=-1)
    g = F.normalize(pred_patches.float(), dim=-1)                 # g̃ (Eq. 7)
    with torch.no_grad():                                         # sg[p] (Eq. 9)
        f = F.normalize(target_patches.float(), dim=-1)           # f̃ (Eq. 7)
        log_p = F.log_softmax(f @ z.T / tau_target, dim=-1)       # p (Eq. 8), τ1
    log_q = F.log_softmax(g @ z.T / tau_pred, dim=-1)             # q (Eq. 8), τ2
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1)              # [B, N]
    kl = torch.where(selected, kl, kl.new_zeros(()))              # only i ∈ C, k ∈ M count
    return kl.sum() / selected.sum().clamp(min=1)                 # 1 / (|C|·|M|) Σ (Eq. 9)


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, 3, H, W] -> [B, N, p*p*3], MAE's patch order (row-major patches, (p, q, c) inside)."""
    B, C, H, W = images.shape
    h, w = H // patch_size, W // patch_size
    x = images.reshape(B, C, h, patch_size, w, patch_size)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(B, h * w, patch_size ** 2 * C)


@fp32
def mae_pixel_loss(images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, patch_size: int,
                   norm_pix: bool = True, at: torch.Tensor | None = None) -> torch.Tensor:
    """MAE: mean squared error on the masked patches against per-patch normalised pixels.
    pred: [B, N, p*p*3] for every patch, mask [B, N]; or, with `at` [B, Q] (the patches the decoder
    predicted), pred [B, Q, p*p*3] and mask [B, Q]."""
    target = patchify(images.float(), patch_size)
    if at is not None:
        target = torch.gather(target, 1, at.unsqueeze(-1).expand(-1, -1, target.shape[-1]))
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = ((pred.float() - target) ** 2).mean(dim=-1)
    m = mask.float()
    return (per_patch * m).sum() / m.sum()


@fp32
def masked_feature_loss(target: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CLIP-guided MIM (the CLIP→MIM row of Table 9, MILAN's form): 1 - cosine similarity between the
    predicted and the frozen teacher's patch features, averaged over the masked patches."""
    per_patch = 1 - F.cosine_similarity(pred.float(), target.float(), dim=-1)
    m = mask.float()
    return (per_patch * m).sum() / m.sum()


@fp32
def simclr_loss(z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.1, gather: bool = True) -> torch.Tensor:
    """NT-Xent on two views (SimCLR; SLIP's form), negatives from the global batch of both views."""
    q1 = F.normalize(z1.float(), dim=-1)
    q2 = F.normalize(z2.float(), dim=-1)
    gather = gather and D.is_distributed()
    k1 = D.gather_with_grad(q1) if gather else q1
    k2 = D.gather_with_grad(q2) if gather else q2
    B = q1.shape[0]
    labels = torch.arange(B, device=q1.device) + (D.rank() * B if gather else 0)
    self_mask = F.one_hot(labels, k1.shape[0]).to(q1.dtype) * 1e9   # a view is not its own negative
    logits_11 = q1 @ k1.T / tau - self_mask
    logits_22 = q2 @ k2.T / tau - self_mask
    logits_12 = q1 @ k2.T / tau
    logits_21 = q2 @ k1.T / tau
    loss_1 = F.cross_entropy(torch.cat([logits_12, logits_11], dim=1), labels)
    loss_2 = F.cross_entropy(torch.cat([logits_21, logits_22], dim=1), labels)
    return 0.5 * (loss_1 + loss_2)
