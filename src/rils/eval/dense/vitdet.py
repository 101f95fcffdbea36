"""ViTDet (Li et al. 2022, "Exploring plain vision transformer backbones for object detection";
detectron2 projects/ViTDet) built from timm and torchvision parts.

Trunk: timm's `samvit` ViT (`VisionTransformerSAM`, the same architecture ViTDet's `ViT` is) at the
fine-tuning size, holding the pre-trained rils trunk's weights: window attention in all blocks but
four evenly spaced global ones, decomposed relative positions in every block (new, zero-initialised
as ViTDet's), the absolute positions resampled from the pre-training grid. Neck: ViTDet's
SimpleFeaturePyramid on the last block's map (strides 4, 8, 16, 32 at patch 16, plus a stride-64
level subsampled from the last, torchvision's `LastLevelMaxPool`). Heads: torchvision's Mask R-CNN
with ViTDet's "modernised" choices: a 2-conv RPN head, a 4-conv + 1-fc box head and a 4-conv mask
head, every conv followed by LayerNorm over channels (timm's `LayerNorm2d`, ViTDet's "LN").
"""
from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN

from .backbone import check_size, trunk_of

VITDET_WINDOW = 14  # ViT-B/16 at 1024 px: a 64×64 grid, padded to 70 = 5 windows of 14


def global_blocks(depth: int) -> list[int]:
    """Blocks with global attention, 0-based: the last of each quarter of the trunk (ViTDet ViT-B:
    2, 5, 8, 11; ViT-L: 5, 11, 17, 23). Trunks shallower than 8 blocks repeat indices, de-duplicated."""
    return sorted({max(0, depth * q // 4 - 1) for q in (1, 2, 3, 4)})


def default_window(grid: int) -> int:
    """ViTDet's 14 on grids of at least 28 patches; on smaller grids (test-sized models) the largest
    divisor of the grid that is at most half of it, so windows tile the grid without padding and
    there are at least 2×2 of them."""
    if grid >= 2 * VITDET_WINDOW:
        return VITDET_WINDOW
    return max([d for d in range(1, grid // 2 + 1) if grid % d == 0] or [grid])


def samvit_state(trunk: nn.Module, grid: int) -> dict:
    """The rils trunk's (a timm VisionTransformer with a cls token) state dict renamed for samvit:
    no cls token, positions without the cls row as a [1, g, g, C] map resampled to `grid` (bicubic,
    as ViTDet's `get_abs_pos`), the final `norm` as samvit's `neck` (a LayerNorm2d when it has no
    conv neck). Block names (norm1, attn.qkv, attn.proj, norm2, mlp.fc1/fc2) are timm's in both."""
    from timm.layers import resample_abs_pos_embed_nhwc

    state = {}
    prefix = int(getattr(trunk, "num_prefix_tokens", 1))
    for k, v in trunk.state_dict().items():
        v = v.detach().clone()
        if k == "cls_token":
            continue
        if k == "pos_embed":
            pos = v[:, prefix:]
            side = math.isqrt(pos.shape[1])
            pos = pos.reshape(1, side, side, -1)
            v = resample_abs_pos_embed_nhwc(pos.float(), [grid, grid]).to(v.dtype)
        elif k.startswith("norm."):
            k = "neck." + k[len("norm."):]
        state[k] = v
    return state


def vitdet_trunk(model, size: int, *, window_size: int | None = None,
                 drop_path_rate: float = 0.1) -> nn.Module:
    """timm `samvit` at `size`×`size` holding `model.visual.trunk`'s weights (only `rel_pos_*` new)."""
    import timm

    trunk, _, kwargs = trunk_of(model)
    patch, depth = int(kwargs.get("patch_size", 16)), int(kwargs.get("depth", 12))
    check_size(size, patch)
    grid = size // patch
    window = default_window(grid) if window_size is None else window_size
    if not 0 < window <= grid:
        raise ValueError(f"--window-size must be in [1, {grid}] (the {grid}×{grid} patch grid), got {window}")
    arch = {k: kwargs[k] for k in ("embed_dim", "num_heads", "mlp_ratio", "qkv_bias", "qk_norm", "init_values")
            if k in kwargs}
    net = timm.create_model(
        "samvit_base_patch16", pretrained=False, img_size=size, patch_size=patch, depth=depth, **arch,
        window_size=window, global_attn_indexes=global_blocks(depth), use_rel_pos=True,
        neck_chans=0, num_classes=0, drop_path_rate=drop_path_rate,
        norm_layer=partial(nn.LayerNorm, eps=1e-6))  # timm ViT's eps (samvit's default is 1e-5)
    missing, unexpected = net.load_state_dict(samvit_state(trunk, grid), strict=False)
    missing = [k for k in missing if ".attn.rel_pos_" not in k]
    if missing or unexpected:
        raise ValueError(f"the trunk's weights do not fit samvit: missing {missing[:6]}, unexpected {unexpected[:6]}")
    for p in net.parameters():
        p.requires_grad_(True)
    return net


def _conv_ln(cin: int, cout: int, k: int) -> nn.Sequential:
    from timm.layers import LayerNorm2d

    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), LayerNorm2d(cout))


class SimpleFPN(nn.Module):
    """ViTDet's SimpleFeaturePyramid: from the stride-p map, ×4 by two stride-2 deconvolutions with
    LayerNorm + GELU between, ×2 by one, ×1 as is, ×½ by 2×2 max pooling; each then a 1×1 and a 3×3
    conv with LayerNorm to `channels`; and a ×¼ level subsampled from the ×½ one ("pool")."""

    def __init__(self, dim: int, channels: int = 256):
        from timm.layers import LayerNorm2d
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

        super().__init__()
        up2 = partial(nn.ConvTranspose2d, kernel_size=2, stride=2)
        self.scales = nn.ModuleList([
            nn.Sequential(up2(dim, dim // 2), LayerNorm2d(dim // 2), nn.GELU(), up2(dim // 2, dim // 4)),
            up2(dim, dim // 2), nn.Identity(), nn.MaxPool2d(2, 2)])
        self.outputs = nn.ModuleList(nn.Sequential(_conv_ln(c, channels, 1), _conv_ln(channels, channels, 3))
                                     for c in (dim // 4, dim // 2, dim, dim))
        self.top = LastLevelMaxPool()

    def forward(self, x: torch.Tensor) -> OrderedDict:
        maps = [out(scale(x)) for scale, out in zip(self.scales, self.outputs)]
        maps, names = self.top(maps, [], ["0", "1", "2", "3"])
        return OrderedDict(zip(names, maps))


class ViTDetBackbone(nn.Module):
    """What torchvision's detectors take as a backbone (cf. its `BackboneWithFPN`): `body` (the
    trunk) and `fpn`, returning {"0".."3", "pool"} with `out_channels` channels each."""

    def __init__(self, body: nn.Module, channels: int = 256):
        super().__init__()
        self.body, self.fpn, self.out_channels = body, SimpleFPN(body.embed_dim, channels), channels

    def forward(self, x: torch.Tensor) -> OrderedDict:
        return self.fpn(self.body.forward_features(x))  # [B, C, H/p, W/p] after the final norm


class ViTDetMaskRCNN(MaskRCNN):
    """torchvision's Mask R-CNN, plus the trunk's layer groups for timm's layer-wise lr decay."""

    def group_matcher(self, coarse: bool = False) -> dict:
        # ViTDet's `get_vit_lr_decay_rate`: positions and patch embedding are layer 0, block i layer
        # i + 1, everything else (the final norm, which ViTDet's trunk lacks and which here starts
        # the pyramid; the FPN; the heads) the top layer, at the full lr.
        return {"stem": r"^backbone\.body\.(?:pos_embed|patch_embed)",
                "blocks": [(r"^backbone\.body\.blocks\.(\d+)", None)]}

    def no_weight_decay(self) -> set:
        # ViTDet: `{"pos_embed": {"weight_decay": 0.0}}`; it decays the relative positions.
        return {"backbone.body." + k for k in self.backbone.body.no_weight_decay()}


def build_detector(model, num_classes: int, *, size: int = 1024, window_size: int | None = None,
                   drop_path_rate: float = 0.1, fpn_channels: int = 256, box_head_dim: int = 1024,
                   rpn_batch: int = 256, roi_batch: int = 512, proposals: int = 1000,
                   max_dets: int = 100, score_thresh: float = 0.05) -> nn.Module:
    """ViTDet's Mask R-CNN for `num_classes` categories (labels 1..K, 0 background) on `model`'s trunk.

    Defaults are ViTDet's (detectron2's RPN and ROI-head settings it keeps): RPN 256 anchors per
    image, 2000/1000 proposals per level before NMS (train/test), `proposals` per image after it;
    512 RoIs per image, a quarter positive; test score threshold 0.05, NMS 0.5, `max_dets` kept.
    Anchors are 8× each level's stride with ratios ½, 1, 2 (ViTDet at patch 16: 32 to 512 px).
    """
    from timm.layers import LayerNorm2d
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.ops import MultiScaleRoIAlign

    body = vitdet_trunk(model, size, window_size=window_size, drop_path_rate=drop_path_rate)
    backbone = ViTDetBackbone(body, fpn_channels)
    patch = body.patch_embed.patch_size[0]
    strides = [patch // 4, patch // 2, patch, patch * 2, patch * 4]
    anchors = AnchorGenerator(tuple((8 * s,) for s in strides), ((0.5, 1.0, 2.0),) * len(strides))
    c, levels = fpn_channels, ["0", "1", "2", "3"]
    mean, std = getattr(model, "image_mean", None), getattr(model, "image_std", None)
    if mean is None or std is None:
        raise ValueError("the model has no image_mean/image_std to normalise detection inputs with")
    return ViTDetMaskRCNN(
        backbone,
        # Inputs are already size×size (training, large-scale jitter) or get their longer side
        # resized to `size` (testing); either way padded to size×size, as ViTDet's square padding.
        min_size=size, max_size=size, size_divisible=size, image_mean=list(mean), image_std=list(std),
        rpn_anchor_generator=anchors, rpn_head=RPNHead(c, 3, conv_depth=2),
        rpn_pre_nms_top_n_train=2000, rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_train=proposals, rpn_post_nms_top_n_test=proposals,
        rpn_batch_size_per_image=rpn_batch,
        box_roi_pool=MultiScaleRoIAlign(levels, 7, sampling_ratio=0),
        box_head=FastRCNNConvFCHead((c, 7, 7), [c] * 4, [box_head_dim], norm_layer=LayerNorm2d),
        box_predictor=FastRCNNPredictor(box_head_dim, num_classes + 1),
        box_batch_size_per_image=roi_batch, box_score_thresh=score_thresh, box_detections_per_img=max_dets,
        mask_roi_pool=MultiScaleRoIAlign(levels, 14, sampling_ratio=0),
        mask_head=MaskRCNNHeads(c, [c] * 4, 1, norm_layer=LayerNorm2d),
        mask_predictor=MaskRCNNPredictor(c, c, num_classes + 1))
