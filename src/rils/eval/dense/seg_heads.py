"""The segmentation model of `rils eval segment`: the pre-trained timm ViT, a 4-level pyramid and
MMSeg's UperNet head with an auxiliary FCN head (configs/_base_/models/upernet_mae.py).

    ViT blocks at `block_indices(depth)` (stride p)
      -> Feature2Pyramid: ConvT-BN-GELU-ConvT (p/4), ConvT (p/2), identity (p), max-pool (2p)
      -> UPerHead: PPM (scales 1, 2, 3, 6) on the coarsest level, FPN laterals + 3×3 convs,
         fused by a 3×3 conv, dropout 0.1, 1×1 classifier                     (logits at p/4)
      -> FCNHead on the stride-p level: one 3×3 conv of 256 channels          (training only)

ConvModule (conv + BN + ReLU, no conv bias) is torchvision's Conv2dNormActivation, initialised
as mmcv's ConvModule (Kaiming normal, fan-out); the classifiers as MMSeg's conv_seg (normal,
std 0.01). The backbone's outputs skip its final norm (MMSeg's MAE backbone: final_norm=False),
so the norm is pruned: it would get no gradient, which DDP refuses.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation

from .backbone import block_indices, vit_trunk


def conv_module(cin: int, cout: int, kernel: int) -> nn.Module:
    block = Conv2dNormActivation(cin, cout, kernel, padding=kernel // 2)
    nn.init.kaiming_normal_(block[0].weight, mode="fan_out", nonlinearity="relu")
    return block


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Feature2Pyramid(nn.Module):
    """MMSeg's Feature2Pyramid (rescales 4, 2, 1, 0.5): four ViT maps of stride p -> p/4 .. 2p."""

    def __init__(self, dim: int):
        super().__init__()
        self.fpn1 = nn.Sequential(nn.ConvTranspose2d(dim, dim, 2, 2), nn.BatchNorm2d(dim), nn.GELU(),
                                  nn.ConvTranspose2d(dim, dim, 2, 2))
        self.fpn2 = nn.ConvTranspose2d(dim, dim, 2, 2)
        self.fpn3 = nn.Identity()
        self.fpn4 = nn.MaxPool2d(2, 2)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [op(x) for op, x in zip((self.fpn1, self.fpn2, self.fpn3, self.fpn4), feats)]


class Classifier(nn.Sequential):
    """MMSeg's BaseDecodeHead.cls_seg: Dropout2d, then a 1×1 conv to the classes."""

    def __init__(self, channels: int, num_classes: int, dropout: float):
        conv = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(conv.bias)
        super().__init__(nn.Dropout2d(dropout), conv)


class UperHead(nn.Module):
    """MMSeg's UPerHead: a pyramid pooling module on the last level, top-down FPN, fusion."""

    def __init__(self, in_channels: list[int], channels: int, num_classes: int, dropout: float = 0.1,
                 pool_scales=(1, 2, 3, 6)):
        super().__init__()
        top = in_channels[-1]
        self.ppm = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(s), conv_module(top, channels, 1))
                                 for s in pool_scales)
        self.bottleneck = conv_module(top + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(conv_module(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(conv_module(channels, channels, 3) for _ in in_channels[:-1])
        self.fpn_bottleneck = conv_module(len(in_channels) * channels, channels, 3)
        self.cls_seg = Classifier(channels, num_classes, dropout)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        psp = [x] + [_resize(stage(x), x.shape[-2:]) for stage in self.ppm]
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats)] + [self.bottleneck(torch.cat(psp, 1))]
        for i in range(len(laterals) - 1, 0, -1):     # top-down
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[-2:])
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals)] + [laterals[-1]]
        outs = [outs[0]] + [_resize(o, outs[0].shape[-2:]) for o in outs[1:]]
        return self.cls_seg(self.fpn_bottleneck(torch.cat(outs, 1)))


class FCNHead(nn.Sequential):
    """MMSeg's FCNHead(num_convs=1, concat_input=False): the auxiliary head."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, dropout: float = 0.1):
        super().__init__(conv_module(in_channels, channels, 3), Classifier(channels, num_classes, dropout))


def _prefixed(pattern: str, prefix: str) -> str:
    body = pattern[1:] if pattern.startswith("^") else ".*?" + pattern
    return f"^{re.escape(prefix)}(?:{body})"


class UperNetSegmenter(nn.Module):
    """backbone (timm ViT) -> neck -> decode_head (+ auxiliary_head). `forward(x)` returns
    (logits at stride p/4, auxiliary logits at stride p or None); the aux head runs in training only."""

    def __init__(self, backbone: nn.Module, num_classes: int, *, indices: list[int], channels: int = 512,
                 aux_channels: int = 256, aux: bool = True, dropout: float = 0.1):
        super().__init__()
        backbone.prune_intermediate_layers(sorted(set(indices)), prune_norm=True, prune_head=True)
        self.backbone, self.indices = backbone, list(indices)
        dim = backbone.embed_dim
        self.neck = Feature2Pyramid(dim)
        self.decode_head = UperHead([dim] * 4, channels, num_classes, dropout)
        self.auxiliary_head = FCNHead(dim, aux_channels, num_classes, dropout) if aux else None

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        # timm takes each block once: a shallow trunk's repeated indices are filled in here.
        unique = sorted(set(self.indices))
        maps = self.backbone.forward_intermediates(x, indices=unique, intermediates_only=True,
                                                   output_fmt="NCHW")
        by_index = dict(zip(unique, maps))
        return self.neck([by_index[i] for i in self.indices])

    def forward(self, x: torch.Tensor):
        pyramid = self.features(x)
        logits = self.decode_head(pyramid)
        aux = self.auxiliary_head(pyramid[2]) if self.training and self.auxiliary_head is not None else None
        return logits, aux

    # timm's layer-wise decay (create_optimizer_v2) reads these: the trunk's groups, prefixed;
    # every other parameter (neck, heads) falls in the last group, lr scale 1, as in MMSeg's
    # LayerDecayOptimizerConstructor.
    def group_matcher(self, coarse: bool = False) -> dict:
        def prefix(spec):
            if isinstance(spec, str):
                return _prefixed(spec, "backbone.")
            return [(_prefixed(p, "backbone."), *rest) for p, *rest in spec]
        return {k: prefix(v) for k, v in self.backbone.group_matcher(coarse=coarse).items() if v is not None}

    def no_weight_decay(self) -> set[str]:
        return {f"backbone.{n}" for n in self.backbone.no_weight_decay()}


def build_segmenter(model, num_classes: int, *, image_size: int, drop_path: float = 0.1,
                    channels: int = 512, aux: bool = True) -> UperNetSegmenter:
    """`model`'s trunk at `image_size` (positions resampled) under a fresh pyramid and UperNet head."""
    trunk = vit_trunk(model, image_size, drop_path)
    return UperNetSegmenter(trunk, num_classes, indices=block_indices(len(trunk.blocks)),
                            channels=channels, aux=aux)
