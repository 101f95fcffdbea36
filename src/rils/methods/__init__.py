"""Pre-training methods, one module each, all with the interface of `PretrainMethod`.

The registry below is the one list of methods: the factory, the config validation, the optimiser
and the CLI read a method's facts from its class (`needs_text`, `decoder_kind`, `min_batch`,
`no_weight_decay()`). Adding a method = one module `NAME.py` with a `PretrainMethod` subclass whose
`name` is NAME + NAME in `BUILTIN` below (or `register_method(MyMethod)` from outside the package).

The built-in methods are imported on the registry's first use (`METHODS`, `get_method_class`,
`create_method`, `register_method`), not with this package: `MethodOptions` (the `loss.*` keys) and
`list_methods()` need no torch, so the config and `rils pretrain --help` do not wait for it.
"""
from __future__ import annotations

from dataclasses import fields
from importlib import import_module
from typing import TYPE_CHECKING

from .options import MethodOptions

if TYPE_CHECKING:
    from .base import PretrainMethod

# The built-in methods, in registration order; methods/NAME.py holds the method whose `name` is NAME
# (the module name is what lets them be listed before they are imported).
BUILTIN = ("clip", "mae", "mae_clip", "slip", "simclr", "rils", "rils_prototypes", "clip_target_mim")

_methods: dict | None = None   # METHODS once the built-in methods are imported


def _registry() -> dict[str, type[PretrainMethod]]:
    global _methods
    if _methods is None:
        from .base import PretrainMethod

        loaded = {}
        for name in BUILTIN:
            module = import_module(f".{name}", __name__)
            found = [c for c in vars(module).values()
                     if isinstance(c, type) and issubclass(c, PretrainMethod) and c.name == name]
            if not found:
                raise ImportError(f"{module.__name__} holds no PretrainMethod subclass named {name!r}")
            loaded[name] = _checked(found[0])
        _methods = loaded
    return _methods


def __getattr__(name: str):
    if name == "METHODS":   # name -> class; importing it imports the built-in methods (and torch)
        return _registry()
    if name == "PretrainMethod":
        from .base import PretrainMethod
        return PretrainMethod
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _checked(cls):
    from .base import PretrainMethod

    if not (isinstance(cls, type) and issubclass(cls, PretrainMethod)) or not cls.name:
        raise ValueError("register_method takes a PretrainMethod subclass with a non-empty `name`")
    if cls.decoder_kind not in (None, "latent", "pixel"):
        raise ValueError(f"{cls.__name__}.decoder_kind must be None, 'latent' or 'pixel'")
    return cls


def register_method(cls: type[PretrainMethod]) -> type[PretrainMethod]:
    """Add a method to the registry (usable as a class decorator); its `name` must be new."""
    methods = _registry()
    _checked(cls)
    if methods.get(cls.name, cls) is not cls:
        raise ValueError(f"a method named {cls.name!r} is already registered")
    methods[cls.name] = cls
    return cls


def list_methods() -> list[str]:
    """The registered methods' names (without importing them while only the built-in ones exist)."""
    return sorted(_methods if _methods is not None else BUILTIN)


def get_method_class(name: str) -> type[PretrainMethod]:
    methods = _registry()
    if name not in methods:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(list_methods())}")
    return methods[name]


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
