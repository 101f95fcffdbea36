"""rils: language-supervised masked image pre-training (RILS, CVPR 2023) and its baselines.

    model = rils.create_model("vit_b16", method="rils")
    method = rils.create_method("rils", model)
    out = method({"image": images, "text": rils.get_tokenizer()(captions)})
    out["loss"].backward()

This module only re-exports (see docs/ARCHITECTURE.md for where each piece lives), and lazily:
`import rils` does not import torch until a name that needs it is used, so `rils --help` is quick.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._version import __version__

# public name -> the module that defines it
_EXPORTS = {
    "create_model": "factory", "get_tokenizer": "factory",
    "load_model": "load",
    "MethodOptions": "methods", "PretrainMethod": "methods", "create_method": "methods",
    "list_methods": "methods", "register_method": "methods",
    "DualEncoder": "model.dual_encoder",
    "Preset": "presets", "get_preset": "presets", "list_presets": "presets",
}
_SUBMODULES = ("losses",)

__all__ = sorted([*_EXPORTS, *_SUBMODULES, "__version__"])


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'rils' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from . import losses
    from .factory import create_model, get_tokenizer
    from .load import load_model
    from .methods import MethodOptions, PretrainMethod, create_method, list_methods, register_method
    from .model.dual_encoder import DualEncoder
    from .presets import Preset, get_preset, list_presets
