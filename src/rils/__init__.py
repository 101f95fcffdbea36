"""rils: language-supervised masked image pre-training (RILS, CVPR 2023) and its baselines.

    model = rils.create_model("vit_b16", method="rils")
    method = rils.create_method("rils", model)
    out = method({"image": images, "text": rils.get_tokenizer()(captions)})
    out["loss"].backward()

This module only re-exports; see docs/ARCHITECTURE.md for where each piece lives.
"""
from __future__ import annotations

from ._version import __version__
from . import losses
from .factory import create_model, get_tokenizer
from .load import load_model
from .methods import MethodOptions, PretrainMethod, create_method, list_methods, register_method
from .model.dual_encoder import DualEncoder
from .presets import Preset, get_preset, list_presets

__all__ = ["create_model", "create_method", "load_model", "get_tokenizer", "list_presets", "list_methods",
           "register_method", "get_preset", "losses", "DualEncoder", "MethodOptions", "PretrainMethod",
           "Preset", "__version__"]
