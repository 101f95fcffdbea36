"""Checkpoints: written atomically, read without unpickling code (`weights_only=True`)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

FORMAT = "rils-checkpoint-v1"


def save_atomic(obj: dict, path: str | Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: a kill or a full disk
    mid-write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"could not write checkpoint {path}: {exc.strerror}") from exc
        raise


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated or corrupted file, or not a torch file at all
        raise ValueError(f"checkpoint {path} is unreadable or corrupted ({type(exc).__name__})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a rils checkpoint")
    return ckpt


def model_state(ckpt: dict) -> dict:
    """The dual encoder's weights out of a method's state dict (keys 'model.*')."""
    return {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}


def load_model(path: str | Path, map_location="cpu"):
    from . import create_model
    from .presets import Preset

    ckpt = load_checkpoint(path, map_location)
    model = create_model(Preset(**ckpt["preset"]), method=ckpt["method"])
    model.load_state_dict(model_state(ckpt), strict=True)
    return model.eval()
