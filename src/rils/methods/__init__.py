"""Pre-training methods, one module each, all with the interface of `PretrainMethod`."""
from __future__ import annotations

from dataclasses import fields

from .base import MethodOptions, PretrainMethod
from .clip import CLIP
from .mae import MAE
from .mae_clip import MAECLIP
from .rils import RILS
from .rils_prototypes import RILSPrototypes
from .simclr import SimCLR
from .slip import SLIP

METHODS = {m.name: m for m in (CLIP, MAE, MAECLIP, SLIP, SimCLR, RILS, RILSPrototypes)}


def list_methods() -> list[str]:
    return sorted(METHODS)


def create_method(name: str, model, options: MethodOptions | None = None, **overrides) -> PretrainMethod:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(list_methods())}")
    options = options or MethodOptions()
    if overrides:
        known = {f.name for f in fields(MethodOptions)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ValueError(f"unknown method option {bad[0]!r}")
        options = MethodOptions(**{**options.__dict__, **overrides})
    return METHODS[name](model, options)
