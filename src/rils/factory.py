"""Construction: the dual encoder a method trains, and the tokenizer that goes with a preset."""
from __future__ import annotations

from .methods import get_method_class
from .model.dual_encoder import DualEncoder
from .model.text import get_tokenizer as _clip_tokenizer
from .presets import Preset, get_preset


def create_model(preset: str | Preset = "vit_b16", method: str = "rils", drop_path_rate: float = 0.0,
                 **preset_overrides) -> DualEncoder:
    """Build the dual encoder with exactly the parts `method` trains (its class's `model_parts()`)."""
    parts = get_method_class(method).model_parts()
    p = preset if isinstance(preset, Preset) else get_preset(preset, **preset_overrides)
    return DualEncoder(p, drop_path_rate=drop_path_rate, **parts)


def get_tokenizer(context_length: int | str = 77):
    """The CLIP BPE tokenizer; pass a context length or a preset name."""
    if isinstance(context_length, str):
        context_length = get_preset(context_length).context_length
    return _clip_tokenizer(context_length)
