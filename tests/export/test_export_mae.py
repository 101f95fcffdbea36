"""`rils export --format mae`: MAE's checkpoint layout, read back as MAE's own loaders read it."""
from __future__ import annotations

import json

import pytest
import timm
import torch

from export_helpers import images, max_diff
from rils import export as E
from rils.cli import main as rils_main

# The weights of one block of timm 0.3.2's ViT (the version MAE pins), by name.
_MAE_BLOCK = ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
              "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
              "mlp.fc2.weight", "mlp.fc2.bias")


def _timm(model, **overrides):
    return timm.create_model(model.timm_model_name, pretrained=False, **{**model.timm_kwargs, **overrides})


def test_mae_export_is_mae_names_and_loads_strictly_into_timm(nano_model, tmp_path):
    """The file is {"model": trunk weights} of tensors only, under MAE's names, with no head; it
    loads strictly into the timm trunk, whose forward_features then equal ours."""
    path = tmp_path / "trunk.pth"
    E.export_mae(nano_model, path, verify=False)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # raises on anything but tensors
    assert list(ckpt) == ["model"]
    depth = len(nano_model.visual.trunk.blocks)
    assert set(ckpt["model"]) == {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                                  "norm.weight", "norm.bias",
                                  *(f"blocks.{i}.{k}" for i in range(depth) for k in _MAE_BLOCK)}
    trunk = _timm(nano_model).eval()
    trunk.load_state_dict(ckpt["model"], strict=True)
    x = images(3, nano_model.image_size)
    with torch.no_grad():
        assert max_diff(trunk.forward_features(x), nano_model.forward_features(x)) <= 1e-6


def test_mae_finetune_loading_sees_only_the_new_head(nano_model, tmp_path):
    """MAE's main_finetune.py loads `checkpoint['model']` non-strictly and asserts the missing keys:
    {head} (cls token) or {head, fc_norm} (--global_pool, where our `norm` goes unused)."""
    path = tmp_path / "trunk.pth"
    E.export_mae(nano_model, path, verify=False)
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    pooled = _timm(nano_model, num_classes=10, global_pool="avg", fc_norm=True)  # MAE's global_pool ViT
    msg = pooled.load_state_dict(state, strict=False)
    assert set(msg.missing_keys) == {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
    assert set(msg.unexpected_keys) == {"norm.weight", "norm.bias"}
    token = _timm(nano_model, num_classes=10, global_pool="token")
    msg = token.load_state_dict(state, strict=False)
    assert set(msg.missing_keys) == {"head.weight", "head.bias"} and not msg.unexpected_keys


def test_mae_export_cli(tiny_ckpt, tmp_path, capsys):
    """`rils export --format mae` writes the file and reports the verified difference; --help names it."""
    out = tmp_path / "trunk.pth"
    assert rils_main(["export", "--checkpoint", str(tiny_ckpt), "--format", "mae", "--out", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "mae" and info["max_abs_diff"]["forward_features"] <= 1e-6
    assert set(torch.load(out, weights_only=True)) == {"model"}
    with pytest.raises(SystemExit):
        rils_main(["export", "--help"])
    assert "--format mae" in capsys.readouterr().out
