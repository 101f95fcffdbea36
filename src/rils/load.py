"""`load_model`: a training checkpoint, a timm export or an open_clip export, back into our dual
encoder. Nothing is ever unpickled: safetensors and JSON only, or torch's weights-only unpickler
for .pt files. What the run decided about its losses (τ1, τ2, λ, ...) comes back as
`model.method_options` (a dict; empty where the file does not record it)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from .checkpoint import load_checkpoint, model_state
from .factory import create_model
from .formats import (FORMAT_OPEN_CLIP, FORMAT_TIMM, OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS,
                      from_open_clip_state_dict, preset_from, safetensors_metadata)
from .model.dual_encoder import DualEncoder
from .presets import preset_from_record


class VisionOnlyWarning(UserWarning):
    """A timm export was loaded: the model has the vision trunk only."""


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    # 8-byte little-endian header length, then the JSON header.
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 1 << 30


def _load_safetensors(path: Path, map_location="cpu") -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(map_location))
    except Exception as exc:  # not a safetensors file, truncated, ...
        raise ValueError(f"{path} is unreadable or not a safetensors file ({type(exc).__name__}: {exc})") from exc


def load_checkpoint_model(path, map_location="cpu") -> DualEncoder:
    """The dual encoder of a training checkpoint, with the method's parts and `method_options`."""
    ckpt = load_checkpoint(path, map_location)
    model = create_model(preset_from_record(ckpt["preset"]), method=ckpt["method"])
    model.load_state_dict(model_state(ckpt), strict=True)
    model.method_options = dict(ckpt.get("method_options") or {})
    return model.eval()


def load_timm_export(path, map_location="cpu"):
    """A vision-only dual encoder (no projection θ, no text tower) from a timm export."""
    path = Path(path)
    meta = safetensors_metadata(path)
    if meta.get("format") != FORMAT_TIMM or "rils_preset" not in meta:
        raise ValueError(f"{path} is a safetensors file but not a rils timm export "
                         f"(metadata format={meta.get('format')!r})")
    preset = preset_from(meta["rils_preset"], path)
    model = DualEncoder(preset, text=False, decoder=None, projection=False)
    model.visual.trunk.load_state_dict(_load_safetensors(path, map_location), strict=True)
    model.method_options = {}
    # encode_image's error would otherwise blame pre-training ("without text"): a RILS or CLIP run's
    # trunk exported for timm has lost θ and the text tower in the export, not in training
    model.missing_parts_reason = (f"{path} is a timm export, which holds the vision trunk only; for image-text "
                                  f"embeddings load the training checkpoint or an open_clip export")
    warnings.warn(f"{path} is a timm export and holds the vision trunk only: loaded a vision-only model "
                  f"(forward_features works; no projection θ, no text tower, so no encode_image / "
                  f"encode_text)", VisionOnlyWarning, stacklevel=4)
    return model.eval()


def load_open_clip_export(path, map_location="cpu"):
    """Our dual encoder (vision + θ + text + logit scale; no decoder) from an open_clip export."""
    folder = Path(path)
    config_path = folder / OPEN_CLIP_CONFIG
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder} holds no {OPEN_CLIP_CONFIG} (not an open_clip model folder)")
    config = json.loads(config_path.read_text())
    meta = config.get("rils") or {}
    if meta.get("format") != FORMAT_OPEN_CLIP:
        raise ValueError(f"{folder} is an open_clip folder but not a rils export; load it with "
                         f"open_clip.create_model('local-dir:{folder}') (or `rils eval --checkpoint "
                         f"local-dir:{folder}`)")
    weights = folder / OPEN_CLIP_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found")
    preset = preset_from(meta.get("preset"), folder)
    model = DualEncoder(preset, text=True, decoder=None)
    state = from_open_clip_state_dict(_load_safetensors(weights, map_location), preset,
                                      meta.get("vision_tower", "timm"))
    model.load_state_dict(state, strict=True)
    model.method_options = dict(meta.get("method_options") or {})
    return model.eval()


def run_checkpoint(path) -> Path:
    """A run folder (`runs/NAME`, holding checkpoints/latest.pt) stands for its latest checkpoint;
    any other path is itself."""
    p = Path(path)
    latest = p / "checkpoints" / "latest.pt"
    return latest if p.is_dir() and latest.is_file() else p


def load_model(path, map_location="cpu"):
    """Load a training checkpoint, a timm export or an open_clip export into our dual encoder.

    Dispatch: a run folder is its checkpoints/latest.pt; another folder or `local-dir:` spec is an
    open_clip export; a safetensors file is a timm
    export (by its metadata) or the weights of an open_clip export folder; anything else goes to
    `load_checkpoint_model` (`torch.load(weights_only=True)`). Nothing is ever unpickled.
    """
    spec = str(path)
    if spec.startswith("local-dir:"):
        spec = spec[len("local-dir:"):]
    p = run_checkpoint(spec)
    if p.is_dir():
        return load_open_clip_export(p, map_location)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    if _is_safetensors(p):
        try:
            meta = safetensors_metadata(p)
        except Exception as exc:
            raise ValueError(f"{p} is unreadable or corrupted ({type(exc).__name__}: {exc})") from exc
        if meta.get("format") == FORMAT_TIMM:
            return load_timm_export(p, map_location)
        if meta.get("format") == FORMAT_OPEN_CLIP or (p.parent / OPEN_CLIP_CONFIG).is_file():
            return load_open_clip_export(p.parent, map_location)
        raise ValueError(f"{p} is a safetensors file but not a rils export (no rils format in its metadata)")
    return load_checkpoint_model(p, map_location)
