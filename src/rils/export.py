"""Exports of a trained dual encoder for timm and open_clip, and `load_model` for every format.

    rils export --checkpoint CKPT --format timm --out trunk.safetensors
    rils export --checkpoint CKPT --format open_clip --out DIR

timm
    The vision trunk's state dict as safetensors. The file's metadata names the timm model and the
    keyword arguments that rebuild it (`timm_model_name`, `timm_kwargs` as JSON)::

        meta = safetensors.safe_open(path, "pt").metadata()
        trunk = timm.create_model(meta["timm_model_name"], **json.loads(meta["timm_kwargs"]))
        trunk.load_state_dict(safetensors.torch.load_file(path), strict=True)

    `trunk.forward_features(x)` then equals ours. The projection θ, the text tower and the decoder
    are not in this file (timm has no place for them).

open_clip
    `DIR/open_clip_config.json` + `DIR/open_clip_model.safetensors`, read by plain open_clip (no
    rils import needed): `open_clip.create_model('local-dir:DIR')` and
    `open_clip.get_tokenizer('local-dir:DIR')`. The model is a `CustomTextCLIP` (`custom_text:
    true`): our text tower *is* open_clip's TextTransformer built from the same `CLIPTextCfg`, and
    `logit_scale` is stored in log space as open_clip's. The vision tower takes one of two layouts:

    - "timm": open_clip's `TimmModel` (`visual.trunk`, `visual.head.proj`), our names one to one.
      open_clip 3.x builds that trunk as `timm.create_model(timm_model_name)` with the model's
      *default* arguments (it forwards no img_size / patch_size / depth / fc_norm) and then
      `reset_classifier(0, global_pool='avg')`, which keeps the norm placement chosen at
      construction (final norm on all tokens, no fc_norm): exactly our pooling. So the layout is
      exact when the preset's trunk is the timm model at its defaults: vit_b16, vit_l16, vit_s16,
      vit_ti16. It is impossible for vit_ti8_64 and vit_nano8_32 (64 px / 32 px input, patch 8,
      6 / 2 blocks, other widths): no registered timm name has those defaults, and open_clip
      passes no kwargs to timm (registering a name would need `import rils` on the user's side).
    - "native": open_clip's own `VisionTransformer` (`visual.conv1`, `visual.transformer...`),
      configured to compute our function: `no_ln_pre`, `pool_type='avg'` with the final norm on
      all tokens, LayerNorm eps 1e-6, exact GELU. The weights are renamed (qkv -> in_proj, fc1 ->
      c_fc, ...), θ is transposed into `visual.proj`, and timm's patch-embedding bias (open_clip's
      conv1 has none) is folded into the patch rows of `positional_embedding` - the same sum. Works
      for every preset.

    `vision_tower="auto"` (default) picks "timm" where it is exact, else "native"; asking for
    "timm" where it is impossible raises a ValueError that says why. The decoder is not exported.

Every export is verified after writing (unless `verify=False`): the peer model is built from the
files as a user would and its outputs are compared with ours in fp32.

`load_model(path)` reads a training checkpoint (.pt, `torch.load(weights_only=True)`), a timm
export (a vision-only model: no θ, no text tower; a warning says so) or an open_clip export (folder,
`local-dir:` spec or the folder's .safetensors). It never unpickles: safetensors and JSON only, or
torch's weights-only unpickler for .pt files.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from .presets import Preset

FORMAT_TIMM = "rils-timm-trunk-v1"
FORMAT_OPEN_CLIP = "rils-open-clip-v1"
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
VISION_TOWERS = ("auto", "timm", "native")
LN_EPS = 1e-6  # timm ViT's LayerNorm eps (open_clip's default is 1e-5)
_TOLERANCE = 1e-4  # verification bound (fp32); observed differences are ~1e-6


class VisionOnlyWarning(UserWarning):
    """A timm export was loaded: the model has the vision trunk only."""


# ------------------------------------------------------------------------------------------ helpers

def _version() -> str:
    from . import __version__
    return __version__


def _as_model(model_or_path, map_location="cpu"):
    if isinstance(model_or_path, torch.nn.Module):
        return model_or_path
    return load_model(model_or_path, map_location)


def _tensors(state: dict) -> dict:
    """Contiguous CPU copies, as safetensors wants them (no shared storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


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


def _safetensors_metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


def _load_safetensors(path: Path, map_location="cpu") -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(map_location))
    except Exception as exc:  # not a safetensors file, truncated, ...
        raise ValueError(f"{path} is unreadable or not a safetensors file ({type(exc).__name__}: {exc})") from exc


def _preset(data, source) -> Preset:
    try:
        return Preset(**(json.loads(data) if isinstance(data, str) else data))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: the recorded preset is not one this version of rils can build ({exc})") from exc


def _peer_inputs(model, batch: int = 2):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, model.image_size, model.image_size, generator=g)
    return images


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


# --------------------------------------------------------------------------------------------- timm

def timm_metadata(model) -> dict:
    return {"format": FORMAT_TIMM, "timm_model_name": model.timm_model_name,
            "timm_kwargs": json.dumps(model.timm_kwargs, sort_keys=True),
            "rils_preset": json.dumps(model.preset.to_dict(), sort_keys=True),
            "rils_version": _version()}


def export_timm(model_or_path, out, *, verify: bool = True) -> dict:
    """Write the vision trunk as safetensors (+ metadata); returns a summary (with the verified
    max abs difference of `forward_features` when `verify`)."""
    from safetensors.torch import save_file

    model = _as_model(model_or_path).float().eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(_tensors(model.visual.trunk.state_dict()), str(out), metadata=timm_metadata(model))
    info = {"format": "timm", "out": str(out), "timm_model_name": model.timm_model_name,
            "timm_kwargs": model.timm_kwargs}
    if verify:
        info["max_abs_diff"] = verify_timm(model, out)
    return info


def verify_timm(model, path) -> dict:
    """Build the trunk with timm from the file alone (strict load) and compare forward_features."""
    import timm
    from safetensors.torch import load_file

    meta = _safetensors_metadata(Path(path))
    trunk = timm.create_model(meta["timm_model_name"], pretrained=False, **json.loads(meta["timm_kwargs"]))
    trunk.load_state_dict(load_file(str(path)), strict=True)
    trunk.eval()
    images = _peer_inputs(model)
    with torch.no_grad():
        diff = _max_diff(trunk.forward_features(images), model.forward_features(images))
    if not diff < _TOLERANCE:
        raise RuntimeError(f"timm export {path}: forward_features differs from ours by {diff:.3g}")
    return {"forward_features": diff}


def load_timm_export(path, map_location="cpu"):
    """A vision-only dual encoder (no projection θ, no text tower) from a timm export."""
    from . import DualEncoder

    path = Path(path)
    meta = _safetensors_metadata(path)
    if meta.get("format") != FORMAT_TIMM or "rils_preset" not in meta:
        raise ValueError(f"{path} is a safetensors file but not a rils timm export "
                         f"(metadata format={meta.get('format')!r})")
    preset = _preset(meta["rils_preset"], path)
    model = DualEncoder(preset, text=False, decoder=None, projection=False)
    model.visual.trunk.load_state_dict(_load_safetensors(path, map_location), strict=True)
    warnings.warn(f"{path} is a timm export and holds the vision trunk only: loaded a vision-only model "
                  f"(forward_features works; no projection θ, no text tower, so no encode_image / "
                  f"encode_text)", VisionOnlyWarning, stacklevel=4)
    return model.eval()


# ---------------------------------------------------------------------------------------- open_clip

def _primitive_attrs(module: torch.nn.Module) -> dict:
    out = {}
    for name, m in module.named_modules():
        attrs = {k: v for k, v in vars(m).items()
                 if not k.startswith("_") and k != "training" and isinstance(v, (bool, int, float, str, tuple))}
        out[name] = (type(m).__name__, attrs)
    return out


def timm_tower_check(preset: Preset) -> str | None:
    """None when open_clip's TimmModel builds exactly our trunk for `preset`, else the reason.

    open_clip 3.x (timm_proj='linear') calls `timm.create_model(name)` with the model's defaults and
    then `reset_classifier(0, global_pool='avg')`. Both trunks are built on the meta device (no
    memory, no init cost) and compared module by module: types, hyper-parameters, shapes.
    """
    import timm

    with torch.device("meta"):
        theirs = timm.create_model(preset.timm_model_name, pretrained=False)
        theirs.reset_classifier(0, global_pool="avg")
        ours = timm.create_model(preset.timm_model_name, pretrained=False, **preset.timm_kwargs())
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    if shapes(theirs) != shapes(ours) or _primitive_attrs(theirs) != _primitive_attrs(ours) \
            or repr(theirs) != repr(ours):
        cfg = theirs.patch_embed
        return (f"open_clip's TimmModel builds `timm.create_model({preset.timm_model_name!r})` with that "
                f"model's default arguments ({cfg.img_size[0]} px, patch {cfg.patch_size[0]}, "
                f"{len(theirs.blocks)} x {theirs.embed_dim}) and forwards no timm kwargs, but preset "
                f"{preset.name!r} needs {preset.image_size} px, patch {preset.patch_size}, "
                f"{preset.depth} x {preset.width}; use vision_tower='native' (open_clip's own ViT)")
    return None


def resolve_vision_tower(preset: Preset, vision_tower: str = "auto") -> str:
    if vision_tower not in VISION_TOWERS:
        raise ValueError(f"vision_tower must be one of {', '.join(VISION_TOWERS)}, not {vision_tower!r}")
    if vision_tower == "native":
        return "native"
    reason = timm_tower_check(preset)
    if reason is None:
        return "timm"
    if vision_tower == "timm":
        raise ValueError(f"cannot export preset {preset.name!r} with open_clip's TimmModel: {reason}")
    return "native"


def open_clip_vision_cfg(preset: Preset, tower: str) -> dict:
    if tower == "timm":
        return dict(image_size=preset.image_size, timm_model_name=preset.timm_model_name,
                    timm_model_pretrained=False, timm_pool="avg", timm_proj="linear",
                    timm_proj_bias=False, timm_drop=0.0)
    if preset.width % preset.heads:
        raise ValueError(f"width {preset.width} is not divisible by {preset.heads} heads")
    return dict(image_size=preset.image_size, patch_size=preset.patch_size, width=preset.width,
                layers=preset.depth, head_width=preset.width // preset.heads, mlp_ratio=preset.mlp_ratio,
                no_ln_pre=True, pos_embed_type="learnable", pool_type="avg", final_ln_after_pool=False,
                norm_kwargs={"eps": LN_EPS})


def open_clip_config(model, tower: str) -> dict:
    from .model.text import text_cfg

    p = model.preset
    return {
        "model_cfg": {"embed_dim": p.embed_dim, "custom_text": True, "quick_gelu": False,
                      "vision_cfg": open_clip_vision_cfg(p, tower), "text_cfg": text_cfg(p)},
        "preprocess_cfg": {"size": p.image_size, "mode": "RGB", "mean": list(model.image_mean),
                           "std": list(model.image_std), "interpolation": "bicubic",
                           "resize_mode": "shortest", "fill_color": 0},
        "rils": {"format": FORMAT_OPEN_CLIP, "vision_tower": tower, "preset": p.to_dict(),
                 "rils_version": _version()},
    }


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
    if tower == "timm":
        return dict(sd)
    from .model.pos_embed import sincos_2d

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


def export_open_clip(model_or_path, out_dir, *, vision_tower: str = "auto", verify: bool = True) -> dict:
    """Write DIR/open_clip_config.json and DIR/open_clip_model.safetensors; returns a summary."""
    from safetensors.torch import save_file

    model = _as_model(model_or_path).float().eval()
    if model.text is None or not hasattr(model.visual.head, "proj"):
        raise ValueError("an open_clip export needs the text tower and the image projection θ; this model "
                         "was pre-trained without text (export it with --format timm)")
    tower = resolve_vision_tower(model.preset, vision_tower)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = open_clip_config(model, tower)
    stale = [p.name for p in out_dir.iterdir()
             if p.suffix in (".safetensors", ".bin", ".pth") and p.name != OPEN_CLIP_WEIGHTS]
    if stale:  # open_clip picks the weights file by name; another one could shadow ours
        raise ValueError(f"{out_dir} already holds other weights ({', '.join(stale)}); use an empty folder")
    save_file(_tensors(to_open_clip_state_dict(model, tower)), str(out_dir / OPEN_CLIP_WEIGHTS),
              metadata={"format": FORMAT_OPEN_CLIP, "vision_tower": tower})
    (out_dir / OPEN_CLIP_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    info = {"format": "open_clip", "out": str(out_dir), "vision_tower": tower,
            "open_clip_name": f"local-dir:{out_dir}"}
    if verify:
        info["max_abs_diff"] = verify_open_clip(model, out_dir)
    return info


def verify_open_clip(model, out_dir, texts=("a red circle", "a blue square on a light background")) -> dict:
    """Build the model with plain open_clip from the folder and compare both encoders and the tokens."""
    import open_clip

    from .model.text import get_tokenizer

    name = f"local-dir:{out_dir}"
    peer = open_clip.create_model(name).eval()
    tok = open_clip.get_tokenizer(name)
    ours_tok = get_tokenizer(model.context_length)
    tokens = tok(list(texts))
    if not torch.equal(tokens, ours_tok(list(texts))):
        raise RuntimeError(f"open_clip export {out_dir}: the tokenizer differs from ours")
    images = _peer_inputs(model)
    with torch.no_grad():
        diffs = {"encode_image": _max_diff(peer.encode_image(images), model.encode_image(images)),
                 "encode_text": _max_diff(peer.encode_text(tokens), model.encode_text(tokens)),
                 "logit_scale": _max_diff(peer.logit_scale, model.logit_scale)}
    bad = {k: d for k, d in diffs.items() if not d < _TOLERANCE}
    if bad:
        raise RuntimeError(f"open_clip export {out_dir}: outputs differ from ours: {bad}")
    return diffs


def load_open_clip_export(path, map_location="cpu"):
    """Our dual encoder (vision + θ + text + logit scale; no decoder) from an open_clip export."""
    from . import DualEncoder

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
    preset = _preset(meta.get("preset"), folder)
    model = DualEncoder(preset, text=True, decoder=None)
    state = from_open_clip_state_dict(_load_safetensors(weights, map_location), preset,
                                      meta.get("vision_tower", "timm"))
    model.load_state_dict(state, strict=True)
    return model.eval()


# -------------------------------------------------------------------------------------- load_model

def load_model(path, map_location="cpu"):
    """Load a training checkpoint, a timm export or an open_clip export into our dual encoder.

    Dispatch: a folder or `local-dir:` spec is an open_clip export; a safetensors file is a timm
    export (by its metadata) or the weights of an open_clip export folder; anything else goes to
    `rils.checkpoint.load_model` (`torch.load(weights_only=True)`). Nothing is ever unpickled.
    """
    spec = str(path)
    if spec.startswith("local-dir:"):
        spec = spec[len("local-dir:"):]
    p = Path(spec)
    if p.is_dir():
        return load_open_clip_export(p, map_location)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    if _is_safetensors(p):
        try:
            meta = _safetensors_metadata(p)
        except Exception as exc:
            raise ValueError(f"{p} is unreadable or corrupted ({type(exc).__name__}: {exc})") from exc
        if meta.get("format") == FORMAT_TIMM:
            return load_timm_export(p, map_location)
        if meta.get("format") == FORMAT_OPEN_CLIP or (p.parent / OPEN_CLIP_CONFIG).is_file():
            return load_open_clip_export(p.parent, map_location)
        raise ValueError(f"{p} is a safetensors file but not a rils export (no rils format in its metadata)")
    from .checkpoint import load_model as load_checkpoint_model

    return load_checkpoint_model(p, map_location)


# ---------------------------------------------------------------------------------------------- CLI

def add_export_parser(subparsers) -> None:
    import argparse

    p = subparsers.add_parser(
        "export", help="export a checkpoint for timm (vision trunk) or open_clip (whole dual encoder)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", "-m", required=True, help="training checkpoint (or an export)")
    p.add_argument("--format", "-f", required=True, choices=("timm", "open_clip"))
    p.add_argument("--out", "-o", required=True, help="timm: FILE.safetensors; open_clip: a folder")
    p.add_argument("--vision-tower", default="auto", choices=VISION_TOWERS,
                   help="open_clip: TimmModel ('timm', exact only for presets at timm's defaults), "
                        "open_clip's own ViT ('native', every preset) or 'auto'")
    p.add_argument("--no-verify", action="store_true",
                   help="skip rebuilding the peer model from the files and comparing its outputs")
    p.set_defaults(func=run_export)


def run_export(args) -> int:
    import sys

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VisionOnlyWarning)
            model = load_model(args.checkpoint)
        if args.format == "timm":
            info = export_timm(model, args.out, verify=not args.no_verify)
        else:
            info = export_open_clip(model, args.out, vision_tower=args.vision_tower,
                                    verify=not args.no_verify)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"rils export: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2))
    return 0
