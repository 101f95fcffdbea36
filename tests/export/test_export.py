"""timm and open_clip exports, rebuilt as a user would (no rils involved), and `rils.load_model`."""
from __future__ import annotations

import json
import pathlib

import open_clip
import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import rils
from export_helpers import images, max_diff, perturbed
from rils import export as E
from rils.cli import main as rils_main
from rils.load import VisionOnlyWarning

TEXTS = ["a red circle", "a blue square on a light background", "two shapes: a star and a ring"]


# ------------------------------------------------------------------------------------------- timm

def test_timm_export_loads_strictly_and_matches(nano_model, tmp_path):
    path = tmp_path / "trunk.safetensors"
    E.export_timm(nano_model, path, verify=False)

    with safe_open(str(path), framework="pt") as fh:      # what a timm user does with the file
        meta = fh.metadata()
    assert meta["timm_model_name"] == nano_model.timm_model_name
    kwargs = json.loads(meta["timm_kwargs"])
    # the geometry, and the preprocessing as timm's pretrained_cfg (timm's data config reads it)
    assert kwargs == {**nano_model.timm_kwargs, "pretrained_cfg": E.timm_pretrained_cfg(nano_model)}
    trunk = timm.create_model(meta["timm_model_name"], pretrained=False, **kwargs).eval()
    result = trunk.load_state_dict(load_file(str(path)), strict=True)
    assert not result.missing_keys and not result.unexpected_keys

    x = images(3, 32)
    with torch.no_grad():
        assert max_diff(trunk.forward_features(x), nano_model.forward_features(x)) < 1e-5


# -------------------------------------------------------------------------------------- open_clip

def _compare_open_clip(model, folder):
    name = f"local-dir:{folder}"
    peer = open_clip.create_model(name).eval()             # plain open_clip, strict load inside
    tokenizer = open_clip.get_tokenizer(name)
    assert isinstance(peer, open_clip.CustomTextCLIP)
    tokens = tokenizer(TEXTS)
    assert torch.equal(tokens, rils.get_tokenizer(model.context_length)(TEXTS))
    x = images(2, model.image_size)
    with torch.no_grad():
        diffs = {"image": max_diff(peer.encode_image(x), model.encode_image(x)),
                 "text": max_diff(peer.encode_text(tokens), model.encode_text(tokens)),
                 "logit_scale": max_diff(peer.logit_scale, model.logit_scale)}
    assert all(d < 1e-5 for d in diffs.values()), diffs
    return peer


def test_open_clip_export_native_tower(nano_model, tmp_path):
    info = E.export_open_clip(nano_model, tmp_path / "oc", verify=False)
    assert info["vision_tower"] == "native"               # open_clip's TimmModel cannot build vit_nano8_32
    assert sorted(p.name for p in (tmp_path / "oc").iterdir()) == ["open_clip_config.json",
                                                                   "open_clip_model.safetensors"]
    peer = _compare_open_clip(nano_model, tmp_path / "oc")
    assert type(peer.visual).__name__ == "VisionTransformer"


def test_open_clip_export_timm_tower():
    """A model at the defaults (QuickGELU text) exports with `"quick_gelu": true` beside open_clip's
    TimmModel, and plain open_clip computes its image and text features (≤ 1e-5)."""
    # vit_ti16 is timm's vit_tiny_patch16_224 at its defaults, so open_clip's TimmModel is exact.
    model = perturbed("vit_ti16", method="clip")
    assert model.preset.quick_gelu
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        info = E.export_open_clip(model, d, verify=False)
        assert info["vision_tower"] == "timm"
        config = json.loads((pathlib.Path(d) / E.OPEN_CLIP_CONFIG).read_text())
        assert config["model_cfg"]["quick_gelu"] is True and config["rils"]["preset"]["quick_gelu"] is True
        peer = _compare_open_clip(model, d)
        assert type(peer.visual).__name__ == "TimmModel"
        assert {type(b.mlp.gelu).__name__ for b in peer.text.transformer.resblocks} == {"QuickGELU"}
        assert rils.load_model(d).preset.quick_gelu is True
        # the same names one to one: no key surgery
        assert set(load_file(f"{d}/open_clip_model.safetensors")) == set(model.state_dict())


def test_timm_tower_refused_where_impossible(nano_model, tmp_path):
    with pytest.raises(ValueError, match=r"vit_nano8_32.*32 px, patch 8"):
        E.export_open_clip(nano_model, tmp_path / "oc", vision_tower="timm")
    assert E.timm_tower_check(rils.get_preset("vit_b16")) is None
    assert E.timm_tower_check(rils.get_preset("vit_ti8_64")) is not None


def test_native_tower_needs_a_gelu_text_tower(nano_model, tmp_path):
    """open_clip's one quick_gelu flag would turn its own ViT to QuickGELU too, so a QuickGELU model of a
    preset that needs that layout is refused with a one-line reason (no file written); the GELU model
    exports with `"quick_gelu": false`, its activation recorded."""
    quick = perturbed("vit_nano8_32", method="clip")
    for tower in ("auto", "native"):
        with pytest.raises(ValueError, match=r"vit_nano8_32.*one quick_gelu for both towers.*model.quick_gelu=false") as e:
            E.export_open_clip(quick, tmp_path / "oc", vision_tower=tower)
        assert "\n" not in str(e.value)
    assert not (tmp_path / "oc").exists()
    with pytest.raises(ValueError, match="one quick_gelu"):
        E.resolve_vision_tower(rils.get_preset("vit_b16"), "native")   # the timm layout is there for it
    E.export_open_clip(nano_model, tmp_path / "oc", verify=False)
    config = json.loads((tmp_path / "oc" / E.OPEN_CLIP_CONFIG).read_text())
    assert config["model_cfg"]["quick_gelu"] is False and config["rils"]["preset"]["quick_gelu"] is False
    assert rils.load_model(tmp_path / "oc").preset.quick_gelu is False


def test_open_clip_export_needs_text(tmp_path):
    with pytest.raises(ValueError, match="without text"):
        E.export_open_clip(rils.create_model("vit_nano8_32", method="mae"), tmp_path / "oc")


# ------------------------------------------------------------------------------------- load_model

def _state_close(a: dict, b: dict, skip=("decoder.",)):
    keys = {k for k in a if not k.startswith(skip)}
    assert keys == set(b)
    return max(max_diff(a[k], b[k]) for k in keys)


def test_load_model_round_trips_every_format(tiny_ckpt, tmp_path):
    model = rils.load_model(tiny_ckpt)                       # training checkpoint (.pt)
    assert model.decoder is not None and model.text is not None
    x = images(2, 32)
    tokens = rils.get_tokenizer(model.context_length)(TEXTS)

    E.export_open_clip(model, tmp_path / "oc")
    for spec in (tmp_path / "oc", f"local-dir:{tmp_path / 'oc'}", tmp_path / "oc" / E.OPEN_CLIP_WEIGHTS):
        back = rils.load_model(spec)
        assert back.decoder is None                          # the decoder is not exported
        assert _state_close(model.state_dict(), back.state_dict()) < 1e-6
        with torch.no_grad():
            assert max_diff(back.encode_image(x), model.encode_image(x)) < 1e-5
            assert max_diff(back.encode_text(tokens), model.encode_text(tokens)) < 1e-5

    E.export_timm(model, tmp_path / "trunk.safetensors")
    with pytest.warns(VisionOnlyWarning, match="vision trunk only"):
        vis = rils.load_model(tmp_path / "trunk.safetensors")
    assert vis.text is None and vis.logit_scale is None and not hasattr(vis.visual.head, "proj")
    with torch.no_grad():
        assert max_diff(vis.forward_features(x), model.forward_features(x)) == 0
    with pytest.raises(RuntimeError, match="no image projection"):
        vis.encode_image(x)


def test_native_round_trip_keeps_perturbed_weights(nano_model, tmp_path):
    E.export_open_clip(nano_model, tmp_path / "oc", verify=False)
    back = rils.load_model(tmp_path / "oc")
    # the patch bias folded into the positions comes back out (sin-cos positions are known)
    assert _state_close(nano_model.state_dict(), back.state_dict()) < 1e-6


class _Evil:
    """Unpickling this would create a file: proof that pickled code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_load_model_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pt"
    torch.save({"format": "rils-checkpoint-v1", "payload": _Evil(marker)}, bad)
    with pytest.raises(ValueError):
        rils.load_model(bad)
    assert not marker.exists()
    # the same pickle under a safetensors name, and a folder whose weights are a pickle
    disguised = tmp_path / "evil.safetensors"
    disguised.write_bytes(bad.read_bytes())
    with pytest.raises(ValueError):
        rils.load_model(disguised)
    folder = tmp_path / "oc"
    folder.mkdir()
    (folder / E.OPEN_CLIP_CONFIG).write_text(json.dumps({"model_cfg": {}, "rils": {
        "format": E.FORMAT_OPEN_CLIP, "preset": rils.get_preset("vit_nano8_32").to_dict()}}))
    (folder / E.OPEN_CLIP_WEIGHTS).write_bytes(bad.read_bytes())
    with pytest.raises(ValueError, match="unreadable"):
        rils.load_model(folder)
    assert not marker.exists()


def test_load_model_rejects_foreign_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="not a rils export"):
        rils.load_model(tmp_path / "x.safetensors")
    with pytest.raises(FileNotFoundError):
        rils.load_model(tmp_path / "missing.pt")


# -------------------------------------------------------------------------------------------- CLI

def test_export_cli(tiny_ckpt, tmp_path, capsys):
    assert rils_main(["export", "--checkpoint", str(tiny_ckpt), "--format", "timm",
                      "--out", str(tmp_path / "t.safetensors")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["max_abs_diff"]["forward_features"] < 1e-5
    assert rils_main(["export", "--checkpoint", str(tiny_ckpt), "--format", "open_clip",
                      "--out", str(tmp_path / "oc")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["vision_tower"] == "native"
    assert max(info["max_abs_diff"].values()) < 1e-5
    assert rils_main(["export", "--checkpoint", str(tiny_ckpt), "--format", "open_clip",
                      "--vision-tower", "timm", "--out", str(tmp_path / "oc2")]) == 2
    assert "TimmModel" in capsys.readouterr().err


def test_timm_export_carries_the_preprocessing(tiny_ckpt, tmp_path):
    """timm's resolve_data_config + create_transform, from the export alone, preprocess an image file
    as rils does: the trunk's features equal ours (the model is 32 px; the image is not square)."""
    import json

    import timm
    from PIL import Image
    from safetensors import safe_open
    from safetensors.torch import load_file

    from rils.eval import load_for_eval

    image = tmp_path / "img.png"
    g = torch.Generator().manual_seed(0)
    Image.fromarray((torch.rand(48, 60, 3, generator=g) * 255).byte().numpy()).save(image)
    path = tmp_path / "trunk.safetensors"
    E.export_timm(rils.load_model(tiny_ckpt), path)
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
    trunk = timm.create_model(meta["timm_model_name"], **json.loads(meta["timm_kwargs"]),
                              pretrained_cfg_overlay=json.loads(meta["pretrained_cfg"])).eval()
    trunk.load_state_dict(load_file(str(path)), strict=True)
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=trunk))
    ours = load_for_eval(str(tiny_ckpt))
    with Image.open(image) as im:
        x_timm, x_ours = transform(im.convert("RGB")), ours.transform(im.convert("RGB"))
    assert x_timm.shape == x_ours.shape == (3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(trunk.forward_features(x_timm[None]), ours.model.forward_features(x_ours[None]),
                              atol=1e-5)
