"""Exports of a trained dual encoder for timm, open_clip and MAE's code (the first two are read back
by `rils.load.load_model`).

    rils export --checkpoint CKPT --format timm --out trunk.safetensors
    rils export --checkpoint CKPT --format open_clip --out DIR
    rils export --checkpoint CKPT --format mae --out trunk.pth

timm
    The vision trunk's state dict as safetensors. The file's metadata names the timm model and the
    keyword arguments that rebuild it (`timm_model_name`, `timm_kwargs` as JSON). The kwargs carry,
    beside the geometry, timm's `pretrained_cfg` of the preprocessing the model was trained with
    (input size, mean, std, interpolation, crop; also alone as `pretrained_cfg`), so timm's own habits
    give the model's transform, not the 224-px one of the timm name's defaults::

        with safetensors.safe_open(path, "pt") as f:
            meta = f.metadata()
        trunk = timm.create_model(meta["timm_model_name"], pretrained=True,
                                  pretrained_cfg_overlay=dict(file=path), **json.loads(meta["timm_kwargs"]))
        transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=trunk))

    `trunk.forward_features(transform(image)[None])` then equals ours on the same image file
    (`pretrained=False` and `trunk.load_state_dict(safetensors.torch.load_file(path), strict=True)`
    works as well; `num_classes=K` in the kwargs gives a fresh K-way head for fine-tuning). The
    projection θ, the text tower and the decoder are not in this file (timm has no place for them):
    `rils.load_model` reads it as a vision-only model, without `encode_image`.

open_clip
    `DIR/open_clip_config.json` + `DIR/open_clip_model.safetensors`, read by plain open_clip (no
    rils import needed): `open_clip.create_model('local-dir:DIR')` and
    `open_clip.get_tokenizer('local-dir:DIR')`. The model is a `CustomTextCLIP` (`custom_text:
    true`): our text tower *is* open_clip's TextTransformer built from the same `CLIPTextCfg`, with
    the model's activation as open_clip's `quick_gelu` (QuickGELU by default, GELU for
    `model.quick_gelu=false` and for checkpoints that predate the setting), and `logit_scale` is
    stored in log space as open_clip's. The vision tower takes one of two layouts:

    - "timm": open_clip's `TimmModel` (`visual.trunk`, `visual.head.proj`), our names one to one.
      open_clip 3.x builds that trunk as `timm.create_model(timm_model_name)` with the model's
      *default* arguments (it forwards no img_size / patch_size / depth / fc_norm) and then
      `reset_classifier(0, global_pool='avg')`, which keeps the norm placement chosen at
      construction (final norm on all tokens, no fc_norm): exactly our pooling. So the layout is
      exact when the preset's trunk is the timm model at its defaults: vit_b16, vit_l16, vit_s16,
      vit_ti16, with either text activation (TimmModel runs timm's GELU whatever `quick_gelu`
      says). It is impossible for vit_ti8_64 and vit_nano8_32 (64 px / 32 px input, patch 8,
      6 / 2 blocks, other widths): no registered timm name has those defaults, and open_clip
      passes no kwargs to timm (registering a name would need `import rils` on the user's side).
    - "native": open_clip's own `VisionTransformer` (`visual.conv1`, `visual.transformer...`),
      configured to compute our function: `no_ln_pre`, `pool_type='avg'` with the final norm on
      all tokens, LayerNorm eps 1e-6, exact GELU. The weights are renamed (qkv -> in_proj, fc1 ->
      c_fc, ...), θ is transposed into `visual.proj`, and timm's patch-embedding bias (open_clip's
      conv1 has none) is folded into the patch rows of `positional_embedding` - the same sum. Works
      for every preset with a GELU text tower only: open_clip's model config has one `quick_gelu`
      for both towers, and with it its own ViT would run QuickGELU where our timm trunk runs GELU,
      so no plain open_clip model computes a QuickGELU text tower beside this layout; such an
      export is refused (train with `model.quick_gelu=false`, or export the trunk with `timm`).

    `vision_tower="auto"` (default) picks "timm" where it is exact, else "native"; asking for a
    layout where it is impossible raises a ValueError that says why. The decoder is not exported.

mae
    MAE's checkpoint layout, `{"model": trunk_state_dict}` in a plain torch file of tensors
    (`torch.load(path, weights_only=True)` reads it). MAE's `models_vit.VisionTransformer` is a timm
    VisionTransformer, as our trunk is, so the names are already MAE's: `cls_token`, `pos_embed`,
    `patch_embed.proj.*`, `blocks.N.*`, `norm.*`, and no `head.*`. MAE's main_finetune.py and
    main_linprobe.py (`--finetune trunk.pth`) read `checkpoint['model']`, interpolate `pos_embed` to
    their input size and load non-strictly: `head.*` starts fresh and, with their default
    `--global_pool`, so does `fc_norm.*`, which replaces our final `norm.*` (left unused, as MAE's
    own pre-trained weights leave theirs). detectron2's ViTDet takes the same file as
    `train.init_checkpoint` (`?matching_heuristics=True`). The geometry is not recorded: the reader
    picks the matching model (MAE's `vit_base_patch16` for vit_b16).

Every export is verified after writing (unless `verify=False`): the peer model is built from the
files as a user would and its outputs are compared with ours in fp32.

`rils.load_model(path)` (rils/load.py) reads a training checkpoint (.pt), a timm export (a
vision-only model: no θ, no text tower; a warning says so) or an open_clip export (folder,
`local-dir:` spec or the folder's .safetensors). The open_clip export records the run's loss
options (τ1 and the rest) under `rils.method_options`, so evaluation defaults to them.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ._version import __version__
from .formats import (FORMAT_OPEN_CLIP, FORMAT_TIMM, LN_EPS, OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS,
                      safetensors_metadata, to_open_clip_state_dict)
from .presets import Preset

if TYPE_CHECKING:
    import torch
# torch, and .checkpoint and .load that import it, are imported in the functions that use them:
# `rils export --help` (this module's parser and docstring) must not wait for torch.

VISION_TOWERS = ("auto", "timm", "native")
_TOLERANCE = 1e-4  # verification bound (fp32); observed differences are ~1e-6


# ------------------------------------------------------------------------------------------ helpers

def _as_model(model_or_path, map_location="cpu"):
    import torch

    from .load import load_model

    if isinstance(model_or_path, torch.nn.Module):
        return model_or_path
    return load_model(model_or_path, map_location)


def _tensors(state: dict) -> dict:
    """Contiguous CPU copies, as safetensors wants them (no shared storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def _peer_inputs(model, batch: int = 2):
    import torch

    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, model.image_size, model.image_size, generator=g)
    return images


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


# --------------------------------------------------------------------------------------------- timm

def timm_pretrained_cfg(model) -> dict:
    """timm's description of the evaluation preprocessing: the same as ours (rils.eval.models):
    bicubic resize of the short side to the input size, centre crop of that size, CLIP's mean/std."""
    size = model.image_size
    # first_conv and classifier are timm ViT's names: its pretrained loading drops the classifier when
    # asked for num_classes=K (fine-tuning) and adapts the first conv to other channel counts
    return {"input_size": [3, size, size], "mean": list(model.image_mean), "std": list(model.image_std),
            "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center", "num_classes": 0,
            "first_conv": "patch_embed.proj", "classifier": "head"}


def timm_metadata(model) -> dict:
    return {"format": FORMAT_TIMM, "timm_model_name": model.timm_model_name,
            # pretrained_cfg in the kwargs replaces the timm name's (224 px, ImageNet's weights), so
            # `create_model(name, **kwargs)` then `resolve_data_config({}, model=m)` gives our input
            # size and normalisation, and `pretrained=True` fetches nothing (it takes
            # `pretrained_cfg_overlay=dict(file=...)`); an explicit `pretrained_cfg_overlay` still
            # applies on top of it, as the older exports documented.
            "timm_kwargs": json.dumps({**model.timm_kwargs, "pretrained_cfg": timm_pretrained_cfg(model)},
                                      sort_keys=True),
            "pretrained_cfg": json.dumps(timm_pretrained_cfg(model), sort_keys=True),
            "rils_preset": json.dumps(model.preset.to_dict(), sort_keys=True),
            "rils_version": __version__}


def export_timm(model_or_path, out, *, verify: bool = True) -> dict:
    """Write the vision trunk as safetensors (+ metadata); returns a summary (with the verified
    max abs difference of `forward_features` when `verify`)."""
    from safetensors.torch import save_file

    from .checkpoint import default_file_mode

    model = _as_model(model_or_path).float().eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(_tensors(model.visual.trunk.state_dict()), str(out), metadata=timm_metadata(model))
    os.chmod(out, default_file_mode())   # safetensors writes 0600 (through a temporary file)
    info = {"format": "timm", "out": str(out), "timm_model_name": model.timm_model_name,
            "timm_kwargs": model.timm_kwargs}
    if verify:
        info["max_abs_diff"] = verify_timm(model, out)
    return info


def verify_timm(model, path) -> dict:
    """Build the trunk with timm from the file alone, as the module docstring shows (timm's own loading
    of a local file, strict), check that timm's data config is the model's preprocessing, and compare
    forward_features."""
    import timm
    import torch

    meta = safetensors_metadata(Path(path))
    trunk = timm.create_model(meta["timm_model_name"], pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                              **json.loads(meta["timm_kwargs"]))
    trunk.eval()
    want, got = timm_pretrained_cfg(model), timm.data.resolve_data_config({}, model=trunk)
    same = lambda a, b: tuple(a) == tuple(b) if isinstance(a, (list, tuple)) else a == b  # noqa: E731
    wrong = [k for k in ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")
             if not same(want[k], got.get(k))]
    if wrong:   # a timm that ignored the kwargs' pretrained_cfg would hand users a wrong transform
        raise RuntimeError(f"timm export {path}: timm's resolve_data_config gives "
                           + ", ".join(f"{k}={got.get(k)} (the model's: {want[k]})" for k in wrong))
    images = _peer_inputs(model)
    with torch.no_grad():
        diff = _max_diff(trunk.forward_features(images), model.forward_features(images))
    if not diff < _TOLERANCE:
        raise RuntimeError(f"timm export {path}: forward_features differs from ours by {diff:.3g}")
    return {"forward_features": diff}


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
    import torch

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


def native_tower_check(preset: Preset) -> str | None:
    """None when open_clip's own ViT beside our text tower computes our model, else the reason."""
    if preset.quick_gelu:
        return ("open_clip's model config has one quick_gelu for both towers, so its own ViT would run "
                "QuickGELU where our timm trunk runs GELU; a QuickGELU text tower exports to open_clip only "
                "beside the 'timm' layout (presets at timm's defaults: vit_b16, vit_l16, vit_s16, vit_ti16); "
                "train with model.quick_gelu=false to export this preset, or export the trunk with --format timm")
    return None


def resolve_vision_tower(preset: Preset, vision_tower: str = "auto") -> str:
    if vision_tower not in VISION_TOWERS:
        raise ValueError(f"vision_tower must be one of {', '.join(VISION_TOWERS)}, not {vision_tower!r}")
    if vision_tower != "native":
        reason = timm_tower_check(preset)
        if reason is None:
            return "timm"
        if vision_tower == "timm":
            raise ValueError(f"cannot export preset {preset.name!r} with open_clip's TimmModel: {reason}")
    reason = native_tower_check(preset)
    if reason is not None:
        raise ValueError(f"cannot export preset {preset.name!r} with open_clip's own ViT: {reason}")
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
        # timm's trunk ignores quick_gelu; open_clip's own ViT is only written beside GELU (native_tower_check)
        "model_cfg": {"embed_dim": p.embed_dim, "custom_text": True, "quick_gelu": p.quick_gelu,
                      "vision_cfg": open_clip_vision_cfg(p, tower), "text_cfg": text_cfg(p)},
        "preprocess_cfg": {"size": p.image_size, "mode": "RGB", "mean": list(model.image_mean),
                           "std": list(model.image_std), "interpolation": "bicubic",
                           "resize_mode": "shortest", "fill_color": 0},
        "rils": {"format": FORMAT_OPEN_CLIP, "vision_tower": tower, "preset": p.to_dict(),
                 "method_options": dict(getattr(model, "method_options", None) or {}),
                 "rils_version": __version__},
    }


def export_open_clip(model_or_path, out_dir, *, vision_tower: str = "auto", verify: bool = True) -> dict:
    """Write DIR/open_clip_config.json and DIR/open_clip_model.safetensors; returns a summary."""
    from safetensors.torch import save_file

    from .checkpoint import default_file_mode

    model = _as_model(model_or_path).float().eval()
    if model.text is None or not hasattr(model.visual.head, "proj"):
        raise ValueError(f"an open_clip export needs the text tower and the image projection θ; this model lacks them "
                         f"({getattr(model, 'missing_parts_reason', 'it was pre-trained without text')}); "
                         f"export its trunk with --format timm")
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
    os.chmod(out_dir / OPEN_CLIP_WEIGHTS, default_file_mode())   # safetensors writes 0600
    (out_dir / OPEN_CLIP_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    info = {"format": "open_clip", "out": str(out_dir), "vision_tower": tower,
            "open_clip_name": f"local-dir:{out_dir}"}
    if verify:
        info["max_abs_diff"] = verify_open_clip(model, out_dir)
    return info


def verify_open_clip(model, out_dir, texts=("a red circle", "a blue square on a light background")) -> dict:
    """Build the model with plain open_clip from the folder and compare both encoders and the tokens."""
    import open_clip
    import torch

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


# ---------------------------------------------------------------------------------------------- mae

def export_mae(model_or_path, out, *, verify: bool = True) -> dict:
    """Write `{"model": trunk_state_dict}` (MAE's checkpoint layout) atomically; returns a summary."""
    from .checkpoint import save_atomic

    model = _as_model(model_or_path).float().eval()
    out = Path(out)
    save_atomic({"model": _tensors(model.visual.trunk.state_dict())}, out)
    info = {"format": "mae", "out": str(out), "timm_model_name": model.timm_model_name,
            "timm_kwargs": model.timm_kwargs}
    if verify:
        info["max_abs_diff"] = verify_mae(model, out)
    return info


def verify_mae(model, path) -> dict:
    """Read the file with torch's weights-only unpickler, load it strictly into the timm trunk (what
    MAE's ViT is) and compare forward_features."""
    import timm
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    trunk = timm.create_model(model.timm_model_name, pretrained=False, **model.timm_kwargs)
    trunk.load_state_dict(state, strict=True)
    trunk.eval()
    images = _peer_inputs(model)
    with torch.no_grad():
        diff = _max_diff(trunk.forward_features(images), model.forward_features(images))
    if not diff < _TOLERANCE:
        raise RuntimeError(f"mae export {path}: forward_features differs from ours by {diff:.3g}")
    return {"forward_features": diff}


# ---------------------------------------------------------------------------------------------- CLI

def add_export_parser(subparsers, help: str) -> None:
    import argparse

    p = subparsers.add_parser("export", help=help, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", "-m", required=True, help="training checkpoint (or an export)")
    p.add_argument("--format", "-f", required=True, choices=("timm", "open_clip", "mae"))
    p.add_argument("--out", "-o", required=True,
                   help="timm: FILE.safetensors; open_clip: a folder; mae: FILE.pth")
    p.add_argument("--vision-tower", default="auto", choices=VISION_TOWERS,
                   help="open_clip: TimmModel ('timm', exact only for presets at timm's defaults), "
                        "open_clip's own ViT ('native', every preset) or 'auto'")
    p.add_argument("--no-verify", action="store_true",
                   help="skip rebuilding the peer model from the files and comparing its outputs")
    p.set_defaults(func=run_export)


def run_export(args) -> int:
    import sys

    from .load import VisionOnlyWarning, load_model

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VisionOnlyWarning)
            model = load_model(args.checkpoint)
        if args.format == "timm":
            info = export_timm(model, args.out, verify=not args.no_verify)
        elif args.format == "mae":
            info = export_mae(model, args.out, verify=not args.no_verify)
        else:
            info = export_open_clip(model, args.out, vision_tower=args.vision_tower,
                                    verify=not args.no_verify)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"rils export: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2))
    return 0
