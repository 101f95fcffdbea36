"""Text encoder (Eq. 2): open_clip's CLIP text Transformer (causal mask, EOT pooling) and BPE tokenizer."""
from open_clip.model import CLIPTextCfg, _build_text_tower
import open_clip

from ..presets import Preset
from .attention import adopt


def text_cfg(preset: Preset) -> dict:
    """The open_clip `text_cfg` of a preset; also what an open_clip export writes."""
    return dict(context_length=preset.context_length, vocab_size=preset.vocab_size,
                width=preset.text_width, heads=preset.text_heads, layers=preset.text_layers)


def build_text_tower(preset: Preset):
    # its nn.MultiheadAttention layers go through rils.model.attention (same parameters and names)
    return adopt(_build_text_tower(preset.embed_dim, CLIPTextCfg(**text_cfg(preset))))


def get_tokenizer(context_length: int = 77):
    """CLIP BPE tokenizer (vocabulary 49,408), shipped with open_clip; works offline."""
    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length)
