"""Pre-training methods, one module each, all with the interface of `PretrainMethod`.

The registry below is the one list of methods: the factory, the config validation, the optimiser
and the CLI read a method's facts from its class (`needs_text`, `decoder_kind`, `min_batch`,
`no_weight_decay()`). Adding a method = one module with a `PretrainMethod` subclass + one line here
(or `register_method(MyMethod)` from outside the package).
"""
from __future__ import annotations

from dataclasses import fields

from .base import MethodOptions, PretrainMethod
from .clip import CLIP
from .clip_target_mim import CLIPTargetMIM
from .mae import MAE
from .mae_clip import MAECLIP
from .rils import RILS
from .rils_prototypes import RILSPrototypes
from .simclr import SimCLR
from .slip import SLIP

METHODS: dict[str, type[PretrainMethod]] = {}


def register_method(cls: type[PretrainMethod]) -> type[PretrainMethod]:
    """Add a method to the registry (usable as a class decorator); its `name` must be new."""
    if not (isinstance(cls, type) and issubclass(cls, PretrainMethod)) or not cls.name:
        raise ValueError("register_method takes a PretrainMethod subclass with a non-empty `name`")
    if METHODS.get(cls.name, cls) is not cls:
        raise ValueError(f"a method named {cls.name!r} is already registered")
    if cls.decoder_kind not in (None, "latent", "pixel"):
        raise ValueError(f"{cls.__name__}.decoder_kind must be None, 'latent' or 'pixel'")
    METHODS[cls.name] = cls
    return cls


for _cls in (CLIP, MAE, MAECLIP, SLIP, SimCLR, RILS, RILSPrototypes, CLIPTargetMIM):
    register_method(_cls)


def list_methods() -> list[str]:
    return sorted(METHODS)


def get_method_class(name: str) -> type[PretrainMethod]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(list_methods())}")
    return METHODS[name]


def create_method(name: str, model, options: MethodOptions | None = None, **overrides) -> PretrainMethod:
    cls = get_method_class(name)
    options = options or MethodOptions()
    if overrides:
        known = {f.name for f in fields(MethodOptions)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ValueError(f"unknown method option {bad[0]!r}")
        options = MethodOptions(**{**options.__dict__, **overrides})
    return cls(model, options)
