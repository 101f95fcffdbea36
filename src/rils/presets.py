"""Named architectures. `vit_b16` is the paper's (Sec. 3.3); the small ones make CPU work practical.

Each vision trunk is built by timm from `timm_model_name` plus `timm_kwargs()`, so the trained trunk
loads back into `timm.create_model(name, **kwargs)` with no key surgery.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace


# CLIP's image normalisation, used by every preset (training and evaluation transforms, exports).
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Preset:
    name: str
    timm_model_name: str
    image_size: int
    patch_size: int
    width: int               # vision encoder width
    depth: int
    heads: int
    embed_dim: int           # joint image-text space (output of θ and φ)
    text_width: int
    text_layers: int
    text_heads: int
    decoder_width: int       # = width in the paper ("decoder blocks have the same dimension")
    decoder_depth: int = 1
    decoder_heads: int = 0   # 0: same as the encoder
    context_length: int = 77
    vocab_size: int = 49408
    mlp_ratio: float = 4.0
    # The text tower's MLP activation. QuickGELU, x·sigmoid(1.702x), is OpenAI CLIP's and the authors'
    # (hustvl/RILS `ResidualAttentionBlock`); False builds open_clip's default, exact GELU. The vision
    # trunk and decoder are timm's and always GELU.
    quick_gelu: bool = True

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size ** 2

    def timm_kwargs(self) -> dict:
        """Keyword arguments that, with `timm_model_name`, rebuild exactly our trunk in timm."""
        return dict(img_size=self.image_size, patch_size=self.patch_size, embed_dim=self.width,
                    depth=self.depth, num_heads=self.heads, mlp_ratio=self.mlp_ratio,
                    num_classes=0, global_pool="avg", fc_norm=False)

    @property
    def at_timm_defaults(self) -> bool:
        """Whether `timm.create_model(timm_model_name)` alone builds this geometry (224 px ViTs)."""
        defaults = {"vit_base_patch16_224": (224, 16, 768, 12, 12), "vit_large_patch16_224": (224, 16, 1024, 24, 16),
                    "vit_small_patch16_224": (224, 16, 384, 12, 6), "vit_tiny_patch16_224": (224, 16, 192, 12, 3)}
        return defaults.get(self.timm_model_name) == (self.image_size, self.patch_size, self.width, self.depth,
                                                       self.heads)

    def param_counts(self) -> dict:
        """Parameters of the vision tower (timm trunk + θ) and the text tower (open_clip's + φ), from
        the geometry alone (no torch); tests/test_model.py checks them against the built model."""
        w, h, e = self.width, round(self.mlp_ratio * self.width), self.embed_dim
        block = 4 * w + (3 * w * w + 3 * w) + (w * w + w) + (h * w + h) + (w * h + w)
        vision = (3 * self.patch_size ** 2 * w + w) + w + (self.num_patches + 1) * w + self.depth * block + 2 * w + w * e
        t = self.text_width
        text_block = 4 * t + (3 * t * t + 3 * t) + (t * t + t) + (4 * t * t + 4 * t) + (4 * t * t + t)
        text = self.vocab_size * t + self.context_length * t + self.text_layers * text_block + 2 * t + t * e
        return {"vision": vision, "text": text}

    def to_dict(self) -> dict:
        return asdict(self)


_PRESETS = {
    # Paper (Sec. 3.3): ViT-B/16, one 768-wide decoder block with 12 heads, text 12 x 512, 8 heads.
    "vit_b16": Preset("vit_b16", "vit_base_patch16_224", 224, 16, 768, 12, 12, 512, 512, 12, 8, 768),
    # ViT-L/16 with the CLIP ViT-L text tower (12 x 768, 12 heads) and a 768-d joint space.
    "vit_l16": Preset("vit_l16", "vit_large_patch16_224", 224, 16, 1024, 24, 16, 768, 768, 12, 12, 1024),
    # Small presets for one GPU or a CPU.
    "vit_s16": Preset("vit_s16", "vit_small_patch16_224", 224, 16, 384, 12, 6, 384, 384, 6, 6, 384),
    "vit_ti16": Preset("vit_ti16", "vit_tiny_patch16_224", 224, 16, 192, 12, 3, 256, 256, 4, 4, 192),
    # Low resolution: 64x64 input, patch 8 (64 patches); what the CPU demo and comparisons use.
    "vit_ti8_64": Preset("vit_ti8_64", "vit_tiny_patch16_224", 64, 8, 192, 6, 3, 192, 192, 4, 4, 192,
                         context_length=32),
    # The CPU demo: 32x32 input, patch 8 (16 patches); a step costs about a third of vit_ti8_64's.
    "vit_ti8_32": Preset("vit_ti8_32", "vit_tiny_patch16_224", 32, 8, 192, 6, 3, 192, 192, 4, 4, 192,
                         context_length=32),
    # For tests only: 32x32 input, 16 patches, two narrow blocks.
    "vit_nano8_32": Preset("vit_nano8_32", "vit_tiny_patch16_224", 32, 8, 64, 2, 2, 32, 64, 2, 2, 64,
                           decoder_heads=2, context_length=16),
}


# Fields added after checkpoints were written whose default is not what those checkpoints ran, with
# the value they ran (every text tower was open_clip's GELU before `quick_gelu`).
BEFORE_THE_FIELD = {"quick_gelu": False}


def preset_from_record(record: dict) -> Preset:
    """The Preset a checkpoint or an export recorded (`Preset.to_dict()`). A record written before a
    field of BEFORE_THE_FIELD existed loads with the value it ran, so it computes what it computed then."""
    return Preset(**{**BEFORE_THE_FIELD, **record})


def list_presets() -> list[str]:
    return sorted(_PRESETS)


def get_preset(name: str, **overrides) -> Preset:
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(list_presets())}")
    return replace(_PRESETS[name], **overrides) if overrides else _PRESETS[name]
