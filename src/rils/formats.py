"""The on-disk layouts of our exports, shared by the writer (rils.export) and the reader (rils.load):
format names, file names, and the key mapping between our dual encoder and open_clip's own
VisionTransformer ("native" layout), in both directions. See rils.export for the layouts."""
from __future__ import annotations

import json

from .presets import Preset, preset_from_record

FORMAT_TIMM = "rils-timm-trunk-v1"
FORMAT_OPEN_CLIP = "rils-open-clip-v1"
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
LN_EPS = 1e-6  # timm ViT's LayerNorm eps (open_clip's default is 1e-5)


def safetensors_metadata(path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


def preset_from(data, source) -> Preset:
    """The Preset recorded in an export's metadata (a dict or its JSON)."""
    try:
        return preset_from_record(json.loads(data) if isinstance(data, str) else data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: the recorded preset is not one this version of rils can build ({exc})") from exc


# timm block names -> open_clip ResidualAttentionBlock names (native layout)
_BLOCK_RENAMES = (("norm1.", "ln_1."), ("attn.qkv.weight", "attn.in_proj_weight"),
                  ("attn.qkv.bias", "attn.in_proj_bias"), ("attn.proj.", "attn.out_proj."),
                  ("norm2.", "ln_2."), ("mlp.fc1.", "mlp.c_fc."), ("mlp.fc2.", "mlp.c_proj."))


def _rename_block_key(rest: str, pairs) -> str | None:
    """The first (old prefix, new prefix) of `pairs` that `rest` starts with, applied; None if none."""
    for old, new in pairs:
        if rest.startswith(old):
            return new + rest[len(old):]
    return None


def to_open_clip_state_dict(model, tower: str) -> dict:
    """Our dual encoder's weights (no decoder) under open_clip CustomTextCLIP names."""
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.")}
    if tower == "timm":
        return sd
    out = {k: v for k, v in sd.items() if not k.startswith("visual.")}
    t = {k[len("visual.trunk."):]: v for k, v in sd.items() if k.startswith("visual.trunk.")}
    pos = t.pop("pos_embed")[0].clone()                          # [1+N, W]
    pos[1:] += t.pop("patch_embed.proj.bias")                     # conv1 has no bias: fold it here
    out["visual.conv1.weight"] = t.pop("patch_embed.proj.weight")
    out["visual.class_embedding"] = t.pop("cls_token")[0, 0]
    out["visual.positional_embedding"] = pos
    out["visual.ln_post.weight"] = t.pop("norm.weight")
    out["visual.ln_post.bias"] = t.pop("norm.bias")
    out["visual.proj"] = sd["visual.head.proj.weight"].T
    for k in list(t):
        if k.startswith("blocks."):
            i, rest = k[len("blocks."):].split(".", 1)
            renamed = _rename_block_key(rest, _BLOCK_RENAMES)
            if renamed is None:
                raise ValueError(f"no open_clip name for trunk weight {k!r}")
            out[f"visual.transformer.resblocks.{i}.{renamed}"] = t.pop(k)
    if t:
        raise ValueError(f"trunk weights with no open_clip counterpart: {sorted(t)}")
    return out


def from_open_clip_state_dict(sd: dict, preset: Preset, tower: str) -> dict:
    """Inverse of `to_open_clip_state_dict` (dual-encoder names, no decoder)."""
    from .model.pos_embed import sincos_2d   # here: the constants above are read by `rils export --help`

    if tower == "timm":
        return dict(sd)
    sd = dict(sd)
    out = {k: v for k, v in sd.items() if not k.startswith("visual.")}
    v = {k[len("visual."):]: t for k, t in sd.items() if k.startswith("visual.")}
    pos = v.pop("positional_embedding").clone()
    # Unfold the patch bias: our positions are the fixed sin-cos table, so the bias is what the
    # patch rows hold on top of it (exact up to rounding); the sum is kept exactly either way.
    fixed = sincos_2d(preset.width, preset.grid_size)[0].to(pos.dtype)
    bias = (pos[1:] - fixed[1:]).mean(dim=0)
    pos[1:] -= bias
    tr = "visual.trunk."
    out[tr + "pos_embed"] = pos.unsqueeze(0)
    out[tr + "patch_embed.proj.bias"] = bias
    out[tr + "patch_embed.proj.weight"] = v.pop("conv1.weight")
    out[tr + "cls_token"] = v.pop("class_embedding").reshape(1, 1, -1)
    out[tr + "norm.weight"] = v.pop("ln_post.weight")
    out[tr + "norm.bias"] = v.pop("ln_post.bias")
    out["visual.head.proj.weight"] = v.pop("proj").T.contiguous()
    for k in list(v):
        if k.startswith("transformer.resblocks."):
            i, rest = k[len("transformer.resblocks."):].split(".", 1)
            renamed = _rename_block_key(rest, [(b, a) for a, b in _BLOCK_RENAMES])
            out[f"{tr}blocks.{i}.{rest if renamed is None else renamed}"] = v.pop(k)
    if v:
        raise ValueError(f"open_clip weights with no rils counterpart: {sorted(v)}")
    return out
