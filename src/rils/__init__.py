"""rils: language-supervised masked image pre-training (RILS, CVPR 2023) and its baselines.

    model = rils.create_model("vit_b16", method="rils")
    method = rils.create_method("rils", model)
    out = method({"image": images, "text": rils.get_tokenizer()(captions)})
    out["loss"].backward()
"""
from __future__ import annotations

__version__ = "0.1.0"

from . import losses
from .methods import MethodOptions, create_method, list_methods
from .model.dual_encoder import METHOD_PARTS, DualEncoder
from .model.text import get_tokenizer as _get_tokenizer
from .presets import Preset, get_preset, list_presets


def create_model(preset: str | Preset = "vit_b16", method: str = "rils", drop_path_rate: float = 0.0,
                 **preset_overrides) -> DualEncoder:
    """Build the dual encoder with exactly the parts `method` trains (see METHOD_PARTS)."""
    if method not in METHOD_PARTS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(sorted(METHOD_PARTS))}")
    p = preset if isinstance(preset, Preset) else get_preset(preset, **preset_overrides)
    return DualEncoder(p, drop_path_rate=drop_path_rate, **METHOD_PARTS[method])


def get_tokenizer(context_length: int | str = 77):
    """The CLIP BPE tokenizer; pass a context length or a preset name."""
    if isinstance(context_length, str):
        context_length = get_preset(context_length).context_length
    return _get_tokenizer(context_length)


def load_model(path: str, map_location="cpu") -> DualEncoder:
    """Load a training checkpoint (or export) back into the dual encoder; never unpickles code.

    PATH: a training checkpoint (.pt), a timm export (.safetensors; a vision-only model, with a
    warning), or an open_clip export (its folder, `local-dir:FOLDER`, or the folder's .safetensors).
    See rils.export.
    """
    from .export import load_model as _load
    return _load(path, map_location)


__all__ = ["create_model", "create_method", "load_model", "get_tokenizer", "list_presets", "list_methods",
           "get_preset", "losses", "DualEncoder", "MethodOptions", "Preset"]
