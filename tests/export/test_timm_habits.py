"""The timm export works with timm's habits: `timm.create_model(name, **kwargs)` then
`resolve_data_config({}, model=m)` gives the export's own transform (its size, not the timm name's
224 px), so a 32-px model runs on its first image; the README's snippet works (this file runs it);
and `rils.load_model` of the export says why it has no `encode_image`: the file holds the trunk only."""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from safetensors import safe_open

import rils
from export_helpers import max_diff
from rils import export as E
from rils.eval.models import eval_transform, patch_tokens_projected

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_timm_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    found = [b for b in blocks if "timm.create_model(meta[" in b]
    assert len(found) == 1, "the README has one timm snippet"
    return found[0]


@pytest.fixture
def export(nano_model, tmp_path, monkeypatch):
    """A 32-px RILS model's timm export and a non-square image in the working directory, under the
    names the README uses."""
    monkeypatch.chdir(tmp_path)
    E.export_timm(nano_model, tmp_path / "trunk.safetensors")   # verifies as it writes
    g = torch.Generator().manual_seed(0)
    Image.fromarray((torch.rand(48, 60, 3, generator=g) * 255).byte().numpy()).save(tmp_path / "cat.png")
    return tmp_path / "trunk.safetensors"


def test_the_readme_snippet_runs_and_gives_our_features(nano_model, export):
    """The README's block, executed as written: its features equal rils' forward_features of the same
    image through rils' own evaluation transform (32 px, CLIP's normalisation)."""
    scope: dict = {}
    with torch.no_grad():
        exec(compile(readme_timm_snippet(), "README.md", "exec"), scope)
        ours = eval_transform(nano_model.image_size, nano_model.image_mean, nano_model.image_std)
        with Image.open("cat.png") as im:
            expected = nano_model.forward_features(ours(im.convert("RGB"))[None])
    assert scope["features"].shape == expected.shape == (1, 1 + 16, 64)
    assert max_diff(scope["features"], expected) < 1e-5


def test_plain_create_model_resolves_the_model_data_config(nano_model, export):
    """The habit of the issue, `create_model(name, **kwargs)` and `resolve_data_config({}, model=m)`,
    gives 32 px and CLIP's mean/std; the older documented call (an explicit pretrained_cfg_overlay
    beside the kwargs) still works; a fresh head for fine-tuning loads the trunk's weights."""
    with safe_open(str(export), "pt") as f:
        meta = f.metadata()
    kwargs = json.loads(meta["timm_kwargs"])
    config = timm.data.resolve_data_config({}, model=timm.create_model(meta["timm_model_name"], **kwargs))
    assert tuple(config["input_size"]) == (3, 32, 32)
    assert tuple(config["mean"]) == nano_model.image_mean and tuple(config["std"]) == nano_model.image_std
    old = timm.create_model(meta["timm_model_name"], **kwargs, pretrained_cfg_overlay=json.loads(meta["pretrained_cfg"]))
    assert tuple(timm.data.resolve_data_config({}, model=old)["input_size"]) == (3, 32, 32)
    tuned = timm.create_model(meta["timm_model_name"], pretrained=True, pretrained_cfg_overlay=dict(file=str(export)),
                              **{**kwargs, "num_classes": 10}).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert tuned.head.out_features == 10
        assert max_diff(tuned.forward_features(x), nano_model.forward_features(x)) < 1e-5


def test_a_timm_export_says_it_holds_the_trunk_only(export):
    """encode_image, encode_text, an open_clip export and the language-space patch tokens of a loaded
    timm export each name the export as the reason and the way to image-text embeddings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rils.load.VisionOnlyWarning)
        vision = rils.load_model(export)
    calls = [lambda: vision.encode_image(torch.randn(1, 3, 32, 32)),
             lambda: vision.encode_text(torch.zeros(1, vision.context_length, dtype=torch.long)),
             lambda: E.export_open_clip(vision, export.parent / "oc"),
             lambda: patch_tokens_projected(vision, torch.randn(1, 3, 32, 32))]
    for call in calls:
        with pytest.raises((RuntimeError, ValueError)) as exc:
            call()
        message = str(exc.value)
        assert "is a timm export, which holds the vision trunk only" in message, message
        assert "training checkpoint or an open_clip export" in message and "pre-trained without" not in message
    assert rils.create_model("vit_nano8_32", method="mae").missing_parts_reason == "it was pre-trained without text"
